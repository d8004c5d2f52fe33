import pytest

from lamina import APIOrchestrator
from lamina.testing import LocalServer, upstreams


@pytest.fixture
def api(lamina_server: LocalServer) -> LocalServer:
    """The local server with the sample upstream routes."""
    return upstreams.install(lamina_server)


@pytest.fixture(autouse=True, params=["httpx", "aiohttp"])
def transport_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every orchestrator test runs on both transports."""
    monkeypatch.setattr(APIOrchestrator, "default_transport", request.param)
    return str(request.param)
