"""AiohttpTransport, and the transport contract run against BOTH transports on a real server."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from lamina import (
    ConfigError,
    ConnectError,
    HttpxTransport,
    ParseError,
    Request,
    ResponseTooLarge,
    TimeoutError,
    TransportError,
)
from lamina.aiohttp_transport import AiohttpTransport
from lamina.layers.timeout import TimeoutLayer
from lamina.testing import LocalServer

SECRET = "s3cr3t-abcdef123"

Factory = Callable[..., Any]


@pytest.fixture(params=["httpx", "aiohttp"])
async def make_transport(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Build HttpxTransport or AiohttpTransport with the same options; closes them after."""
    made: list[Any] = []

    def factory(**options: Any) -> Any:
        cls = HttpxTransport if request.param == "httpx" else AiohttpTransport
        transport = cls(**options)
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        await transport.aclose()


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


# -- the contract, for both transports ------------------------------------------------


async def test_echo(make_transport: Factory, lamina_server: LocalServer) -> None:
    transport = make_transport()
    response = await transport(
        Request(
            "PUT",
            lamina_server.url_for("/echo"),
            params={"a": "1", "flag": True, "many": [1, 2]},
            headers={"X-Trace": "t"},
            content=b"raw",
        )
    )
    body = response.json()
    assert (body["method"], body["body"]) == ("PUT", "raw")
    assert body["query"] == {"a": "1", "flag": "true", "many": "2"}
    assert body["headers"]["x-trace"] == "t"
    assert "content-type" not in body["headers"]  # raw bytes carry no invented type
    assert response.headers["content-type"] == "application/json"
    assert response.elapsed > 0
    assert lamina_server.hits("/echo") == 1


async def test_params_are_merged_into_the_url_query(
    make_transport: Factory, lamina_server: LocalServer, request: pytest.FixtureRequest
) -> None:
    """An endpoint URL like ``/v1/items?api-version=2`` plus ``params`` must keep both."""
    transport = make_transport()
    response = await transport(
        Request("GET", lamina_server.url_for("/echo?v=2&a=0"), params={"a": "1"})
    )
    assert response.json()["query"] == {"v": "2", "a": "1"}


async def test_json_body(make_transport: Factory, lamina_server: LocalServer) -> None:
    transport = make_transport()
    response = await transport(
        Request("POST", lamina_server.url_for("/echo"), json={"n": 1, "s": "é"})
    )
    body = response.json()
    assert json.loads(body["body"]) == {"n": 1, "s": "é"}
    assert body["headers"]["content-type"] == "application/json"


