"""Per-call cost of lamina's tracing and metrics layers, against a bare service_fn.

Run: ``python benchmarks/layers_tracing.py [calls]``. No network: the inner
service returns a ready response, so the numbers are the layers' own cost.
"No-op API" means no SDK provider is installed (the default for a library);
"SDK" uses a TracerProvider with a BatchSpanProcessor feeding an exporter that
drops the spans, and a MeterProvider with an in-memory reader.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from lamina import Layer, Request, Response, Service, ServiceBuilder, service_fn
from lamina.layers.metrics import MetricsLayer
from lamina.layers.tracing import CallTracingLayer, TracingLayer


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def per_call_us(service: Service, request: Request, calls: int, repeats: int = 5) -> float:
    for _ in range(min(calls, 2000)):
        await service(request)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            await service(request)
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


async def main(calls: int) -> None:
    response = Response(200)

    async def handler(request: Request) -> Response:
        return response

    bare = service_fn(handler)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    request = Request("GET", "http://127.0.0.1:8000/users/1", endpoint="users")

    def stack(*layers: Layer) -> Service:
        builder = ServiceBuilder()
        for layer in layers:
            builder = builder.layer(layer)
        return builder.service(bare)

    cases: list[tuple[str, Service]] = [
        ("bare service_fn", bare),
        ("TracingLayer, no-op API", stack(TracingLayer())),
        ("CallTracing + Tracing, no-op API", stack(CallTracingLayer(), TracingLayer())),
        (
            "TracingLayer, SDK + BatchSpanProcessor",
            stack(TracingLayer(tracer_provider=tracer_provider)),
        ),
        (
            "CallTracing + Tracing, SDK + Batch",
            stack(
                CallTracingLayer(tracer_provider=tracer_provider),
                TracingLayer(tracer_provider=tracer_provider),
            ),
        ),
        ("MetricsLayer + Tracing, no-op API", stack(MetricsLayer(), TracingLayer())),
        (
            "MetricsLayer + Tracing, SDK meter",
            stack(MetricsLayer(meter_provider=meter_provider), TracingLayer()),
        ),
    ]
    tracer = tracer_provider.get_tracer("bench")

    async def raw_sdk_span(request: Request) -> Response:
        span = tracer.start_span("GET", attributes={"http.request.method": "GET"})
        try:
            return await bare(request)
        finally:
            span.end()

    cases.insert(3, ("(reference) raw SDK span start+end", service_fn(raw_sdk_span)))
    results = [(name, await per_call_us(service, request, calls)) for name, service in cases]
    base = results[0][1]
    print(f"{'stack':42} {'µs/call':>9} {'overhead µs':>12} {'ratio':>7}")
    for name, us in results:
        print(f"{name:42} {us:9.2f} {us - base:12.2f} {us / base:7.1f}x")
    tracer_provider.shutdown()
    meter_provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
