import pytest

from lamina import (
    ConfigError,
    Headers,
    Layer,
    Request,
    Response,
    Service,
    ServiceBuilder,
    layer_fn,
    service_fn,
)


def recorder(log: list[str], name: str) -> Layer:
    async def mw(request: Request, call_next: Service) -> Response:
        log.append(f"{name}:down")
        response = await call_next(request)
        log.append(f"{name}:up")
        return response

    return layer_fn(mw)


async def ok(request: Request) -> Response:
    return Response(200, content=b'{"a": 1}', request=request)


async def test_first_layer_added_is_outermost() -> None:
    log: list[str] = []
    svc = ServiceBuilder().layer(recorder(log, "a")).layer(recorder(log, "b")).service(ok)
    await svc(Request("GET", "http://x/"))
    assert log == ["a:down", "b:down", "b:up", "a:up"]


async def test_builder_is_immutable_and_reusable() -> None:
    log: list[str] = []
    base = ServiceBuilder().layer(recorder(log, "a"))
    longer = base.layer(recorder(log, "b"))
    assert len(base.layers) == 1
    assert len(longer.layers) == 2
    await base.service(ok)(Request("GET", "http://x/"))
    assert log == ["a:down", "a:up"]


async def test_layer_fn_can_change_request_and_response() -> None:
    async def add_header(request: Request, call_next: Service) -> Response:
        response = await call_next(request.replace(headers=request.headers.copy_with({"x-a": "1"})))
        return response.replace(status_code=201)

    async def echo(request: Request) -> Response:
        return Response(200, content=request.headers["X-A"].encode(), request=request)

    svc = ServiceBuilder().layer_fn(add_header).service(service_fn(echo))
    response = await svc(Request("GET", "http://x/"))
    assert response.status_code == 201
    assert response.text == "1"


def test_builder_rejects_non_layers() -> None:
    with pytest.raises(ConfigError, match="layer"):
        ServiceBuilder().layer(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="handler"):
        service_fn(42)  # type: ignore[arg-type]


def test_protocols_are_structural() -> None:
    assert isinstance(service_fn(ok), Service)
    assert isinstance(layer_fn(lambda r, n: n(r)), Layer)  # type: ignore[arg-type,return-value]


def test_request_replace_copies_and_validates() -> None:
    request = Request("get", "http://x/a", params={"q": 1}, endpoint="ep")
    other = request.replace(attempt=2)
    assert request.method == "GET"
    assert (request.attempt, other.attempt) == (1, 2)
    assert other.extensions is request.extensions
    assert other.endpoint == "ep"
    with pytest.raises(TypeError, match="nope"):
        request.replace(nope=1)


def test_request_repr_hides_secrets() -> None:
    request = Request(
        "GET",
        "https://user:pw@h.example/p?api_key=s3cr3tvalue&x=1",
        headers={"Authorization": "Bearer s3cr3tvalue"},
    )
    text = repr(request)
    assert "s3cr3tvalue" not in text
    assert "pw@" not in text
    assert "x=1" in text
    assert "s3cr3tvalue" not in repr(request.headers)


def test_response_has_httpx_like_surface() -> None:
    response = Response(
        200,
        headers={"Content-Type": "application/json; charset=latin-1"},
        content='{"name": "é"}'.encode("latin-1"),
    )
    assert response.encoding == "latin-1"
    assert response.json() == {"name": "é"}
    assert response.text == '{"name": "é"}'
    assert response.is_success
    assert not response.is_error
    assert response.raise_for_status() is response
    assert not response.from_cache
    assert response.attempts == 1


def test_headers_are_case_insensitive_and_multi_valued() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X-Y", "z")])
    assert headers["SET-COOKIE"] == "a=1, b=2"
    assert headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert "x-y" in headers
    assert len(headers) == 2
    assert headers.copy_with({"x-y": "w"}, remove=["set-cookie"]) == {"X-Y": "w"}
    assert "a=1" not in repr(headers)
