"""lamina.Client (docs/client.md): an httpx-like front door to a stack, on every transport,
against the real local server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import lamina
from lamina import ConfigError, HTTPStatusError, Request, Response
from lamina.client import Client, default_layers
from lamina.layers import (
    CallTracingLayer,
    CircuitBreakerLayer,
    ParseLayer,
    RetryLayer,
    TimeoutLayer,
)
from lamina.testing import LocalServer, ManualClock

Factory = Callable[..., Any]
SECRET = "s3cr3t-client-9f8e7d"


class Recording:
    """A transport wrapper that remembers the requests it sent and whether it was closed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[Request] = []
        self.closed = 0

    async def __call__(self, request: Request) -> Response:
        self.sent.append(request)
        response: Response = await self.inner(request)
        return response

    async def aclose(self) -> None:
        self.closed += 1
        await self.inner.aclose()


async def test_every_verb_sends_params_headers_and_body(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    async with Client(
        transport=transport_factory(),
        base_url=lamina_server.url + "/",
        headers={"X-Client": "one", "X-Both": "client"},
        params={"page": "1"},
        layers=[],
    ) as client:
        for verb in ("get", "post", "put", "patch", "delete"):
            response = await getattr(client, verb)(
                "/echo", params={"q": verb}, headers={"X-Both": "call"}
            )
            assert isinstance(response, Response)
            assert response.status_code == 200
            echo = response.json()
            assert echo["method"] == verb.upper()
            assert echo["query"] == {"page": "1", "q": verb}
            assert echo["headers"]["x-client"] == "one"
            assert echo["headers"]["x-both"] == "call"
        sent = await client.post("echo", json={"a": [1, 2]})
        assert json.loads(sent.json()["body"]) == {"a": [1, 2]}
        raw = await client.request("PUT", "/echo", content=b"raw bytes")
        assert raw.json()["body"] == "raw bytes"


async def test_base_url_joins_like_httpx_and_absolute_urls_pass(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    async with Client(
        transport=transport_factory(), base_url=lamina_server.url + "/status", layers=[]
    ) as client:
        assert client.base_url == lamina_server.url + "/status/"
        assert (await client.get("418")).status_code == 418
        assert (await client.get("/404")).status_code == 404
        absolute = await client.get(lamina_server.url_for("/json"))
        assert absolute.json()["path"] == "/json"


async def test_an_error_status_is_returned_unless_a_layer_raises(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    async with Client(transport=transport_factory(), base_url=lamina_server.url) as client:
        response = await client.get("/status/404")
        assert response.status_code == 404
        assert response.is_error
        with pytest.raises(HTTPStatusError):
            response.raise_for_status()
    async with Client(
        transport=transport_factory(), base_url=lamina_server.url, layers=[ParseLayer()]
    ) as parsing:
        assert (await parsing.get("/json")).value["ok"] is True
        with pytest.raises(HTTPStatusError):
            await parsing.get("/status/404")


async def test_the_default_stack_retries_on_the_clients_clock(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    clock = ManualClock(autojump=True)
    async with Client(
        transport=transport_factory(), base_url=lamina_server.url, clock=clock
    ) as client:
        response = await client.get("/flaky/client", params={"fail": "2"})
        assert response.status_code == 200
        assert response.attempts == 3
        assert len(clock.sleeps) == 2
        assert all(s > 0 for s in clock.sleeps)
        assert lamina_server.hits("/flaky/client") == 3
        assert client.metrics.total_requests >= 1


def test_default_layers_are_the_endpoint_default_stack_without_parse() -> None:
    kinds = [type(layer) for layer in default_layers()]
    assert kinds[0] is CallTracingLayer
    assert RetryLayer in kinds
    assert CircuitBreakerLayer in kinds
    assert TimeoutLayer in kinds
    assert ParseLayer not in kinds
    retry = next(layer for layer in default_layers() if isinstance(layer, RetryLayer))
    assert retry.attempts == 4  # APIEndpoint.retry_count=3 retries


async def test_a_calls_timeout_bounds_the_whole_call(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    async with Client(
        transport=transport_factory(), base_url=lamina_server.url, layers=[], timeout=30
    ) as client:
        with pytest.raises(lamina.TimeoutError):
            await client.get("/hang", timeout=0.15)
        assert (await client.get("/json")).status_code == 200


async def test_closing_the_client_closes_its_transport(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    transport = Recording(transport_factory())
    client = Client(transport=transport, base_url=lamina_server.url, layers=[])
    async with client:
        await client.get("/json")
    assert transport.closed == 1
    assert client.is_closed
    await client.aclose()  # twice is fine
    assert transport.closed == 1
    with pytest.raises(RuntimeError, match="closed"):
        await client.get("/json")


async def test_an_httpx_transport_is_wrapped(lamina_server: LocalServer) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"path": request.url.path})

    async with Client(transport=httpx.MockTransport(handler), layers=[]) as client:
        response = await client.post("http://api.test/items")
        assert response.status_code == 201
        assert response.json() == {"path": "/items"}


async def test_the_endpoint_names_the_call_for_the_breaker(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    breaker = CircuitBreakerLayer(threshold=1, timeout=60)
    async with Client(
        transport=transport_factory(), base_url=lamina_server.url, layers=[breaker]
    ) as client:
        await client.get("/status/503")
        with pytest.raises(lamina.CircuitOpenError):
            await client.get("/json")  # same origin: same breaker
        assert (await client.get("/json", endpoint="other")).status_code == 200


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"base_url": "api.example.com"}, "base_url"),
        ({"base_url": "http://h/?a=1"}, "base_url"),
        ({"layers": [object()]}, "layers[0]"),
        ({"layers": "retry"}, "layers"),
        ({"timeout": -1}, "timeout"),
        ({"transport": "curl"}, "transport"),
        ({"transport": 42}, "transport"),
        ({"params": ["a"]}, "params"),
        ({"layers": [RetryLayer]}, "layers[0]"),  # the class, not a layer
        ({"transport": lamina.HttpxTransport}, "transport"),
        ({"headers": 5}, "headers"),
        ({"headers": {"X-Token": None}}, "headers"),
        ({"base_url": "http://h:99999"}, "base_url"),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Client(**options)
    assert caught.value.field == field


async def test_a_relative_url_needs_a_base_url_and_secrets_stay_out_of_repr(
    lamina_server: LocalServer,
) -> None:
    async with Client(base_url=f"http://user:{SECRET}@127.0.0.1:1/") as client:
        assert SECRET not in repr(client)
        assert "-> retry -> circuit_breaker ->" in repr(client)
        assert "HttpxTransport" in repr(client)
    async with Client() as bare:
        with pytest.raises(ConfigError) as caught:
            await bare.get("/json")
        assert caught.value.field == "url"


@pytest.mark.parametrize("name", ["httpx", "aiohttp", "pyreqwest"])
async def test_a_transport_by_name(name: str, lamina_server: LocalServer) -> None:
    async with Client(transport=name, base_url=lamina_server.url, layers=[]) as client:
        assert type(client.transport).__name__.lower().startswith(name)
        assert (await client.get("/json")).json()["ok"] is True


class RawServer:
    """A loopback HTTP/1.1 server that keeps every request's raw head, so a test sees
    repeated headers and query parameters exactly as they went on the wire (LocalServer's
    record folds them into dicts)."""

    def __init__(self) -> None:
        self.heads: list[str] = []
        self.url = ""

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                text = head.decode("latin-1")
                self.heads.append(text)
                length = next(
                    (
                        int(line.split(":", 1)[1])
                        for line in text.split("\r\n")
                        if line.lower().startswith("content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def values(self, name: str) -> list[str]:
        lines = self.heads[-1].split("\r\n")[1:]
        return [
            line.split(":", 1)[1].strip()
            for line in lines
            if line.lower().startswith(name.lower() + ":")
        ]

    def target(self) -> str:
        return self.heads[-1].split(" ", 2)[1]


async def test_a_calls_repeated_headers_all_reach_the_wire(transport_factory: Factory) -> None:
    # httpx merges a call's headers by name and keeps every value it gives.
    async with (
        RawServer() as server,
        Client(
            transport=transport_factory(), base_url=server.url, layers=[], headers={"X-A": "client"}
        ) as client,
    ):
        await client.get("/", headers=[("X-A", "1"), ("X-A", "2")])
        assert server.values("x-a") == ["1", "2"]
        await client.get("/", headers={"x-a": "call"})
        assert server.values("x-a") == ["call"]


async def test_params_as_pairs_or_a_string_as_httpx_takes_them(
    transport_factory: Factory,
) -> None:
    async with (
        RawServer() as server,
        Client(
            transport=transport_factory(), base_url=server.url, layers=[], params={"page": "1"}
        ) as client,
    ):
        await client.get("/", params=[("tag", "a"), ("tag", "b")])
        assert server.target() == "/?page=1&tag=a&tag=b"
        await client.get("/", params="tag=c&tag=d&page=2")
        assert server.target() == "/?page=2&tag=c&tag=d"
        await client.get("/", params={"tag": ["e", "f"], "on": True, "none": None})
        assert server.target() == "/?page=1&tag=e&tag=f&on=true&none="
    paired = Client(base_url=server.url, params=[("k", "1"), ("k", "2")], layers=[])
    assert paired.params == {"k": ["1", "2"]}
    for bad in (5, ["ab"], [("k", "1", "2")]):
        with pytest.raises(ConfigError) as caught:
            await paired.get("/", params=bad)
        assert caught.value.field == "params"
    await paired.aclose()


async def test_a_calls_timeout_none_lifts_the_clients_timeout(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    # As in httpx: timeout=None on a call means no timeout, not "the client's".
    async with Client(
        transport=transport_factory(), base_url=lamina_server.url, layers=[], timeout=0.05
    ) as client:
        with pytest.raises(lamina.TimeoutError):
            await client.get("/json", params={"ms": 150})
        response = await client.get("/json", params={"ms": 150}, timeout=None)
        assert response.status_code == 200


def test_a_base_url_with_a_bad_port_fails_at_construction() -> None:
    for url in ("https://h:99999", "http://h:port/", f"http://u:{SECRET}@h:70000/"):
        with pytest.raises(ConfigError) as caught:
            Client(base_url=url)
        assert caught.value.field == "base_url"
        assert SECRET not in str(caught.value)


async def test_a_calls_bad_headers_fail_before_anything_is_sent(lamina_server: LocalServer) -> None:
    async with Client(base_url=lamina_server.url, layers=[]) as client:
        for bad in (5, {"X-Token": None}, [("X-Token", None)], ["ab", "cde"]):
            with pytest.raises(ConfigError) as caught:
                await client.get("/echo", headers=bad)
            assert caught.value.field == "headers"
        assert lamina_server.hits("/echo") == 0


async def test_data_sends_a_form_as_httpx_does(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    async with Client(
        transport=transport_factory(), base_url=lamina_server.url, layers=[]
    ) as client:
        echo = (await client.post("/echo", data={"name": "Ada L", "tag": ["a", "b"]})).json()
        assert echo["body"] == "name=Ada+L&tag=a&tag=b"
        assert echo["headers"]["content-type"] == "application/x-www-form-urlencoded"
        typed = await client.post(
            "/echo",
            data={"a": "1"},
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        assert typed.json()["headers"]["content-type"].endswith("charset=utf-8")
        for options in ({"data": {"a": 1}, "json": {}}, {"data": {"a": 1}, "content": b"x"}):
            with pytest.raises(ConfigError) as caught:
                await client.post("/echo", **options)
            assert caught.value.field == "data"
        with pytest.raises(ConfigError, match="content=") as raw:
            await client.post("/echo", data=b"raw")
        assert raw.value.field == "data"


async def test_follow_redirects_per_client_and_per_call_as_in_httpx(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    async with Client(
        transport=transport_factory(),
        base_url=lamina_server.url,
        layers=[],
        headers={"Authorization": f"Bearer {SECRET}"},
    ) as client:
        assert (await client.get("/redirect", params={"to": "/json"})).status_code == 302
        followed = await client.get("/redirect", params={"to": "/json"}, follow_redirects=True)
        assert followed.status_code == 200
        assert followed.json()["path"] == "/json"
        seen = await client.post(
            "/redirect",
            params={"to": "/echo", "status": 303},
            json={"a": 1},
            follow_redirects=True,
        )
        assert seen.json()["method"] == "GET"
        assert seen.json()["headers"]["authorization"] == f"Bearer {SECRET}"  # same origin
        with LocalServer() as other:
            away = await client.get(
                "/redirect", params={"to": other.url_for("/echo")}, follow_redirects=True
            )
            assert "authorization" not in away.json()["headers"]  # another origin
        lamina_server.route("/client-loop", lambda req: (302, b"", {"Location": "/client-loop"}))
        with pytest.raises(lamina.TransportError, match="redirects"):
            await client.get("/client-loop", follow_redirects=True)
    async with Client(
        transport=transport_factory(), base_url=lamina_server.url, layers=[], follow_redirects=True
    ) as following:
        assert (await following.get("/redirect", params={"to": "/json"})).status_code == 200
        kept = await following.get("/redirect", params={"to": "/json"}, follow_redirects=False)
        assert kept.status_code == 302
    async with Client(
        transport=transport_factory(), base_url=lamina_server.url, layers=[ParseLayer()]
    ) as parsing:  # the parse layer sees the answer at the end of the redirects
        parsed = await parsing.get("/redirect", params={"to": "/json"}, follow_redirects=True)
        assert parsed.value["path"] == "/json"
    with pytest.raises(ConfigError) as caught:
        Client(follow_redirects="yes")  # type: ignore[arg-type]
    assert caught.value.field == "follow_redirects"


async def test_a_closed_client_cannot_be_entered_again(lamina_server: LocalServer) -> None:
    client = Client(base_url=lamina_server.url, layers=[])
    async with client:
        assert (await client.get(httpx.URL(lamina_server.url_for("/json")))).status_code == 200
    with pytest.raises(RuntimeError, match="closed"):
        async with client:
            pass


async def test_the_default_breaker_counts_attempts_as_the_docs_say(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    # docs/client.md: with the default layers a 5xx is returned until the breaker opens;
    # each attempt counts, so the second call to a host answering 500 meets an open breaker.
    clock = ManualClock(autojump=True)
    async with Client(
        transport=transport_factory(), base_url=lamina_server.url, clock=clock
    ) as client:
        first = await client.get("/status/500")
        assert (first.status_code, first.attempts) == (500, 4)
        with pytest.raises(lamina.CircuitOpenError):
            await client.get("/status/500")
        with pytest.raises(lamina.CircuitOpenError):
            await client.get("/json")  # the same host
        assert (await client.get("/json", endpoint="elsewhere")).status_code == 200


async def test_bytes_header_names_and_values_go_out_as_text(
    transport_factory: Factory, lamina_server: LocalServer
) -> None:
    # httpx takes bytes headers; str(b"v") would send the text "b'v'".
    async with Client(
        transport=transport_factory(),
        base_url=lamina_server.url,
        layers=[],
        headers={b"X-Client": b"one"},
    ) as client:
        echo = (await client.get("/echo", headers=[(b"X-Call", b"two")])).json()
        assert echo["headers"]["x-client"] == "one"
        assert echo["headers"]["x-call"] == "two"
