"""Every layer test that talks to the real local server runs on both transports.

Tests build their transport with the module-level name ``HttpxTransport``; for the
``aiohttp`` parameter that name is swapped for ``AiohttpTransport`` (same contract).
Tests that rely on httpx itself (MockTransport, respx, httpx options) are marked
``httpx_only`` and run once.
"""

from __future__ import annotations

import pytest

from lamina.transports import AiohttpTransport


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "httpx_only: the test relies on httpx itself")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "layer_transport" in metafunc.fixturenames:
        kinds = ["httpx"]
        talks_to_server = "lamina_server" in metafunc.fixturenames
        if (
            talks_to_server
            and hasattr(metafunc.module, "HttpxTransport")
            and metafunc.definition.get_closest_marker("httpx_only") is None
        ):
            kinds.append("aiohttp")
        metafunc.parametrize("layer_transport", kinds, indirect=True)


@pytest.fixture(autouse=True)
def layer_transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    kind: str = getattr(request, "param", "httpx")
    if kind == "aiohttp":
        monkeypatch.setattr(request.module, "HttpxTransport", AiohttpTransport)
    return kind