async def test_http_is_the_clients_response(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    transport = make_transport()
    response = await transport(Request("GET", lamina_server.url_for("/json")))
    expected = "httpx" if isinstance(transport, HttpxTransport) else "aiohttp"
    assert type(response.http).__module__.startswith(expected)


async def test_connect_refused_is_connect_error(make_transport: Factory) -> None:
    transport = make_transport()
    with pytest.raises(ConnectError) as info:
        await transport(Request("GET", f"http://127.0.0.1:{closed_port()}/", endpoint="down"))
    assert info.value.request_sent is False
    assert info.value.endpoint == "down"
    assert info.value.__cause__ is not None


async def test_reset_is_transport_error_sent(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    transport = make_transport()
    with pytest.raises(TransportError) as info:
        await transport(Request("GET", lamina_server.url_for("/reset")))
    assert info.value.request_sent is True
    assert not isinstance(info.value, ConnectError)


async def test_no_hidden_resend_on_a_reused_connection(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    """aiohttp resends a GET once when a keep-alive connection drops it; lamina must
    not (retries belong to RetryLayer, which counts them)."""
    transport = make_transport()
    await transport(Request("GET", lamina_server.url_for("/json")))  # a pooled connection
    with pytest.raises(TransportError):
        await transport(Request("GET", lamina_server.url_for("/reset")))
    assert lamina_server.hits("/reset") == 1


async def test_hang_with_timeout_layer(make_transport: Factory, lamina_server: LocalServer) -> None:
    service = TimeoutLayer(0.1).wrap(make_transport())
    with pytest.raises(TimeoutError) as info:
        await service(Request("GET", lamina_server.url_for("/hang")))
    assert info.value.request_sent is True
    for _ in range(50):  # the server sees the client go away
        await asyncio.sleep(0.01)
        if not [t for t in asyncio.all_tasks() if "hang" in repr(t)]:
            break
    # the transport still works afterwards (the cancelled connection was not reused)
    response = await service(Request("GET", lamina_server.url_for("/json")))
    assert response.status_code == 200


async def test_client_timeout_maps_to_lamina_timeout(lamina_server: LocalServer) -> None:
    async with AiohttpTransport(timeout=aiohttp.ClientTimeout(sock_read=0.1)) as transport:
        with pytest.raises(TimeoutError) as info:
            await transport(Request("GET", lamina_server.url_for("/hang")))
    assert info.value.request_sent is True
    assert isinstance(info.value.__cause__, aiohttp.ServerTimeoutError)


async def test_unsupported_scheme_is_config_error_without_secret(
    make_transport: Factory,
) -> None:
    transport = make_transport()
    with pytest.raises(ConfigError) as info:
        await transport(Request("GET", f"ftp://h/x?token={SECRET}"))
    assert SECRET not in str(info.value)
    assert info.value.field == "url"


async def test_redirects_not_followed_by_default(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    transport = make_transport()
    response = await transport(Request("GET", lamina_server.url_for("/redirect?to=/echo")))
    assert response.status_code == 302
    assert lamina_server.hits("/echo") == 0


async def test_same_origin_redirect_keeps_credentials(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    transport = make_transport(follow_redirects=True)
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
    make_transport: Factory, lamina_server: LocalServer, other_server: LocalServer
) -> None:
    transport = make_transport(follow_redirects=True)
    response = await transport(
        Request(
            "POST",
            lamina_server.url_for("/redirect"),
            params={"to": other_server.url_for("/echo"), "status": "307", "sig": SECRET},
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
    assert SECRET not in json.dumps(received.query)  # the signed query is not carried over


async def test_303_turns_post_into_get(make_transport: Factory, lamina_server: LocalServer) -> None:
    transport = make_transport(follow_redirects=True)
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


async def test_too_many_redirects(make_transport: Factory, lamina_server: LocalServer) -> None:
    transport = make_transport(follow_redirects=True, max_redirects=2)
    with pytest.raises(TransportError, match="max_redirects=2"):
        await transport(
            Request("GET", lamina_server.url_for("/redirect?to=/redirect%3Fto%3D/redirect"))
        )


async def test_declared_length_over_limit_fails_early(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    transport = make_transport(max_response_bytes=1000)
    with pytest.raises(ResponseTooLarge) as info:
        await transport(Request("GET", lamina_server.url_for("/large?bytes=5000")))
    assert info.value.limit == 1000
    # the connection with the unread body is not reused
    response = await transport(Request("GET", lamina_server.url_for("/large?bytes=500")))
    assert response.content == b"x" * 500


async def test_per_call_limit_from_extensions(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    transport = make_transport()
    with pytest.raises(ResponseTooLarge):
        await transport(
            Request(
                "GET",
                lamina_server.url_for("/large?bytes=300"),
                extensions={"max_response_bytes": 100},
            )
        )


async def test_gzip_bomb_stops_at_limit(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    transport = make_transport(max_response_bytes=1_000_000)
    with pytest.raises(ResponseTooLarge) as info:
        await transport(Request("GET", lamina_server.url_for("/gzip-bomb?bytes=200000000")))
    assert info.value.limit == 1_000_000


async def test_gzip_body_is_decoded(make_transport: Factory, lamina_server: LocalServer) -> None:
    transport = make_transport(max_response_bytes=5000)
    response = await transport(Request("GET", lamina_server.url_for("/large?bytes=4000&gzip=1")))
    assert response.content == b"x" * 4000


async def test_gzip_over_limit_after_decoding(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    """4,000 bytes compress to ~40: the limit applies to what it inflates to."""
    transport = make_transport(max_response_bytes=3000)
    with pytest.raises(ResponseTooLarge):
        await transport(Request("GET", lamina_server.url_for("/large?bytes=4000&gzip=1")))


async def test_corrupt_gzip_is_parse_error(
    make_transport: Factory, lamina_server: LocalServer
) -> None:
    lamina_server.route(
        "/t-aiohttp/corrupt-gzip",
        lambda req: (200, b"\x1f\x8b\x08\x00garbage-not-gzip", {"Content-Encoding": "gzip"}),
    )
    transport = make_transport()
    with pytest.raises(ParseError):
        await transport(Request("GET", lamina_server.url_for("/t-aiohttp/corrupt-gzip")))


# -- aiohttp specifics ---------------------------------------------------------------


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


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        AiohttpTransport(max_response_bytes=0)
    assert info.value.field == "max_response_bytes"
    with pytest.raises(ConfigError) as info:
        AiohttpTransport(max_redirects=-1)
    assert info.value.field == "max_redirects"
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
