"""``execute_sync(loop=)`` runs the orchestrator on the loop it names, on every transport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, ConfigError, layer_fn
from lamina.testing import LocalServer

uvloop = pytest.importorskip("uvloop")


@pytest.mark.parametrize("transport", ["httpx", "aiohttp", "pyreqwest"])
@pytest.mark.parametrize(
    ("loop", "expected"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_execute_sync_runs_on_the_named_loop(
    lamina_server: LocalServer, transport: str, loop: str, expected: str
) -> None:
    seen: list[str] = []

    async def note_loop(request: Any, call_next: Any) -> Any:
        running = asyncio.get_running_loop()
        seen.append("uvloop" if isinstance(running, uvloop.Loop) else "asyncio")
        return await call_next(request)

    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url=f"{lamina_server.url}/json?loop={loop}")]
    )
    orchestrator = APIOrchestrator(config, transport=transport, layers=[layer_fn(note_loop)])
    for _ in range(2):  # a second call gets a new loop, and a new client on it
        value = orchestrator.execute_sync(loop=loop)
        assert value["a"]["query"] == {"loop": loop}
    assert seen == [expected, expected]


def test_an_unknown_loop_is_a_config_error_before_any_call(lamina_server: LocalServer) -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url=f"{lamina_server.url}/json")]
    )
    before = lamina_server.hits()
    with pytest.raises(ConfigError, match="'auto', 'asyncio', 'uvloop'") as caught:
        APIOrchestrator(config).execute_sync(loop="trio")
    assert caught.value.field == "loop"
    assert lamina_server.hits() == before
