"""The orchestrator's value contract holds with any ``layers=`` list (issue 14, item 7):
a list without a parse layer still gives parsed values, and a 404 is a failure."""

from __future__ import annotations

from typing import Any

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
from lamina._core import Request, Response, Service
from lamina.flows import build_orchestrator, config_from_dict
from lamina.layers import FallbackLayer, MetricsLayer, ParseLayer, RetryLayer, TimeoutLayer
from lamina.testing import LocalServer


def _config(base: str) -> APIOrchestrationConfig:
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="json", url=f"{base}/json?k=v", transform_output=lambda v: v["query"]),
            APIEndpoint(name="missing", url=f"{base}/status/404", retry_count=0),
            APIEndpoint(name="text", url=f"{base}/text"),
        ]
    )


def _check(report: Any) -> None:
    assert report.value["json"] == {"k": "v"}  # parsed, then transform_output
    assert isinstance(report.value["text"], str)
    missing = report.endpoints["missing"]
    assert missing.outcome == "failed"
    assert missing.status_code == 404
    assert type(missing.error).__name__ == "HTTPStatusError"
    assert report.value["missing"] is None


async def test_a_list_without_parse_still_parses_and_fails_on_404(
    lamina_server: LocalServer,
) -> None:
    layers = [RetryLayer(attempts=1), TimeoutLayer(5)]
    async with APIOrchestrator(_config(lamina_server.url), layers=layers) as orchestrator:
        _check(await orchestrator.run())


async def test_a_callable_without_parse_too(lamina_server: LocalServer) -> None:
    async with APIOrchestrator(
        _config(lamina_server.url), layers=lambda endpoint, config: [TimeoutLayer(5)]
    ) as orchestrator:
        _check(await orchestrator.run())


async def test_an_empty_list_too(lamina_server: LocalServer) -> None:
    async with APIOrchestrator(_config(lamina_server.url), layers=[]) as orchestrator:
        _check(await orchestrator.run())


async def test_a_flow_layers_list_without_parse(lamina_server: LocalServer) -> None:
    config = config_from_dict(
        {
            "layers": ["timeout"],
            "endpoints": [
                {
                    "name": "json",
                    "url": f"{lamina_server.url}/json?k=v",
                    "transform_output": "query",
                },
                {"name": "missing", "url": f"{lamina_server.url}/status/404", "retry_count": 0},
                {"name": "text", "url": f"{lamina_server.url}/text"},
            ],
        }
    )
    async with build_orchestrator(config) as orchestrator:
        _check(await orchestrator.run())


class Shout:
    """A layer of the user's own that parses: marked, so lamina adds no parse layer."""

    parses_response = True

    def wrap(self, inner: Service) -> Service:
        async def call(request: Request) -> Response:
            response = await inner(request)
            response.value = response.text.upper()
            return response

        return call  # type: ignore[return-value]


async def test_a_given_parse_layer_or_a_marked_one_is_used_as_is(
    lamina_server: LocalServer,
) -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="t", url=f"{lamina_server.url}/text")]
    )
    async with APIOrchestrator(config, layers=[Shout()]) as orchestrator:
        assert (await orchestrator.execute())["t"].isupper()
    custom = ParseLayer(response_parser=lambda response: "mine")
    async with APIOrchestrator(config, layers=[custom]) as orchestrator:
        assert await orchestrator.execute() == {"t": "mine"}


async def test_the_parse_layer_goes_where_the_default_stack_has_it(
    lamina_server: LocalServer,
) -> None:
    from lamina.orchestration.orchestrator import with_parse

    config = _config(lamina_server.url)
    metrics, fallback, retry = MetricsLayer(), FallbackLayer({"cached": "answer"}), RetryLayer()
    stack = with_parse([metrics, fallback, retry], config.endpoints[0], config)
    assert stack[:2] == [metrics, fallback]
    assert isinstance(stack[2], ParseLayer)
    assert stack[3] is retry
    # so a fallback still sees a 404 as a failure, and its value is kept
    async with APIOrchestrator(config, layers=[FallbackLayer({"n": 1})]) as orchestrator:
        report = await orchestrator.run()
    assert report.endpoints["missing"].outcome == "fallback"
    assert report.value["missing"] == {"n": 1}
    assert report.value["json"] == {"k": "v"}


