from typing import Any

import pytest

from lamina import (
    ConfigError,
    HTTPStatusError,
    HttpxTransport,
    ParseError,
    Request,
    Response,
    ResponseTooLarge,
    ServiceBuilder,
)
from lamina.layers import ParseLayer, TimeoutLayer
from lamina.testing import LocalServer

SECRET = "tok-abcdef123456"


async def call(
    server: LocalServer, path: str, layer: ParseLayer | None = None, **kw: Any
) -> Response:
    async with HttpxTransport() as transport:
        svc = (
            ServiceBuilder().layer(layer or ParseLayer()).layer(TimeoutLayer(5)).service(transport)
        )
        return await svc(Request("GET", server.url_for(path), endpoint="ep", **kw))


async def test_json_by_content_type(lamina_server: LocalServer) -> None:
    response = await call(lamina_server, "/json?x=1")
    assert response.value == {"ok": True, "path": "/json", "query": {"x": "1"}}


async def test_text_when_not_json(lamina_server: LocalServer) -> None:
    response = await call(lamina_server, "/text")
    assert response.value == "<html><body>not json</body></html>"


async def test_invalid_json_is_parse_error(lamina_server: LocalServer) -> None:
    with pytest.raises(ParseError) as info:
        await call(lamina_server, "/invalid-json")
    err = info.value
    assert err.endpoint == "ep"
    assert err.status_code == 200
    assert err.snippet.startswith('{"broken"')
    assert "[ep]" in str(err)


async def test_user_parser_failure_is_parse_error(lamina_server: LocalServer) -> None:
    layer = ParseLayer(response_parser=lambda r: r.json()["data"])
    with pytest.raises(ParseError, match="response_parser failed: JSONDecodeError"):
        await call(lamina_server, "/text", layer)
    with pytest.raises(ParseError, match="KeyError"):
        await call(lamina_server, "/json", layer)


async def test_user_parser_and_transform(lamina_server: LocalServer) -> None:
    layer = ParseLayer(
        response_parser=lambda r: r.json()["query"],
        transform_output=lambda q: {"id": int(q["id"])},
    )
    response = await call(lamina_server, "/json?id=7", layer)
    assert response.value == {"id": 7}


@pytest.mark.parametrize("status", [400, 404, 500, 503])
async def test_non_2xx_is_http_status_error(lamina_server: LocalServer, status: int) -> None:
    with pytest.raises(HTTPStatusError) as info:
        await call(lamina_server, f"/status/{status}")
    assert info.value.status_code == status
    assert info.value.endpoint == "ep"
    assert info.value.response is not None


async def test_too_large_stops_while_streaming(lamina_server: LocalServer) -> None:
    layer = ParseLayer(max_response_bytes=10_000)
    with pytest.raises(ResponseTooLarge):
        await call(lamina_server, "/large?bytes=20000&gzip=1", layer)
    with pytest.raises(ResponseTooLarge):
        await call(lamina_server, "/gzip-bomb?bytes=100000000", layer)


async def test_snippet_never_shows_the_callers_secret(lamina_server: LocalServer) -> None:
    # /echo reflects the request headers into the body; parse it as something else.
    layer = ParseLayer(response_parser=lambda r: int(r.text))
    with pytest.raises(ParseError) as info:
        await call(lamina_server, "/echo", layer, headers={"Authorization": f"Bearer {SECRET}"})
    assert SECRET not in str(info.value)
    assert SECRET not in info.value.snippet


async def test_empty_body_is_none() -> None:
    async def inner(request: Request) -> Response:
        return Response(204, request=request)

    response = await ParseLayer().wrap(inner)(Request("DELETE", "http://x/"))
    assert response.value is None


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="response_parser"):
        ParseLayer(response_parser="json")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="transform_output"):
        ParseLayer(transform_output=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_response_bytes"):
        ParseLayer(max_response_bytes=0)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"a": "é"}'.encode(), "application/json"),
        ('{"a": "é"}'.encode("utf-8-sig"), "application/json"),
        ('{"a": "é"}'.encode("utf-16-le"), "application/json"),
        ('{"a": "é"}'.encode("utf-16"), "application/problem+json"),
        ('{"a": "é"}'.encode("latin-1"), "application/json; charset=ISO-8859-1"),
    ],
)
async def test_json_in_every_encoding_json_allows(body: bytes, content_type: str) -> None:
    async def inner(request: Request) -> Response:
        return Response(200, content=body, headers={"content-type": content_type})

    response = await ParseLayer().wrap(inner)(Request("GET", "http://x/"))
    assert response.value == {"a": "é"}


async def test_invalid_utf8_json_is_parse_error() -> None:
    async def inner(request: Request) -> Response:
        return Response(200, content=b'{"a": "\xff"}', headers={"content-type": "application/json"})

    with pytest.raises(ParseError, match="not valid JSON"):
        await ParseLayer().wrap(inner)(Request("GET", "http://x/", endpoint="ep"))
