"""Each run is one trace: run span -> call spans -> attempt spans."""

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode
from lamina.testing import LocalServer

SECRET = "tok-0123456789abcdef"


async def test_run_is_one_trace(lamina_server: LocalServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    endpoints = [
        APIEndpoint(
            name="flaky",
            url=lamina_server.url_for("/flaky/t?fail=1"),
            retry_delay=0.01,
            headers={"Authorization": f"Bearer {SECRET}"},
        ),
        APIEndpoint(name="plain", url=lamina_server.url_for("/json?api_key=" + SECRET)),
    ]
    config = APIOrchestrationConfig(endpoints=endpoints, mode=OrchestrationMode.PARALLEL)
    async with APIOrchestrator(config, tracer_provider=provider) as orchestrator:
        await orchestrator.execute()
    spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name.startswith("lamina.run")]
    assert len(runs) == 1
    run = runs[0]
    assert run.kind is SpanKind.INTERNAL
    assert {s.context.trace_id for s in spans} == {run.context.trace_id}
    calls = [s for s in spans if s.parent is not None and s.parent.span_id == run.context.span_id]
    assert len(calls) == 2
    assert all(s.kind is SpanKind.INTERNAL for s in calls)
    attempts = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(attempts) == 3  # flaky: a 503 then a 200; plain: one
    call_ids = {s.context.span_id for s in calls}
    assert all(s.parent is not None and s.parent.span_id in call_ids for s in attempts)
    assert any(s.attributes.get("http.request.resend_count") == 1 for s in attempts)
    for span in spans:
        assert SECRET not in repr(dict(span.attributes or {}))
        for event in span.events:
            assert SECRET not in repr(dict(event.attributes or {}))


async def test_placeholder_urls_name_their_attempt_spans_in_every_run(
    lamina_server: LocalServer,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    endpoints = [
        APIEndpoint(name="user", url=lamina_server.url_for("/json/{user_id}?q=1")),
        APIEndpoint(name="plain", url=lamina_server.url_for("/json")),
    ]
    config = APIOrchestrationConfig(endpoints=endpoints, mode=OrchestrationMode.SEQUENTIAL)
    async with APIOrchestrator(config, tracer_provider=provider) as orchestrator:
        for user_id in ("a", "b"):
            await orchestrator.execute({"user_id": user_id})
    attempts = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(attempts) == 4
    templated = [s for s in attempts if "url.template" in (s.attributes or {})]
    assert [s.name for s in templated] == ["GET /json/{user_id}"] * 2  # the path, never the query
    assert {
        (s.attributes or {})["url.full"].split("?")[0].rsplit("/", 1)[1] for s in templated
    } == {
        "a",
        "b",
    }