async def test_a_breaker_outside_the_added_parse_layer_still_opens_on_5xx(
    lamina_server: LocalServer,
) -> None:
    """A metrics (or cache, fallback, call tracing) layer inside the breaker puts the
    added parse layer inside it too: the breaker then sees a 500 as an HTTPStatusError,
    and must count it as it counts the 500 response (it never opened)."""
    from lamina.layers import CircuitBreakerLayer

    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="e", url=f"{lamina_server.url}/status/500", retry_count=0)]
    )
    for layers in (
        lambda endpoint, cfg: [CircuitBreakerLayer(threshold=2), MetricsLayer()],
        lambda endpoint, cfg: [CircuitBreakerLayer(threshold=2), ParseLayer()],
    ):
        async with APIOrchestrator(config, layers=layers) as orchestrator:
            errors = [type((await orchestrator.run()).endpoints["e"].error).__name__ for _ in "123"]
        assert errors == ["HTTPStatusError", "HTTPStatusError", "CircuitOpenError"]


async def test_a_4xx_answer_seen_as_an_error_closes_a_half_open_breaker(
    lamina_server: LocalServer,
) -> None:
    """The upstream answered (404): a success for the breaker, as the 404 response is."""
    from lamina.layers import CircuitBreakerLayer
    from lamina.layers.circuit_breaker import CircuitState
    from lamina.testing.clock import ManualClock

    clock = ManualClock()
    breaker = CircuitBreakerLayer(threshold=1, timeout=5, clock=clock)
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="down", url=f"{lamina_server.url}/status/500", retry_count=0),
        ]
    )
    async with APIOrchestrator(config, layers=[breaker, ParseLayer()]) as orchestrator:
        await orchestrator.run()
    assert breaker.breaker("down").state == CircuitState.OPEN
    clock.advance(6)
    gone = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="down", url=f"{lamina_server.url}/status/404", retry_count=0)]
    )
    async with APIOrchestrator(gone, layers=[breaker, ParseLayer()]) as orchestrator:
        report = await orchestrator.run()
    assert report.endpoints["down"].status_code == 404
    assert breaker.breaker("down").state == CircuitState.CLOSED


async def test_an_answer_made_outside_the_added_parse_layer_is_still_judged(
    lamina_server: LocalServer,
) -> None:
    """A layer that answers on its own (chaos injecting a 503, a user's short-circuit)
    placed before a metrics or cache layer sat outside the added parse layer: its 503 was
    recorded as ok with the value None. The status is still judged."""
    from lamina.layers import ChaosLayer

    class NotHere:
        def wrap(self, inner: Service) -> Service:
            async def call(request: Request) -> Response:
                return Response(404, request=request)

            return call  # type: ignore[return-value]

    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="e", url=f"{lamina_server.url}/json", retry_count=0)]
    )
    for layers, status in (
        (lambda ep, cfg: [ChaosLayer(status=503, status_rate=1.0, seed=1), MetricsLayer()], 503),
        (lambda ep, cfg: [NotHere(), MetricsLayer()], 404),
    ):
        async with APIOrchestrator(config, layers=layers) as orchestrator:
            report = await orchestrator.run()
        assert report.endpoints["e"].outcome == "failed"
        assert report.endpoints["e"].status_code == status
        assert type(report.endpoints["e"].error).__name__ == "HTTPStatusError"
    # the usual lists are unchanged: one parse layer where the default stack has it
    async with APIOrchestrator(config, layers=[MetricsLayer(), RetryLayer()]) as orchestrator:
        assert (await orchestrator.run()).value["e"]["path"] == "/json"
