"""A stack's repr shows its whole chain, outermost first, and never a secret (issue 14)."""

from __future__ import annotations

from typing import Any

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    HttpxTransport,
    Request,
    Response,
    ServiceBuilder,
    layer_fn,
    service_fn,
)
from lamina._core import stack_repr
from lamina.layers import CallTracingLayer, ParseLayer, RetryLayer, TimeoutLayer
from lamina.orchestration.stack import default_layers, new_shared_state

SECRET = "k-7a7a7a7a7a7a7a7a"


async def passthrough(request: Request, call_next: Any) -> Response:
    response: Response = await call_next(request)
    return response


async def answer(request: Request) -> Response:
    return Response(200, request=request)


async def test_the_default_stack_shows_every_layer_and_its_transport() -> None:
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(
                name="users",
                url=f"https://api.test/users?api_key={SECRET}",
                headers={"Authorization": f"Bearer {SECRET}"},
                rate_limit=60,
            )
        ],
        cache_ttl=30,
    )
    layers = default_layers(config.endpoints[0], config, new_shared_state(config))
    async with HttpxTransport(base_url=f"https://user:{SECRET}@api.test") as transport:
        stack = ServiceBuilder(layers).service(transport)
        text = repr(stack)
    assert text == (
        "Stack(call_tracing -> metrics -> cache -> parse -> retry -> circuit_breaker"
        " -> rate_limit -> timeout -> tracing -> HttpxTransport)"
    )
    assert SECRET not in text
    assert stack_repr(stack) == text


def test_functions_and_middleware_are_named() -> None:
    stack = (
        ServiceBuilder([TimeoutLayer(1.0)])
        .layer_fn(passthrough)
        .layer(ParseLayer())
        .service(service_fn(answer))
    )
    assert repr(stack) == "Stack(timeout -> layer_fn(passthrough) -> parse -> service_fn(answer))"
    bare = ServiceBuilder([CallTracingLayer(), layer_fn(passthrough)]).service(answer)
    assert repr(bare) == "Stack(call_tracing -> layer_fn(passthrough) -> answer)"


def test_an_inner_service_shows_the_chain_below_it() -> None:
    stack = ServiceBuilder([ParseLayer(), TimeoutLayer(1.0)]).service(answer)
    inner = stack.inner  # type: ignore[attr-defined]
    assert repr(inner) == "Stack(timeout -> answer)"


def test_a_layer_the_registry_does_not_know_is_shown_by_class() -> None:
    class Tag:
        __slots__ = ("inner",)

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, request: Request) -> Response:
            response: Response = await self.inner(request)
            return response

    class TagLayer:
        def wrap(self, inner: Any) -> Any:
            return Tag(inner)

    stack = ServiceBuilder([CallTracingLayer(), TagLayer(), RetryLayer(attempts=2)]).service(answer)
    assert repr(stack) == "Stack(call_tracing -> Tag -> retry -> answer)"
