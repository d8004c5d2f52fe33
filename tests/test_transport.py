import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import Iterator
from importlib.abc import MetaPathFinder

import httpx
import pytest
import respx

from lamina import (
    ConfigError,
    ConnectError,
    HttpxTransport,
    Request,
    ResponseTooLarge,
    ServiceBuilder,
    TimeoutError,
    TransportError,
)
from lamina import TimeoutError as LaminaTimeoutError
from lamina.layers import RetryLayer, TimeoutLayer
from lamina.testing import LocalServer

SECRET = "s3cr3t-abcdef123"


@pytest.fixture
def other_server() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


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


async def test_real_server_echo(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        response = await transport(
            Request(
                "PUT",
                lamina_server.url_for("/echo"),
                params={"a": "1"},
                headers={"X-Trace": "t"},
                content=b"raw",
            )
        )
    body = response.json()
    assert (body["method"], body["query"], body["body"]) == ("PUT", {"a": "1"}, "raw")
    assert body["headers"]["x-trace"] == "t"
    assert lamina_server.hits("/echo") == 1


async def test_connect_refused_is_connect_error() -> None:
    port = closed_port()
    async with HttpxTransport() as transport:
        with pytest.raises(ConnectError) as info:
            await transport(Request("GET", f"http://127.0.0.1:{port}/", endpoint="down"))
    assert info.value.request_sent is False
    assert info.value.endpoint == "down"
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_reset_is_transport_error(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        with pytest.raises(TransportError) as info:
            await transport(Request("GET", lamina_server.url_for("/reset")))
    assert info.value.request_sent is True
    assert not isinstance(info.value, ConnectError)


async def test_httpx_timeout_maps_to_lamina_timeout(lamina_server: LocalServer) -> None:
    async with HttpxTransport(timeout=0.2) as transport:
        with pytest.raises(TimeoutError) as info:
            await transport(Request("GET", lamina_server.url_for("/hang")))
    assert info.value.request_sent is True
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


async def test_unsupported_scheme_is_config_error_without_secret() -> None:
    async with HttpxTransport() as transport:
        with pytest.raises(ConfigError) as info:
            await transport(Request("GET", f"ftp://h/x?token={SECRET}"))
    assert SECRET not in str(info.value)


async def test_redirects_not_followed_by_default(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        response = await transport(Request("GET", lamina_server.url_for("/redirect?to=/echo")))
    assert response.status_code == 302
    assert lamina_server.hits("/echo") == 0


async def test_same_origin_redirect_keeps_credentials(lamina_server: LocalServer) -> None:
    async with HttpxTransport(follow_redirects=True) as transport:
        response = await transport(
            Request(
                "GET",
                lamina_server.url_for("/redirect?to=/echo"),
                headers={"Authorization": f"Bearer {SECRET}"},
            )
        )
    assert response.status_code == 200
    assert response.json()["headers"]["authorization"] == f"Bearer {SECRET}"


async def test_cross_origin_redirect_drops_every_secret_header(
    lamina_server: LocalServer, other_server: LocalServer
) -> None:
    target = other_server.url_for("/echo")
    async with HttpxTransport(follow_redirects=True) as transport:
        response = await transport(
            Request(
                "POST",
                lamina_server.url_for("/redirect"),
                params={"to": target, "status": "307"},
                headers={
                    "Authorization": f"Bearer {SECRET}",
                    "Cookie": f"session={SECRET}",
                    "X-API-Key": SECRET,
                    "Proxy-Authorization": SECRET,
                    "X-Keep": "yes",
                },
                json={"a": 1},
            )
        )
    assert response.status_code == 200
    received = other_server.requests("/echo")[0]
    assert received.method == "POST"  # 307 keeps the method and body
    assert received.json() == {"a": 1}
    assert received.headers["x-keep"] == "yes"
    for name in ["authorization", "cookie", "x-api-key", "proxy-authorization"]:
        assert name not in received.headers
    assert SECRET not in json.dumps(received.headers)


async def test_303_turns_post_into_get(lamina_server: LocalServer) -> None:
    async with HttpxTransport(follow_redirects=True) as transport:
        response = await transport(
            Request(
                "POST",
                lamina_server.url_for("/redirect"),
                params={"to": "/echo", "status": "303"},
                json={"a": 1},
            )
        )
    assert response.json()["method"] == "GET"
    assert response.json()["body"] == ""


async def test_too_many_redirects(lamina_server: LocalServer) -> None:
    async with HttpxTransport(follow_redirects=True, max_redirects=2) as transport:
        with pytest.raises(TransportError, match="max_redirects=2"):
            await transport(
                Request("GET", lamina_server.url_for("/redirect?to=/redirect%3Fto%3D/redirect"))
            )


async def test_declared_length_over_limit_fails_early(lamina_server: LocalServer) -> None:
    async with HttpxTransport(max_response_bytes=1000) as transport:
        with pytest.raises(ResponseTooLarge) as info:
            await transport(Request("GET", lamina_server.url_for("/large?bytes=5000")))
    assert info.value.limit == 1000


async def test_gzip_bomb_stops_at_limit(lamina_server: LocalServer) -> None:
    async with HttpxTransport(max_response_bytes=1_000_000) as transport:
        with pytest.raises(ResponseTooLarge):
            await transport(Request("GET", lamina_server.url_for("/gzip-bomb?bytes=200000000")))


async def test_gzip_body_is_decoded(lamina_server: LocalServer) -> None:
    async with HttpxTransport(max_response_bytes=5000) as transport:
        response = await transport(
            Request("GET", lamina_server.url_for("/large?bytes=4000&gzip=1"))
        )
    assert response.content == b"x" * 4000


async def test_per_call_limit_from_extensions(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        with pytest.raises(ResponseTooLarge):
            await transport(
                Request(
                    "GET",
                    lamina_server.url_for("/large?bytes=300"),
                    extensions={"max_response_bytes": 100},
                )
            )


async def test_owned_client_closed_borrowed_client_left_open() -> None:
    owned = HttpxTransport()
    await owned.aclose()
    assert owned.client.is_closed
    client = httpx.AsyncClient()
    borrowed = HttpxTransport(client)
    await borrowed.aclose()
    assert not client.is_closed
    await client.aclose()


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="client"):
        HttpxTransport(httpx.AsyncClient(), transport=httpx.MockTransport(lambda r: None))  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match="max_response_bytes"):
        HttpxTransport(max_response_bytes=0)


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


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "many"])
def test_bad_max_in_flight(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_in_flight"):
        HttpxTransport(max_in_flight=bad)  # type: ignore[arg-type]


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


async def test_max_in_flight_on_a_real_server(lamina_server: LocalServer) -> None:
    async with HttpxTransport(max_in_flight=2) as transport:
        url = lamina_server.url_for("/json?ms=300")
        await asyncio.gather(*(transport(Request("GET", url)) for _ in range(4)))
    arrivals = sorted(lamina_server.arrivals("/json"))
    assert len(arrivals) == 4
    # the third request can only leave once one of the first two was answered (300 ms)
    assert arrivals[2] - arrivals[0] >= 0.29


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
        with contextlib.suppress(LaminaTimeoutError):
            await hurried(Request("GET", lamina_server.url_for(f"/json?ms={i * 7 % 80}")))

    await asyncio.gather(*(call(i) for i in range(200)))
    patient = TimeoutLayer(3.0).wrap(transport)
    try:
        for _ in range(10):
            response = await patient(Request("GET", lamina_server.url_for("/json")))
            assert response.status_code == 200
    finally:
        await transport.aclose()


async def test_timeout_while_queued_says_nothing_was_sent(lamina_server: LocalServer) -> None:
    """A POST cut by its attempt timeout while it waits for a slot was never sent, so
    RetryLayer may resend it; one cut after it was sent may not be."""
    async with HttpxTransport(max_in_flight=1) as transport:
        slow = TimeoutLayer(0.2).wrap(transport)
        hurried = TimeoutLayer(0.05).wrap(transport)
        holder = asyncio.create_task(
            slow(Request("POST", lamina_server.url_for("/echo?ms=500"), json={"n": 1}))
        )
        await asyncio.sleep(0.02)  # the holder has the only slot
        with pytest.raises(LaminaTimeoutError) as queued:
            await hurried(Request("POST", lamina_server.url_for("/echo?n=2"), json={"n": 2}))
        assert queued.value.request_sent is False
        with pytest.raises(LaminaTimeoutError) as sent:
            await holder
        assert sent.value.request_sent is True
        retried = ServiceBuilder(
            [RetryLayer(retries=10, backoff=0.05, jitter=False), TimeoutLayer(0.05)]
        ).service(transport)
        blocker = asyncio.create_task(
            transport(Request("GET", lamina_server.url_for("/json?ms=400")))
        )
        await asyncio.sleep(0.02)
        response = await retried(Request("POST", lamina_server.url_for("/echo?n=3"), json={"n": 3}))
        await blocker
    assert response.status_code == 200
    assert response.attempts > 1  # the first attempts timed out in the queue ...
    assert len([r for r in lamina_server.requests("/echo") if r.query.get("n") == "3"]) == 1
    assert not [r for r in lamina_server.requests("/echo") if r.query.get("n") == "2"]


async def test_a_timeout_while_connecting_says_nothing_was_sent() -> None:
    """httpcore reports when a request's headers start to go out; cancelled before that
    (here: connecting to a listener whose accept queue is full), nothing was sent, so
    the timeout neither counts against the upstream nor stops a POST's retry."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):  # fill the accept queue: the next connect waits for a SYN retry
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        async with HttpxTransport() as transport:
            service = TimeoutLayer(0.2).wrap(transport)
            with pytest.raises(LaminaTimeoutError) as info:
                await service(Request("POST", f"http://127.0.0.1:{port}/x", json={}))
    finally:
        for sock in [*fillers, listener]:
            sock.close()
    assert info.value.request_sent is False


async def test_a_borrowed_client_with_another_transport_is_not_trusted_to_say(
    lamina_server: LocalServer,
) -> None:
    """A transport that is not httpcore may not report sending: a cancellation inside it
    is taken as sent (a POST is not resent blindly)."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1)
        return httpx.Response(200)

    async with HttpxTransport(transport=httpx.MockTransport(slow)) as transport:
        with pytest.raises(LaminaTimeoutError) as info:
            await TimeoutLayer(0.05).wrap(transport)(Request("POST", "http://api.test/x"))
    assert info.value.request_sent is True
