"""What only AiohttpTransport has: its session (made lazily per event loop, or borrowed),
session options, aiohttp's own timeouts and the connector's limit."""

from __future__ import annotations

import asyncio
import gc
import warnings

import aiohttp
import pytest

from lamina import ConfigError, ConnectError, ConnectTimeout, Request, TimeoutError
from lamina.layers import TimeoutLayer
from lamina.testing import LocalServer
from lamina.transports import AiohttpTransport

from .conftest import arrived


async def test_client_timeout_maps_to_lamina_timeout(lamina_server: LocalServer) -> None:
    async with AiohttpTransport(timeout=aiohttp.ClientTimeout(sock_read=0.1)) as transport:
        with pytest.raises(TimeoutError) as info:
            await transport(Request("GET", lamina_server.url_for("/hang")))
    assert info.value.request_sent is True
    assert isinstance(info.value.__cause__, aiohttp.ServerTimeoutError)


async def test_session_made_lazily_and_closed(lamina_server: LocalServer) -> None:
    transport = AiohttpTransport()
    assert transport.session is None
    await transport(Request("GET", lamina_server.url_for("/json")))
    session = transport.session
    assert session is not None
    assert not session.closed
    await transport.aclose()
    assert session.closed


async def test_borrowed_session_left_open(lamina_server: LocalServer) -> None:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        transport = AiohttpTransport(session)
        response = await transport(Request("GET", lamina_server.url_for("/json")))
        assert response.json()["ok"] is True
        await transport.aclose()
        assert not session.closed


async def test_borrowed_session_must_not_decompress() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError) as info:
            AiohttpTransport(session)
    assert info.value.field == "session"


def test_bad_session_options_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        AiohttpTransport(not_an_option=1)
    assert info.value.field == "not_an_option"
    with pytest.raises(ConfigError) as info:
        AiohttpTransport(auto_decompress=True)
    assert info.value.field == "auto_decompress"


def test_a_new_event_loop_gets_a_new_session(lamina_server: LocalServer) -> None:
    transport = AiohttpTransport()
    url = lamina_server.url_for("/json")
    gc.collect()  # other tests' garbage is not this test's business
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        asyncio.run(transport(Request("GET", url)))
        first = transport.session
        assert asyncio.run(transport(Request("GET", url))).status_code == 200
        assert transport.session is not first
        assert first is not None
        assert first.closed
        asyncio.run(transport.aclose())
        gc.collect()
    assert lamina_server.hits("/json") == 2


def test_repr() -> None:
    assert repr(AiohttpTransport()) == "AiohttpTransport(owned session, follow_redirects=False)"


async def test_max_in_flight_defaults_to_the_connector_limit() -> None:
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


async def test_max_in_flight_per_host_follows_limit_per_host() -> None:
    assert AiohttpTransport().max_in_flight_per_host is None
    connector = aiohttp.TCPConnector(limit=100, limit_per_host=10)
    assert AiohttpTransport(connector=connector).max_in_flight_per_host == 10
    connector = aiohttp.TCPConnector(limit=4, limit_per_host=10)
    assert AiohttpTransport(connector=connector).max_in_flight_per_host == 4
    connector = aiohttp.TCPConnector(limit=100, limit_per_host=10)
    assert AiohttpTransport(connector=connector, max_in_flight=None).max_in_flight_per_host is None
    session = aiohttp.ClientSession(
        auto_decompress=False, connector=aiohttp.TCPConnector(limit=0, limit_per_host=3)
    )
    try:
        borrowed = AiohttpTransport(session)
        assert (borrowed.max_in_flight, borrowed.max_in_flight_per_host) == (None, 3)
    finally:
        await session.close()


async def test_a_request_waits_for_limit_per_host_in_lamina(
    lamina_server: LocalServer, other_server: LocalServer
) -> None:
    """Issue 12 review, item 11: with ``limit_per_host`` a request waited for a connection
    inside aiohttp, where lamina could not see it, and its timeout counted against the
    upstream (a borrowed session: taken as sent). It now waits in a gate per host."""
    session = aiohttp.ClientSession(
        auto_decompress=False, connector=aiohttp.TCPConnector(limit=100, limit_per_host=2)
    )
    try:
        transport = AiohttpTransport(session)
        url = lamina_server.url_for("/json?ms=500")
        holders = [asyncio.create_task(transport(Request("GET", url))) for _ in range(2)]
        await arrived(lamina_server, "/json", 2)  # the two hold this host's two connections
        other = await TimeoutLayer(0.3).wrap(transport)(
            Request("GET", other_server.url_for("/json"))
        )
        assert other.status_code == 200  # another host does not wait for this one
        hurried = TimeoutLayer(0.1).wrap(transport)
        with pytest.raises(TimeoutError) as info:
            await hurried(Request("POST", lamina_server.url_for("/echo"), json={}))
        assert info.value.request_sent is False
        assert info.value.waited > 0
        await asyncio.gather(*holders)
        assert lamina_server.hits("/echo") == 0
    finally:
        await session.close()


async def test_aiohttps_own_connect_timeout_counts_only_while_connecting(
    lamina_server: LocalServer, full_listener: int
) -> None:
    """aiohttp's ``ClientTimeout(connect=)`` covers waiting in its pool as well as
    connecting: only the second is a ``ConnectTimeout`` (the connection trace tells)."""
    transport = AiohttpTransport(
        connector=aiohttp.TCPConnector(limit=1),
        max_in_flight=None,
        timeout=aiohttp.ClientTimeout(connect=0.1),
    )
    try:
        url = lamina_server.url_for("/json?ms=400")
        holder = asyncio.create_task(transport(Request("GET", url)))
        await arrived(lamina_server, "/json")  # the holder has the pool's only connection
        with pytest.raises(TimeoutError) as info:
            await transport(Request("POST", lamina_server.url_for("/echo"), json={}))
        assert not isinstance(info.value, ConnectError)
        assert info.value.request_sent is False
        await holder
        with pytest.raises(ConnectTimeout):
            await transport(Request("GET", f"http://127.0.0.1:{full_listener}/x"))
    finally:
        await transport.aclose()


async def test_user_trace_configs_are_kept(lamina_server: LocalServer) -> None:
    """The owned session's connection trace is added to the caller's, not instead."""
    seen: list[str] = []

    async def on_start(*args: object) -> None:
        seen.append("start")

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_start)
    async with AiohttpTransport(trace_configs=[config]) as transport:
        await transport(Request("GET", lamina_server.url_for("/json")))
    assert seen == ["start"]


async def test_a_borrowed_session_is_not_trusted_to_say(full_listener: int) -> None:
    """A session passed in has no connection trace: a cancellation while it connects is
    taken as sent (a POST is not resent blindly)."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        service = TimeoutLayer(0.2).wrap(AiohttpTransport(session))
        with pytest.raises(TimeoutError) as info:
            await service(Request("POST", f"http://127.0.0.1:{full_listener}/x", json={}))
    assert info.value.request_sent is True
