"""TracingLayer (CLIENT span per attempt) and CallTracingLayer (INTERNAL span per call)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from lamina import (
    ConfigError,
    ConnectError,
    HTTPStatusError,
    HttpxTransport,
    Request,
    Response,
    ServiceBuilder,
    layer_fn,
    service_fn,
)
from lamina._events import emit
from lamina.layers.parse import ParseLayer
from lamina.layers.retry import RetryLayer
from lamina.layers.tracing import CallTracingLayer, TracingLayer
from lamina.testing import LocalServer, ManualClock

SECRET = "s3cr3t-Tok3n-value"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.kind == kind), key=lambda s: s.start_time or 0)


async def test_flaky_endpoint_one_client_span_per_attempt_under_the_call_span(
    lamina_server: LocalServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with HttpxTransport() as transport:
        service = (
            ServiceBuilder()
            .layer(CallTracingLayer(tracer_provider=provider))
            .layer(
                RetryLayer(attempts=3, backoff=0.5, jitter=False, clock=ManualClock(autojump=True))
            )
            .layer(TracingLayer(tracer_provider=provider))
            .service(transport)
        )
        url = lamina_server.url_for("/flaky/t1?fail=2&status=503")
        response = await service(Request("GET", url, endpoint="users"))
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    (call,) = by_kind(spans, SpanKind.INTERNAL)
    attempts = by_kind(spans, SpanKind.CLIENT)
    assert len(attempts) == 3 == lamina_server.hits("/flaky/t1")
    assert call.name == "lamina users"
    assert call.attributes is not None
    assert call.attributes["lamina.endpoint"] == "users"
    assert call.attributes["lamina.attempts"] == 3
    assert call.attributes["lamina.outcome"] == "success"
    assert call.attributes["lamina.from_cache"] is False
    assert call.status.status_code == StatusCode.UNSET
    retries = [e for e in call.events if e.name == "retry.scheduled"]
    assert [(e.attributes or {}).get("delay") for e in retries] == [0.5, 1.0]
    assert [(e.attributes or {}).get("reason") for e in retries] == ["503", "503"]
    for index, span in enumerate(attempts):
        assert span.parent is not None
        assert span.parent.span_id == call.context.span_id
        assert span.context.trace_id == call.context.trace_id
        attrs = span.attributes or {}
        assert span.name == "GET"
        assert attrs["http.request.method"] == "GET"
        assert attrs["server.address"] == "127.0.0.1"
        assert attrs["server.port"] == lamina_server.port
        assert attrs["url.full"] == url
        assert attrs.get("http.request.resend_count") == (index or None)
    assert [(s.attributes or {})["http.response.status_code"] for s in attempts] == [503, 503, 200]
    assert [s.status.status_code for s in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert (attempts[0].attributes or {})["error.type"] == "503"
    assert "error.type" not in (attempts[2].attributes or {})


async def test_status_404_is_an_error_on_the_client_span_and_the_call(
    lamina_server: LocalServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with HttpxTransport() as transport:
        service = (
            ServiceBuilder()
            .layer(CallTracingLayer(tracer_provider=provider))
            .layer(ParseLayer())
            .layer(TracingLayer(tracer_provider=provider))
            .service(transport)
        )
        with pytest.raises(HTTPStatusError):
            await service(Request("GET", lamina_server.url_for("/status/404"), endpoint="x"))
    (call,) = by_kind(exporter.get_finished_spans(), SpanKind.INTERNAL)
    (attempt,) = by_kind(exporter.get_finished_spans(), SpanKind.CLIENT)
    assert attempt.status.status_code == StatusCode.ERROR
    assert (attempt.attributes or {})["error.type"] == "404"
    assert call.status.status_code == StatusCode.ERROR
    assert (call.attributes or {})["error.type"] == "404"
    assert (call.attributes or {})["lamina.outcome"] == "error"
    assert any(e.name == "exception" for e in call.events)


async def test_traceparent_reaches_the_server_with_the_attempt_span_ids(
    lamina_server: LocalServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with HttpxTransport() as transport:
        service = TracingLayer(tracer_provider=provider).wrap(transport)
        response = await service(Request("GET", lamina_server.url_for("/echo")))
    (span,) = exporter.get_finished_spans()
    header = response.json()["headers"]["traceparent"]
    version, trace_id, span_id, flags = header.split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == span.context.trace_id
    assert int(span_id, 16) == span.context.span_id


async def test_url_full_is_redacted_and_includes_params(
    lamina_server: LocalServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    base = lamina_server.url.replace("http://", f"http://user:{SECRET}@")
    request = Request(
        "GET",
        f"{base}/echo?api_key={SECRET}&q=1",
        params={"token": SECRET, "page": 2, "flag": True},
    )
    async with HttpxTransport() as transport:
        await TracingLayer(tracer_provider=provider).wrap(transport)(request)
    (span,) = exporter.get_finished_spans()
    url = str((span.attributes or {})["url.full"])
    assert SECRET not in url
    assert url.startswith("http://[REDACTED]@127.0.0.1:")
    assert "api_key=%5BREDACTED%5D" in url or "api_key=[REDACTED]" in url
    assert "page=2" in url
    assert "flag=true" in url
    assert "q=1" in url


async def test_unknown_method_becomes_other(
    lamina_server: LocalServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with HttpxTransport() as transport:
        await TracingLayer(tracer_provider=provider).wrap(transport)(
            Request("PURGE", lamina_server.url_for("/echo"))
        )
    (span,) = exporter.get_finished_spans()
    attrs = span.attributes or {}
    assert span.name == "HTTP"
    assert attrs["http.request.method"] == "_OTHER"
    assert attrs["http.request.method_original"] == "PURGE"


async def test_url_template_names_the_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def ok(request: Request) -> Response:
        return Response(200, request=request)

    layer = TracingLayer(url_template="/users/{id}", tracer_provider=provider)
    await layer.wrap(service_fn(ok))(Request("GET", "https://api.example.com/users/7"))
    from_extension = TracingLayer(tracer_provider=provider).wrap(service_fn(ok))
    await from_extension(
        Request(
            "POST",
            "https://api.example.com/orders/9",
            extensions={"lamina.url_template": "/orders/{id}"},
        )
    )
    first, second = exporter.get_finished_spans()
    assert first.name == "GET /users/{id}"
    assert (first.attributes or {})["url.template"] == "/users/{id}"
    assert (first.attributes or {})["server.port"] == 443
    assert second.name == "POST /orders/{id}"


async def test_only_listed_non_secret_headers_are_recorded(
    lamina_server: LocalServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    layer = TracingLayer(
        record_headers=["X-Request-Id", "Authorization", "Cookie", "X-API-Key", "Api-Key"],
        record_response_headers=["content-type", "set-cookie"],
        tracer_provider=provider,
    )
    request = Request(
        "GET",
        lamina_server.url_for("/echo"),
        headers={
            "X-Request-Id": "req-42",
            "Authorization": f"Bearer {SECRET}",
            "Cookie": f"session={SECRET}",
            "X-API-Key": SECRET,
            "X-Other": "not listed",
        },
    )
    async with HttpxTransport() as transport:
        await layer.wrap(transport)(request)
    (span,) = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["http.request.header.x-request-id"] == ("req-42",)
    assert attrs["http.response.header.content-type"] == ("application/json",)
    assert not [k for k in attrs if "authorization" in k or "cookie" in k or "api-key" in k]
    assert "http.request.header.x-other" not in attrs
    assert SECRET not in repr(attrs)


async def test_connect_error_records_a_scrubbed_exception(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with LocalServer() as gone:
        url = gone.url_for(f"/echo?api_key={SECRET}")
    async with HttpxTransport() as transport:
        service = TracingLayer(tracer_provider=provider).wrap(transport)
        with pytest.raises(ConnectError):
            await service(Request("GET", url, headers={"Authorization": SECRET}))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "lamina.ConnectError"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert (event.attributes or {})["exception.type"] == "lamina._errors.ConnectError"
    assert SECRET not in repr(event.attributes)
    assert "http.response.status_code" not in (span.attributes or {})


async def test_a_cancelled_attempt_is_not_an_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    started = asyncio.Event()

    async def slow(request: Request) -> Response:
        started.set()
        await asyncio.sleep(60)
        return Response(200)

    service = (
        ServiceBuilder()
        .layer(CallTracingLayer(tracer_provider=provider))
        .layer(TracingLayer(tracer_provider=provider))
        .service(service_fn(slow))
    )
    task = asyncio.create_task(service(Request("GET", "http://example.test/slow")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (attempt,) = by_kind(exporter.get_finished_spans(), SpanKind.CLIENT)
    (call,) = by_kind(exporter.get_finished_spans(), SpanKind.INTERNAL)
    assert attempt.status.status_code == StatusCode.UNSET
    assert (attempt.attributes or {})["lamina.cancelled"] is True
    assert "error.type" not in (attempt.attributes or {})
    assert call.status.status_code == StatusCode.UNSET
    assert (call.attributes or {})["lamina.outcome"] == "cancelled"


async def test_httpx_instrumentation_is_suppressed_below_the_client_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    seen: list[object] = []

    async def inner(request: Request) -> Response:
        key = otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY
        seen.append(otel_context.get_value(key))
        return Response(200)

    await TracingLayer(tracer_provider=provider).wrap(service_fn(inner))(
        Request("GET", "http://example.test/")
    )
    await TracingLayer(tracer_provider=provider, suppress_http_instrumentation=False).wrap(
        service_fn(inner)
    )(Request("GET", "http://example.test/"))
    assert seen == [True, None]
    assert len(exporter.get_finished_spans()) == 2


async def test_no_span_when_disabled_or_suppressed_by_the_caller(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    seen: list[Request] = []

    async def inner(request: Request) -> Response:
        seen.append(request)
        return Response(200)

    request = Request("GET", "http://example.test/")
    await TracingLayer(tracer_provider=provider, enabled=False).wrap(service_fn(inner))(request)
    token = otel_context.attach(
        otel_context.set_value(otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY, True)
    )
    try:
        await TracingLayer(tracer_provider=provider).wrap(service_fn(inner))(request)
    finally:
        otel_context.detach(token)
    assert exporter.get_finished_spans() == ()
    assert all(r is request for r in seen)  # nothing injected


async def test_noop_api_passes_the_request_through_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    seen: list[Request] = []

    async def inner(request: Request) -> Response:
        seen.append(request)
        return Response(200)

    request = Request("GET", "http://example.test/")
    for layer in (
        TracingLayer(),
        TracingLayer(tracer_provider=trace.NoOpTracerProvider()),
        CallTracingLayer(),
    ):
        await layer.wrap(service_fn(inner))(request)
    assert len(seen) == 3
    assert all(r is request for r in seen)


async def test_call_span_turns_layer_events_into_span_events(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def noisy(request: Request, call_next: object) -> Response:
        emit(request, "ratelimit.wait", seconds=0.25)
        emit(request, "breaker.rejected", retry_after=3.0)
        emit(request, "cache.hit", key=f"users?api_key={SECRET}")
        return Response(200, request=request, from_cache=True)

    service = (
        ServiceBuilder()
        .layer(CallTracingLayer(tracer_provider=provider))
        .layer(layer_fn(noisy))  # type: ignore[arg-type]
        .service(service_fn(noisy))  # never reached
    )
    request = Request("GET", f"http://example.test/users?api_key={SECRET}", endpoint="users")
    response = await service(request)
    assert response.from_cache
    (call,) = exporter.get_finished_spans()
    events = {e.name: dict(e.attributes or {}) for e in call.events}
    assert events["ratelimit.wait"] == {"seconds": 0.25}
    assert events["breaker.rejected"] == {"retry_after": 3.0}
    assert SECRET not in events["cache.hit"]["key"]
    assert (call.attributes or {})["lamina.from_cache"] is True


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        TracingLayer(record_headers="x-request-id")  # type: ignore[arg-type]
    assert info.value.field == "record_headers"
    with pytest.raises(ConfigError) as info:
        TracingLayer(url_template="")
    assert info.value.field == "url_template"
    with pytest.raises(ConfigError) as info:
        CallTracingLayer(tracer_provider=object())  # type: ignore[arg-type]
    assert info.value.field == "tracer_provider"


async def test_a_global_provider_installed_after_wrap_is_picked_up(
    monkeypatch: pytest.MonkeyPatch, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)

    async def ok(request: Request) -> Response:
        return Response(200, request=request)

    service = (
        ServiceBuilder().layer(CallTracingLayer()).layer(TracingLayer()).service(service_fn(ok))
    )
    await service(Request("GET", "http://example.test/", endpoint="late"))
    assert exporter.get_finished_spans() == ()
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)  # what set_tracer_provider does
    await service(Request("GET", "http://example.test/", endpoint="late"))
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["GET", "lamina late"]
    scopes = {s.instrumentation_scope.name for s in exporter.get_finished_spans()}
    assert scopes == {"lamina"}
