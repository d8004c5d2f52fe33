"""What only HttpxTransport has: the httpx seams (MockTransport, respx, a client passed
in, client options), httpx's errors, httpcore's pool and its trace of what was sent."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
import warnings
from importlib.abc import MetaPathFinder

import httpx
import pytest
import respx

from lamina import (
    ConfigError,
    ConnectError,
    ConnectTimeout,
    HttpxTransport,
    ParseError,
    Request,
    ResponseTooLarge,
    TimeoutError,
    TransportError,
)
from lamina.layers import TimeoutLayer
from lamina.testing import LocalServer


async def test_mock_transport_round_trip() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"ok": True}, headers={"X-A": "1"})

    async with HttpxTransport(transport=httpx.MockTransport(handler)) as transport:
        response = await transport(
            Request("POST", "http://api.test/items", params={"q": "a b"}, json={"n": 1})
        )
    assert response.status_code == 201
    assert response.json() == {"ok": True}
    assert response.headers["x-a"] == "1"
    assert isinstance(response.http, httpx.Response)
    assert response.elapsed >= 0
    assert seen[0].url.params["q"] == "a b"
    assert json.loads(seen[0].content) == {"n": 1}


async def test_respx_works() -> None:
    async with HttpxTransport() as transport:
        with respx.mock:
            route = respx.get("http://api.test/users/1").respond(json={"id": 1})
            response = await transport(Request("GET", "http://api.test/users/1"))
    assert route.called
    assert response.json() == {"id": 1}


@pytest.mark.parametrize(
    ("raised", "expected", "sent"),
    [
        (httpx.ConnectError("refused"), ConnectError, False),
        (httpx.ConnectTimeout("slow"), ConnectTimeout, False),
        (httpx.PoolTimeout("full"), TimeoutError, False),
        (httpx.ReadTimeout("late"), TimeoutError, True),
        (httpx.WriteTimeout("late"), TimeoutError, True),
        (httpx.ReadError(""), TransportError, True),
        (httpx.RemoteProtocolError("bad head"), TransportError, True),
        (httpx.DecodingError("bad gzip"), ParseError, None),
        (httpx.UnsupportedProtocol("ftp"), ConfigError, None),
        (httpx.InvalidURL("bad port"), ConfigError, None),
    ],
)
async def test_each_httpx_error_is_mapped_once(
    raised: Exception, expected: type[Exception], sent: bool | None
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise raised

    async with HttpxTransport(transport=httpx.MockTransport(handler)) as transport:
        with pytest.raises(expected) as info:
            await transport(Request("GET", "http://api.test/x", endpoint="things"))
    error = info.value
    assert error.__cause__ is raised
    assert getattr(error, "endpoint", None) == "things"
    if isinstance(error, ConfigError):
        assert error.field == "url"
    if sent is not None:
        assert getattr(error, "request_sent", None) is sent
    if isinstance(raised, httpx.ReadError):
        assert "connection closed or reset by the peer" in str(error)


async def test_connect_refused_cause_is_httpxs(closed_port: int) -> None:
    async with HttpxTransport() as transport:
        with pytest.raises(ConnectError) as info:
            await transport(Request("GET", f"http://127.0.0.1:{closed_port}/"))
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_httpx_timeout_maps_to_lamina_timeout(lamina_server: LocalServer) -> None:
    async with HttpxTransport(timeout=0.2) as transport:
        with pytest.raises(TimeoutError) as info:
            await transport(Request("GET", lamina_server.url_for("/hang")))
    assert info.value.request_sent is True
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


async def test_httpx_decodes_nothing_itself(lamina_server: LocalServer) -> None:
    """Even a client whose own headers ask for other codings: lamina reads raw bytes."""
    client = httpx.AsyncClient(headers={"Accept-Encoding": "gzip, br, zstd"})
    async with HttpxTransport(client, max_response_bytes=1_000_000) as transport:
        with pytest.raises(ResponseTooLarge):
            await transport(Request("GET", lamina_server.url_for("/gzip-bomb?layers=2")))
    await client.aclose()


async def test_owned_client_closed_borrowed_client_left_open() -> None:
    owned = HttpxTransport()
    await owned.aclose()
    assert owned.client.is_closed
    client = httpx.AsyncClient()
    borrowed = HttpxTransport(client)
    await borrowed.aclose()
    assert not client.is_closed
    await client.aclose()


def test_a_new_event_loop_gets_a_new_client(lamina_server: LocalServer) -> None:
    """Issue 12 review, item 14: an owned client is bound to the loop it first ran on;
    another loop gets its own, and each is closed when its loop shuts down."""
    transport = HttpxTransport()
    url = lamina_server.url_for("/json")
    gc.collect()  # other tests' garbage is not this test's business
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        asyncio.run(transport(Request("GET", url)))
        first = transport.client
        assert first.is_closed  # its loop has shut down
        assert asyncio.run(transport(Request("GET", url))).status_code == 200
        assert transport.client is not first
        asyncio.run(transport.aclose())
        assert transport.client.is_closed
        gc.collect()
    assert lamina_server.hits("/json") == 2


def test_client_and_client_options_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="client"):
        HttpxTransport(httpx.AsyncClient(), transport=httpx.MockTransport(lambda r: None))  # type: ignore[arg-type,return-value]


class _SniffioWatcher(MetaPathFinder):
    def __init__(self) -> None:
        self.lookups = 0

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname == "sniffio":
            self.lookups += 1
        return None


async def test_no_module_lookup_per_request(lamina_server: LocalServer) -> None:
    """httpcore imports sniffio on every request; if it is missing each request pays
    a failed import (about 2x the cost of a loopback call). It must stay installed."""
    watcher = _SniffioWatcher()
    async with HttpxTransport() as transport:
        await transport(Request("GET", lamina_server.url_for("/json")))
        sys.meta_path.insert(0, watcher)
        try:
            for _ in range(5):
                await transport(Request("GET", lamina_server.url_for("/json")))
        finally:
            sys.meta_path.remove(watcher)
    assert "sniffio" in sys.modules
    assert watcher.lookups == 0


def test_max_in_flight_defaults_to_the_pool_of_an_owned_client() -> None:
    assert HttpxTransport().max_in_flight == 100  # httpx's default pool
    limits = httpx.Limits(max_connections=7)
    assert HttpxTransport(limits=limits).max_in_flight == 7
    assert HttpxTransport(limits=httpx.Limits(max_connections=None)).max_in_flight is None
    assert HttpxTransport(httpx.AsyncClient()).max_in_flight is None  # unknown pool: no gate
    assert HttpxTransport(httpx.AsyncClient(), max_in_flight=3).max_in_flight == 3


async def test_max_in_flight_bounds_what_the_client_holds() -> None:
    active = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return httpx.Response(200, json={"ok": True})

    transport = HttpxTransport(transport=httpx.MockTransport(handler), max_in_flight=3)
    responses = await asyncio.gather(
        *(transport(Request("GET", f"http://x/{i}")) for i in range(20))
    )
    assert [r.status_code for r in responses] == [200] * 20
    assert peak == 3
    cancelled = asyncio.create_task(transport(Request("GET", "http://x/late")))
    await asyncio.sleep(0)
    cancelled.cancel()  # a caller cancelled while waiting frees nothing it did not take
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert (await transport(Request("GET", "http://x/after"))).status_code == 200
    await transport.aclose()


async def test_timeouts_under_pool_contention_leave_the_pool_usable(
    lamina_server: LocalServer,
) -> None:
    """httpcore 1.0.9 leaks a pool slot when a request is cancelled while it waits for
    a connection the pool just created for it (encode/httpcore#1093). With the default
    gate no request waits inside the pool, so attempt timeouts cannot leak slots
    (with ``max_in_flight=None`` this test fails: the follow-up calls time out)."""
    transport = HttpxTransport(limits=httpx.Limits(max_connections=5))
    hurried = TimeoutLayer(0.05).wrap(transport)

    async def call(i: int) -> None:
        with contextlib.suppress(TimeoutError):
            await hurried(Request("GET", lamina_server.url_for(f"/json?ms={i * 7 % 80}")))

    await asyncio.gather(*(call(i) for i in range(200)))
    patient = TimeoutLayer(3.0).wrap(transport)
    try:
        for _ in range(10):
            response = await patient(Request("GET", lamina_server.url_for("/json")))
            assert response.status_code == 200
    finally:
        await transport.aclose()


async def test_a_borrowed_client_with_another_transport_is_not_trusted_to_say(
    lamina_server: LocalServer,
) -> None:
    """A transport that is not httpcore may not report sending: a cancellation inside it
    is taken as sent (a POST is not resent blindly)."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1)
        return httpx.Response(200)

    async with HttpxTransport(transport=httpx.MockTransport(slow)) as transport:
        with pytest.raises(TimeoutError) as info:
            await TimeoutLayer(0.05).wrap(transport)(Request("POST", "http://api.test/x"))
    assert info.value.request_sent is True
