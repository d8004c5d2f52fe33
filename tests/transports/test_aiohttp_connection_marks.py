"""AiohttpTransport learns whether a request got its connection from the owned session's
connector, not from an aiohttp TraceConfig (a trace makes aiohttp send every request
event, about a tenth of a call's CPU)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from lamina import Request, TimeoutError
from lamina.layers import TimeoutLayer
from lamina.testing import LocalServer
from lamina.transports import AiohttpTransport

from .conftest import arrived


async def test_the_owned_session_has_no_trace_of_its_own(lamina_server: LocalServer) -> None:
    async with AiohttpTransport() as transport:
        await transport(Request("GET", lamina_server.url_for("/json")))
        assert transport.session is not None
        assert transport.session.trace_configs == []


async def test_a_shared_connector_marks_once_and_serves_others_unchanged(
    lamina_server: LocalServer,
) -> None:
    """Two transports on one connector of the caller's (``connector_owner=False``) and a
    session of the caller's on it too: each request is marked by its own transport only,
    and a request of the caller's carries no mark."""
    connector = aiohttp.TCPConnector(limit=1)
    first = AiohttpTransport(connector=connector, connector_owner=False, max_in_flight=None)
    second = AiohttpTransport(connector=connector, connector_owner=False, max_in_flight=None)
    try:
        url = lamina_server.url_for("/json?ms=300")
        holder = asyncio.create_task(first(Request("GET", url)))
        await arrived(lamina_server, "/json")  # the holder has the connector's only connection
        connect = connector.connect
        service = TimeoutLayer(0.1).wrap(second)
        with pytest.raises(TimeoutError) as info:  # waited in the shared pool: not sent
            await service(Request("POST", lamina_server.url_for("/echo"), json={}))
        assert info.value.request_sent is False
        assert (await holder).status_code == 200
        assert connector.connect is connect  # not wrapped again by the second transport
        with pytest.raises(TimeoutError) as info:  # had the connection: sent
            await service(Request("POST", url, json={}))
        assert info.value.request_sent is True
        own = aiohttp.ClientSession(connector=connector, connector_owner=False)
        async with own, own.get(lamina_server.url_for("/json")) as response:
            assert response.status == 200
    finally:
        await first.aclose()
        await second.aclose()
        await connector.close()
