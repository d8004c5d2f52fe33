"""FallbackLayer: a value or a function in place of the failures chosen; the run report
marks the endpoint ``fallback`` and keeps the original error."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CircuitOpenError,
    ConfigError,
    ConnectError,
    HTTPStatusError,
    OrchestrationMode,
    Request,
    Response,
    ServiceBuilder,
    TimeoutError,
    service_fn,
)
from lamina._core import Layer
from lamina._events import listen
from lamina.cli.report_html import render_html
from lamina.layers.circuit_breaker import CircuitBreakerLayer
from lamina.layers.fallback import FallbackLayer, FallbackResponse
from lamina.layers.parse import ParseLayer
from lamina.layers.retry import RetryLayer
from lamina.testing import LocalServer, ManualClock

TRANSPORTS = ["httpx", "aiohttp", "pyreqwest"]


def failing(error: Exception) -> Any:
    async def handler(request: Request) -> Response:
        raise error

    return service_fn(handler)


def answering(status: int) -> Any:
    async def handler(request: Request) -> Response:
        return Response(status, content=b'{"s": 1}', request=request)

    return service_fn(handler)


REQ = Request("GET", "http://upstream.test/x", endpoint="users")


# -- unit: what falls back and what the answer is ---------------------------------------


async def test_a_value_replaces_a_lamina_error_and_keeps_it() -> None:
    error = ConnectError("refused", request=REQ)
    service = FallbackLayer({"users": []}).wrap(failing(error))
    response = await service(REQ)
    assert isinstance(response, FallbackResponse)
    assert response.value == {"users": []}
    assert response.error is error
    assert response.status_code == 200
    assert response.request is REQ


async def test_by_default_only_lamina_errors_fall_back() -> None:
    service = FallbackLayer("x").wrap(failing(KeyError("bug")))
    with pytest.raises(KeyError):
        await service(REQ)


async def test_cancellation_never_falls_back() -> None:
    async def handler(request: Request) -> Response:
        raise asyncio.CancelledError

    service = FallbackLayer("x", errors=[Exception]).wrap(service_fn(handler))
    with pytest.raises(asyncio.CancelledError):
        await service(REQ)


async def test_on_chooses_error_classes_by_class_or_by_lamina_name() -> None:
    only_open = FallbackLayer("cached", errors=["CircuitOpenError"])
    opened = CircuitOpenError(retry_after=3.0, request=REQ)
    assert (await only_open.wrap(failing(opened))(REQ)).value == "cached"
    with pytest.raises(TimeoutError):
        await only_open.wrap(failing(TimeoutError("slow", request=REQ)))(REQ)
    mine = FallbackLayer(0, errors=ValueError)
    assert (await mine.wrap(failing(ValueError("x")))(REQ)).value == 0


async def test_statuses_alone_fall_back_for_those_statuses_only() -> None:
    layer = FallbackLayer("later", statuses=[503])
    stack = ServiceBuilder([layer, ParseLayer()])
    assert (await stack.service(answering(503))(REQ)).value == "later"
    with pytest.raises(HTTPStatusError) as info:
        await stack.service(answering(404))(REQ)
    assert info.value.status_code == 404
    with pytest.raises(ConnectError):  # other errors: not chosen
        await layer.wrap(failing(ConnectError("x", request=REQ)))(REQ)


async def test_below_the_parse_layer_a_status_response_falls_back_as_its_error() -> None:
    seen: list[Exception] = []

    def fallback(error: Exception) -> str:
        seen.append(error)
        return "degraded"

    response = await FallbackLayer(fallback, statuses=[502]).wrap(answering(502))(REQ)
    assert response.value == "degraded"
    assert isinstance(seen[0], HTTPStatusError)
    assert seen[0].status_code == 502
    ok = await FallbackLayer(fallback, statuses=[502]).wrap(answering(200))(REQ)
    assert ok.status_code == 200
    assert not isinstance(ok, FallbackResponse)


async def test_sync_function_of_the_error_and_async_function_of_error_and_request() -> None:
    error = ConnectError("refused", request=REQ)
    by_error = FallbackLayer(lambda exc: f"from {type(exc).__name__}")
    assert (await by_error.wrap(failing(error))(REQ)).value == "from ConnectError"

    async def by_request(exc: Exception, request: Request) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"endpoint": request.endpoint, "error": type(exc).__name__}

    response = await FallbackLayer(by_request).wrap(failing(error))(REQ)
    assert response.value == {"endpoint": "users", "error": "ConnectError"}


async def test_a_response_from_the_function_is_the_answer_marked_as_a_fallback() -> None:
    error = ConnectError("refused", request=REQ)
    made = Response(203, content=b"{}", value={"from": "mirror"})
    response = await FallbackLayer(lambda exc: made).wrap(failing(error))(REQ)
    assert isinstance(response, FallbackResponse)
    assert (response.status_code, response.value, response.error) == (
        203,
        {"from": "mirror"},
        error,
    )


async def test_an_error_in_the_function_is_the_calls_error_chained_to_the_original() -> None:
    error = ConnectError("refused", request=REQ)

    def broken(exc: Exception) -> Any:
        raise RuntimeError("no fallback either")

    with pytest.raises(RuntimeError) as info:
        await FallbackLayer(broken).wrap(failing(error))(REQ)
    assert info.value.__context__ is error


async def test_it_emits_fallback_used() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    request = listen(REQ, lambda name, attrs: events.append((name, dict(attrs))))
    error = HTTPStatusError("HTTP 503", status_code=503, request=REQ)
    await FallbackLayer(None, statuses=[503]).wrap(failing(error))(request)
    assert events == [("fallback.used", {"error": "HTTPStatusError", "status": 503})]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"errors": ["CircuitOpen"]}, "errors"),  # did you mean CircuitOpenError?
        ({"errors": [int]}, "errors"),
        ({"errors": []}, "errors"),
        ({"errors": 3}, "errors"),
        ({"statuses": [700]}, "statuses"),
        ({"statuses": "503"}, "statuses"),
    ],
)
def test_bad_options_are_config_errors_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        FallbackLayer("x", **options)
    assert info.value.field == field


def test_unknown_error_name_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'CircuitOpenError'"):
        FallbackLayer("x", errors="CircuitOpen")


# -- real server, every transport, through the orchestrator -----------------------------


def with_fallback(fallback: FallbackLayer) -> Any:
    """The default stack with ``fallback`` right inside metrics (outside cache, parse,
    retry and breaker): what docs/layers/fallback.md recommends."""

    def layers(endpoint: APIEndpoint, config: APIOrchestrationConfig) -> list[Layer]:
        defaults = APIOrchestrator.default_layers(endpoint, config)
        return [*defaults[:2], fallback, *defaults[2:]]

    return layers


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_after_the_retries_the_fallback_answers_and_the_report_keeps_the_error(
    lamina_server: LocalServer, transport: str
) -> None:
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(
                name="prices",
                url=lamina_server.url_for("/status/503"),
                retry_count=2,
                retry_delay=0.001,
            ),
            APIEndpoint(name="ok", url=lamina_server.url_for("/json")),
        ],
        mode=OrchestrationMode.PARALLEL,
        circuit_breaker_threshold=100,  # this test is about retry, then fallback
    )
    layer = FallbackLayer({"prices": "unavailable"}, statuses=[503])
    async with APIOrchestrator(config, layers=with_fallback(layer), transport=transport) as orch:
        report = await orch.run()
        assert (await orch.execute())["prices"] == {"prices": "unavailable"}
        metrics = orch.get_metrics()
    assert lamina_server.hits("/status/503") == 6  # 3 attempts per run: retry came first
    prices = report.endpoints["prices"]
    assert prices.outcome == "fallback"
    assert prices.result == {"prices": "unavailable"}
    assert isinstance(prices.error, HTTPStatusError)
    assert prices.error.status_code == 503
    assert (prices.status_code, prices.attempts) == (503, 3)
    assert report.ok
    assert report.fallbacks == ["prices"]
    assert report.failed == []
    assert report.endpoints["ok"].outcome == "ok"
    assert report.to_dict()["endpoints"][0]["error"].startswith("HTTPStatusError: ")
    assert re.search(r"prices +fallback +503 +3 .* HTTPStatusError", report.summary())
    assert metrics.endpoint("prices").events["fallbacks"] == 2
    page = render_html(report, config)
    assert '<span class="pill c-fallback">fallback</span>' in page


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_open_breaker_falls_back_without_calling_the_upstream(
    lamina_server: LocalServer, transport: str
) -> None:
    clock = ManualClock()
    breaker = CircuitBreakerLayer(threshold=2, timeout=60.0, clock=clock)
    stack_layers = [
        FallbackLayer(lambda exc: {"stale": True}, errors=["CircuitOpenError"]),
        ParseLayer(),
        breaker,
    ]
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="quotes", url=lamina_server.url_for("/status/500"))]
    )
    async with APIOrchestrator(
        config, layers=stack_layers, transport=transport, clock=clock
    ) as orch:
        first = await orch.run()
        second = await orch.run()
        third = await orch.run()
    # the first two failures open it; the fallback is only for an open breaker
    assert [r.endpoints["quotes"].outcome for r in (first, second)] == ["failed", "failed"]
    quotes = third.endpoints["quotes"]
    assert quotes.outcome == "fallback"
    assert quotes.result == {"stale": True}
    assert isinstance(quotes.error, CircuitOpenError)
    assert lamina_server.hits("/status/500") == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refused_connection_falls_back_and_dependents_run_on_the_value(
    lamina_server: LocalServer, transport: str, unused_port: int
) -> None:
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="profile", url=f"http://127.0.0.1:{unused_port}/me", retry_count=0),
            APIEndpoint(
                name="feed",
                url=lamina_server.url_for("/echo"),
                depends_on=["profile"],
                params={"who": "x"},
            ),
        ],
        mode=OrchestrationMode.SEQUENTIAL,
    )
    layer = FallbackLayer({"name": "guest"}, errors=[ConnectError])
    async with APIOrchestrator(config, layers=with_fallback(layer), transport=transport) as orch:
        report = await orch.run()
    assert report.endpoints["profile"].outcome == "fallback"
    assert isinstance(report.endpoints["profile"].error, ConnectError)
    assert report.endpoints["feed"].outcome == "ok"  # the fallback counts as an answer
    assert report.value["profile"] == {"name": "guest"}


@pytest.fixture
def unused_port() -> int:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


# -- tracing ----------------------------------------------------------------------------


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp, exporter
    tp.shutdown()


async def test_the_call_span_carries_the_event_and_the_mark(
    lamina_server: LocalServer, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    tp, exporter = provider
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="prices", url=lamina_server.url_for("/status/503"), retry_count=0)
        ]
    )
    layer = FallbackLayer("later", statuses=[503])
    async with APIOrchestrator(config, layers=with_fallback(layer), tracer_provider=tp) as orch:
        await orch.run()
    (call,) = [s for s in exporter.get_finished_spans() if s.name == "lamina prices"]
    assert call.attributes is not None
    assert call.attributes["lamina.fallback"] is True
    events = [(e.name, dict(e.attributes or {})) for e in call.events]
    assert ("fallback.used", {"error": "HTTPStatusError", "status": 503}) in events


def test_retry_then_fallback_order_is_what_the_docs_say() -> None:
    # a stack built the other way round (fallback inside retry) hides failures from retry
    layer = FallbackLayer("x")
    retry = RetryLayer(retries=2, backoff=0.001)
    calls = 0

    async def handler(request: Request) -> Response:
        nonlocal calls
        calls += 1
        raise ConnectError("refused", request=request)

    wrong = ServiceBuilder([retry, layer]).service(service_fn(handler))
    assert asyncio.run(wrong(REQ)).value == "x"
    assert calls == 1  # retry saw a success: never retried
    calls = 0
    right = ServiceBuilder([layer, retry]).service(service_fn(handler))
    assert asyncio.run(right(REQ)).value == "x"
    assert calls == 3


async def test_a_flow_import_of_a_one_argument_function_gets_the_error_only() -> None:
    from lamina.flows.imports import ImportedHook

    hook = ImportedHook("hooks:by_error", lambda error: type(error).__name__)
    error = ConnectError("refused", request=REQ)
    assert (await FallbackLayer(hook).wrap(failing(error))(REQ)).value == "ConnectError"
