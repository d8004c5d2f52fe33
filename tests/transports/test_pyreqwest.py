"""What is particular to PyreqwestTransport (the contract suite runs on it too): a
request that goes on after its task is cancelled, pyreqwest's timeouts, the options,
and ``transport="pyreqwest"`` by name in the orchestrator, flows and the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    Request,
    ServiceBuilder,
    TimeoutError,
    TransportError,
)
from lamina.flows import build_orchestrator, config_from_dict, config_to_dict
from lamina.layers import CircuitBreakerLayer, TimeoutLayer
from lamina.testing import LocalServer
from lamina.transports._shared import map_error

pyreqwest = pytest.importorskip("pyreqwest", reason="pyreqwest is not installed")
from pyreqwest import exceptions  # noqa: E402

from lamina.transports import PyreqwestTransport  # noqa: E402

from ..cli.conftest import run_cli  # noqa: E402
from .conftest import arrived  # noqa: E402

UA = "python-pyreqwest"


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., PyreqwestTransport]]:
    made: list[PyreqwestTransport] = []

    def build(**options: Any) -> PyreqwestTransport:
        transport = PyreqwestTransport(**options)
        made.append(transport)
        return transport

    yield build
    for transport in made:
        await transport.aclose()


async def answered(service: Any, server: LocalServer) -> bool:
    """A call gets its answer within 10 s. The calls below would otherwise wait for a
    request that never ends (or ends after 30 s): no wall-clock bound to tune."""
    async with asyncio.timeout(10):
        response = await service(Request("GET", server.url_for("/json")))
    return bool(response.status_code == 200)


# -- a request goes on after its task is cancelled ----------------------------------------


async def test_a_timed_out_attempt_leaves_a_pool_of_one_usable(
    make: Callable[..., PyreqwestTransport], lamina_server: LocalServer
) -> None:
    """pyreqwest's request outlives its cancelled task, holding its connection: each
    attempt carries pyreqwest's own timeout (the attempt's, plus a short grace), so the
    next call on a pool of one does not wait for a hanging upstream."""
    transport = make(max_connections=1)
    with pytest.raises(TimeoutError) as info:
        await TimeoutLayer(0.2).wrap(transport)(Request("GET", lamina_server.url_for("/hang")))
    assert info.value.request_sent is True
    assert not isinstance(info.value, ConnectError)
    # the hanging request never ends: only its own timeout frees the pool's one connection
    assert await answered(TimeoutLayer(30).wrap(transport), lamina_server)


async def test_a_cancelled_call_leaves_a_gate_of_one_usable(
    make: Callable[..., PyreqwestTransport], lamina_server: LocalServer
) -> None:
    """Cancelled by someone else (not its timeout), the request goes on until its own
    timeout; by default the client has no connection limit of its own (lamina's gate is
    the pool), so the next call takes another connection at once."""
    service = TimeoutLayer(30).wrap(make(max_in_flight=1))
    call = asyncio.create_task(service(Request("GET", lamina_server.url_for("/hang"))))
    await asyncio.sleep(0.1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await answered(service, lamina_server)  # not after the cancelled one's 30 s


async def test_a_timed_out_wait_for_the_clients_pool_sent_nothing(
    make: Callable[..., PyreqwestTransport], lamina_server: LocalServer
) -> None:
    transport = make(max_connections=1, max_in_flight=None)
    holder = asyncio.create_task(transport(Request("GET", lamina_server.url_for("/json?ms=500"))))
    await arrived(lamina_server, "/json")  # the holder has the pool's only connection
    with pytest.raises(TimeoutError) as info:
        await TimeoutLayer(0.1).wrap(transport)(Request("POST", lamina_server.url_for("/echo")))
    assert info.value.request_sent is False
    assert not isinstance(info.value, ConnectError)
    await holder
    assert lamina_server.hits("/echo") == 0


# -- pyreqwest's own timeouts and errors ----------------------------------------------------


async def test_a_late_reply_is_a_read_timeout(
    make: Callable[..., PyreqwestTransport], lamina_server: LocalServer
) -> None:
    """pyreqwest raises ``ConnectTimeoutError`` for a reply that is late too: that is a
    TimeoutError with the request sent, not a ConnectTimeout."""
    transport = make(timeout=timedelta(seconds=0.2))
    with pytest.raises(TimeoutError) as info:
        await transport(Request("GET", lamina_server.url_for("/hang")))
    assert not isinstance(info.value, ConnectError)
    assert info.value.request_sent is True
    assert type(info.value.__cause__).__name__ == "ConnectTimeoutError"


async def test_its_connect_timeout_is_a_connect_timeout(
    make: Callable[..., PyreqwestTransport], full_listener: int
) -> None:
    transport = make(connect_timeout=timedelta(seconds=0.2))
    with pytest.raises(ConnectTimeout) as info:
        await transport(Request("POST", f"http://127.0.0.1:{full_listener}/x", json={}))
    assert info.value.request_sent is False


async def test_an_attempt_timing_out_while_connecting_still_opens_the_breaker(
    make: Callable[..., PyreqwestTransport], full_listener: int
) -> None:
    """The gap the contract suite marks: pyreqwest does not say whether a timed-out
    request was connecting, so it is a TimeoutError with the request sent (a POST is not
    retried); the breaker counts it all the same."""
    breakers = CircuitBreakerLayer(threshold=2, timeout=60)
    service = ServiceBuilder([breakers, TimeoutLayer(0.2)]).service(make())
    request = Request("GET", f"http://127.0.0.1:{full_listener}/x", endpoint="blackholed")
    for _ in range(2):
        with pytest.raises(TimeoutError) as info:
            await service(request)
        assert info.value.request_sent is True
    assert breakers.breakers["blackholed"].failure_count == 2


def _error(cls: type[Exception], *causes: str) -> Exception:
    return cls("error", {"causes": [{"message": cause} for cause in causes]})


@pytest.mark.parametrize(
    ("raised", "expected", "sent"),
    [
        (_error(exceptions.ConnectTimeoutError, "client error (Connect)"), ConnectTimeout, False),
        (_error(exceptions.ConnectTimeoutError, "operation timed out"), TimeoutError, True),
        (_error(exceptions.ConnectError, "client error (Connect)", "refused"), ConnectError, False),
        (_error(exceptions.ConnectError, "Connection reset by peer"), TransportError, True),
        (_error(exceptions.PoolTimeoutError, "deadline has elapsed"), TimeoutError, False),
        (_error(exceptions.ReadTimeoutError, "timed out"), TimeoutError, True),
        (_error(exceptions.ReadError, "closed"), TransportError, True),
    ],
)
def test_its_errors_map_through_the_shared_table(
    raised: Exception, expected: type[Exception], sent: bool
) -> None:
    error = map_error(raised, Request("GET", "http://api.test/x", endpoint="things"))
    assert type(error) is expected
    assert error.request_sent is sent  # type: ignore[attr-defined]


# -- options ------------------------------------------------------------------------------


def test_options_are_client_builder_methods() -> None:
    with pytest.raises(ConfigError, match="not a pyreqwest ClientBuilder option") as info:
        PyreqwestTransport(no_such_option=1)
    assert info.value.field == "no_such_option"
    for owned in ("gzip", "base_url"):
        with pytest.raises(ConfigError, match="set by lamina"):
            PyreqwestTransport(**{owned: True})
    assert PyreqwestTransport(max_connections=7).max_in_flight == 7
    assert PyreqwestTransport().max_in_flight == 100


async def test_http2_is_opt_in(
    make: Callable[..., PyreqwestTransport], lamina_server: LocalServer
) -> None:
    response = await make(http2=True)(Request("GET", lamina_server.url_for("/json")))
    assert response.status_code == 200  # the loopback server speaks HTTP/1.1 only
    assert response.http.version == "HTTP/1.1"


def test_lamina_imports_without_pyreqwest() -> None:
    code = (
        "import sys\n"
        "sys.modules['pyreqwest'] = None\n"
        "import lamina, lamina.transports\n"
        "try:\n"
        "    lamina.transports.PyreqwestTransport\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "config = lamina.APIOrchestrationConfig(endpoints=[\n"
        "    lamina.APIEndpoint(name='a', url='http://127.0.0.1:9/')])\n"
        "try:\n"
        "    lamina.APIOrchestrator(config, transport='pyreqwest')\n"
        "except lamina.ConfigError as e:\n"
        "    print(e.message)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "PyreqwestTransport needs pyreqwest: pip install 'lamina[pyreqwest]'"
    assert "pip install 'lamina[pyreqwest]'" in out[1]


# -- by name --------------------------------------------------------------------------------


def _config(server: LocalServer) -> APIOrchestrationConfig:
    return APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url=server.url_for("/json?by=name"))]
    )


async def test_the_orchestrator_selects_it_by_name(lamina_server: LocalServer) -> None:
    async with APIOrchestrator(_config(lamina_server), transport="pyreqwest") as orchestrator:
        await orchestrator.run()
    assert lamina_server.requests("/json")[-1].headers["user-agent"].startswith(UA)


async def test_default_transport_can_be_pyreqwest(
    lamina_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(APIOrchestrator, "default_transport", "pyreqwest")
    async with APIOrchestrator(_config(lamina_server)) as orchestrator:
        await orchestrator.run()
    assert lamina_server.requests("/json")[-1].headers["user-agent"].startswith(UA)


async def test_a_flow_selects_it_by_name(lamina_server: LocalServer) -> None:
    flow = {"transport": "pyreqwest", "endpoints": [{"name": "a", "url": lamina_server.url}]}
    config = config_from_dict(flow)
    assert config_to_dict(config)["transport"] == "pyreqwest"
    async with build_orchestrator(config) as orchestrator:
        await orchestrator.run()
    assert lamina_server.requests()[-1].headers["user-agent"].startswith(UA)
    with pytest.raises(ConfigError, match="httpx, aiohttp, pyreqwest") as info:
        config_from_dict({**flow, "transport": "curl"})
    assert info.value.field == "transport"


@pytest.mark.parametrize("where", ["flow", "--transport"])
def test_the_cli_selects_it_by_name(lamina_server: LocalServer, tmp_path: Path, where: str) -> None:
    head = "transport: pyreqwest\n" if where == "flow" else "transport: aiohttp\n"
    flow = tmp_path / "flow.yaml"
    flow.write_text(f"{head}endpoints:\n  - name: a\n    url: {lamina_server.url}/json?cli=1\n")
    extra = ["--transport", "pyreqwest"] if where == "--transport" else []
    done = run_cli("run", str(flow), "--json", *extra)
    assert done.returncode == 0, done.stderr
    assert lamina_server.requests("/json")[-1].headers["user-agent"].startswith(UA)
