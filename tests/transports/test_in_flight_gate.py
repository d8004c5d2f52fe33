"""Both transports keep at most ``max_in_flight`` requests inside the client (by default
its pool size) and queue the rest in lamina's gate, where a timeout is known to have
cost the upstream nothing (issue 12, item 11)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from lamina import ConfigError, HttpxTransport, Request, TimeoutError
from lamina.aiohttp_transport import AiohttpTransport
from lamina.breaker import timed_out_waiting
from lamina.layers.timeout import TimeoutLayer
from lamina.testing import LocalServer

Factory = Callable[..., Any]


@pytest.fixture(params=["httpx", "aiohttp"])
async def make_transport(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    made: list[Any] = []

    def factory(**options: Any) -> Any:
        cls = HttpxTransport if request.param == "httpx" else AiohttpTransport
        transport = cls(**options)
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        await transport.aclose()


async def test_aiohttp_max_in_flight_defaults_to_the_connector_limit() -> None:
    assert AiohttpTransport().max_in_flight == 100  # aiohttp's default connector
    assert AiohttpTransport(connector=aiohttp.TCPConnector(limit=7)).max_in_flight == 7
    assert AiohttpTransport(connector=aiohttp.TCPConnector(limit=0)).max_in_flight is None
    assert AiohttpTransport(max_in_flight=3).max_in_flight == 3
    assert AiohttpTransport(max_in_flight=None).max_in_flight is None
    session = aiohttp.ClientSession(auto_decompress=False, connector=aiohttp.TCPConnector(limit=9))
    try:
        assert AiohttpTransport(session).max_in_flight == 9  # a borrowed session's limit
    finally:
        await session.close()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "many"])
def test_bad_max_in_flight_on_aiohttp(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_in_flight"):
        AiohttpTransport(max_in_flight=bad)  # type: ignore[arg-type]


async def test_at_most_max_in_flight_reach_the_server(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    transport = make_transport(max_in_flight=2)
    url = lamina_server.url_for("/json?ms=100")
    await asyncio.gather(*(transport(Request("GET", url)) for _ in range(6)))
    arrivals = sorted(lamina_server.arrivals("/json"))
    assert len(arrivals) == 6
    assert arrivals[2] - arrivals[0] >= 0.09  # the third waited for one of the first two
    assert arrivals[4] - arrivals[2] >= 0.09


async def test_a_timeout_while_queued_sent_nothing_and_says_how_long_it_waited(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    transport = make_transport(max_in_flight=1)
    holder = asyncio.create_task(transport(Request("GET", lamina_server.url_for("/json?ms=600"))))
    await asyncio.sleep(0.05)  # the holder has the only place
    hurried = TimeoutLayer(0.1).wrap(transport)
    with pytest.raises(TimeoutError) as info:
        await hurried(Request("POST", lamina_server.url_for("/echo"), json={}))
    error = info.value
    assert error.request_sent is False
    assert error.waited > 0
    assert "for a connection" in str(error)
    assert timed_out_waiting(error)
    await holder
    assert lamina_server.hits("/echo") == 0


async def test_a_timeout_after_waiting_then_sending_says_how_long_it_waited(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    transport = make_transport(max_in_flight=1)
    holder = asyncio.create_task(transport(Request("GET", lamina_server.url_for("/json?ms=100"))))
    await asyncio.sleep(0.02)
    patient = TimeoutLayer(0.6).wrap(transport)
    with pytest.raises(TimeoutError) as info:
        await patient(Request("GET", lamina_server.url_for("/hang")))
    await holder
    error = info.value
    assert error.request_sent is True  # it reached the server ...
    assert lamina_server.hits("/hang") == 1
    assert 0 < error.waited < 0.6  # ... after waiting for the holder's place
    assert timed_out_waiting(error)


async def test_a_timeout_without_waiting_is_the_upstreams(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    transport = make_transport(max_in_flight=1)
    with pytest.raises(TimeoutError) as info:
        await TimeoutLayer(0.1).wrap(transport)(Request("GET", lamina_server.url_for("/hang")))
    assert info.value.request_sent is True
    assert info.value.waited == 0
    assert not timed_out_waiting(info.value)
