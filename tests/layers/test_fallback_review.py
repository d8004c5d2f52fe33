"""FallbackLayer, reviewed as a demanding user would use it: misconfiguration is never
hidden behind a fallback value, a fallback function that fails is chained to the failure
on every path, and a mutable fallback value is not shared between calls."""

from __future__ import annotations

from typing import Any

import pytest

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    ConfigError,
    ConnectError,
    LaminaError,
    Request,
    Response,
    service_fn,
)
from lamina._extras import MissingExtra
from lamina.layers.fallback import FallbackLayer
from lamina.testing import LocalServer

REQ = Request("GET", "http://upstream.test/x", endpoint="users")


def failing(error: BaseException) -> Any:
    async def handler(request: Request) -> Response:
        raise error

    return service_fn(handler)


def answering(status: int) -> Any:
    async def handler(request: Request) -> Response:
        return Response(status, content=b"{}", request=request)

    return service_fn(handler)


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("unknown placeholder {user_id}", field="url"),
        MissingExtra("a Redis backend needs lamina[redis]", extra="redis", field="backend"),
    ],
)
@pytest.mark.parametrize(
    "options",
    [{}, {"errors": [LaminaError]}, {"errors": [ValueError]}, {"statuses": [503]}],
)
async def test_a_configuration_error_is_never_replaced_by_the_fallback(
    error: ConfigError, options: dict[str, Any]
) -> None:
    layer = FallbackLayer({"users": []}, **options)
    assert not layer.handles(error)
    with pytest.raises(ConfigError) as caught:
        await layer.wrap(failing(error))(REQ)
    assert caught.value is error


async def test_naming_config_error_itself_lets_it_fall_back() -> None:
    error = ConfigError("unknown placeholder {user_id}", field="url")
    response = await FallbackLayer("x", errors=["ConfigError"]).wrap(failing(error))(REQ)
    assert (response.value, response.error) == ("x", error)


async def test_a_function_failing_on_a_status_is_chained_to_that_status() -> None:
    def broken(exc: Exception) -> Any:
        raise RuntimeError("no fallback either")

    with pytest.raises(RuntimeError) as info:
        await FallbackLayer(broken, statuses=[503]).wrap(answering(503))(REQ)
    context = info.value.__context__
    assert isinstance(context, LaminaError)
    assert getattr(context, "status_code", None) == 503


async def test_a_mutable_fallback_value_is_not_shared_between_calls() -> None:
    default = {"items": [], "source": "fallback"}
    service = FallbackLayer(default, statuses=[503]).wrap(answering(503))
    first = await service(REQ)
    first.value["items"].append("mutated by the first caller")
    second = await service(REQ)
    assert second.value == {"items": [], "source": "fallback"}
    assert default == {"items": [], "source": "fallback"}


async def test_runs_of_a_flow_do_not_share_the_fallback_value(lamina_server: LocalServer) -> None:
    fallback = FallbackLayer(
        {"price": None, "tags": []}, errors=[ConnectError, "CircuitOpenError"], statuses=[503]
    )

    def layers(endpoint: APIEndpoint, config: APIOrchestrationConfig) -> list[Any]:
        defaults = APIOrchestrator.default_layers(endpoint, config)
        return [*defaults[:2], fallback, *defaults[2:]]

    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="prices", url=lamina_server.url_for("/status/503"), retry_count=0)
        ]
    )
    async with APIOrchestrator(config, layers=layers) as orchestrator:
        first = await orchestrator.run()
        first.endpoints["prices"].result["tags"].append("seen")
        second = await orchestrator.run()
    assert first.endpoints["prices"].outcome == "fallback"
    assert second.endpoints["prices"].result == {"price": None, "tags": []}


@pytest.mark.parametrize("kind", ["HttpxTransport", "AiohttpTransport", "PyreqwestTransport"])
@pytest.mark.parametrize("value", [{"price": None, "tags": ["a"]}, "n/a", [1, 2], None])
async def test_below_the_parse_layer_the_value_survives_parsing(
    lamina_server: LocalServer, kind: str, value: Any
) -> None:
    # The docs allow the layer below the parse layer (statuses then match responses);
    # the parse layer above must not turn its value into None.
    import lamina.transports
    from lamina import ServiceBuilder
    from lamina.layers import ParseLayer

    transport = getattr(lamina.transports, kind)()
    layer = FallbackLayer(value, statuses=[503], errors=[ConnectError])
    service = ServiceBuilder([ParseLayer(), layer]).service(transport)
    try:
        response = await service(Request("GET", lamina_server.url_for("/status/503")))
        assert response.value == value
        assert getattr(response, "error", None) is not None
        refused = await service(Request("GET", "http://127.0.0.1:9/nothing"))
        assert refused.value == value
    finally:
        await transport.aclose()


@pytest.mark.parametrize("statuses", [[], ()])
def test_an_empty_statuses_list_is_refused_not_a_layer_that_never_falls_back(
    statuses: Any,
) -> None:
    with pytest.raises(ConfigError) as caught:
        FallbackLayer("x", statuses=statuses)
    assert caught.value.field == "statuses"


async def test_a_fallback_function_that_fails_is_not_counted_as_a_fallback() -> None:
    from lamina._events import listen

    events: list[str] = []
    request = listen(REQ, lambda name, attrs: events.append(name))

    def broken(exc: Exception) -> Any:
        raise RuntimeError("no fallback either")

    with pytest.raises(RuntimeError):
        await FallbackLayer(broken).wrap(failing(ConnectError("refused", request=REQ)))(request)
    assert "fallback.used" not in events
    answered = await FallbackLayer(lambda exc: 1).wrap(failing(ConnectError("x", request=REQ)))(
        request
    )
    assert answered.value == 1
    assert events.count("fallback.used") == 1
