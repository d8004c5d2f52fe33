"""Per-call cost of lamina's stack over a bare httpx.AsyncClient.

Run: ``python benchmarks/overhead.py [--quick]``. Prints Markdown tables.
"""

from __future__ import annotations

import asyncio
import sys

import httpx

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import per_call_us, server_process, table
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    HttpxTransport,
    IOMetrics,
    Layer,
    Request,
    Response,
    Service,
    ServiceBuilder,
    layer_fn,
)
from lamina.layers import (
    CacheLayer,
    CallTracingLayer,
    CircuitBreakerLayer,
    ConcurrencyLimitLayer,
    LoggingLayer,
    MetricsLayer,
    ParseLayer,
    RateLimitLayer,
    RetryLayer,
    TimeoutLayer,
    TracingLayer,
)


async def _identity(request: Request, call_next: Service) -> Response:
    return await call_next(request)


def identity() -> Layer:
    return layer_fn(_identity)


class _Drop(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:  # type: ignore[override]
        return SpanExportResult.SUCCESS


def _sdk_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop()))
    return provider


def default_stack() -> list[Layer]:
    """The orchestrator's default layers for one endpoint (no-op tracing unless configured)."""
    endpoint = APIEndpoint(name="bench", url="http://bench/json")
    config = APIOrchestrationConfig(endpoints=[endpoint], cache_ttl=None)
    return APIOrchestrator.default_layers(endpoint, config)


LAYERS: dict[str, Layer] = {
    "ParseLayer": ParseLayer(),
    "TimeoutLayer": TimeoutLayer(30),
    "RetryLayer": RetryLayer(),
    "CircuitBreakerLayer (closed)": CircuitBreakerLayer(5, 60),
    "RateLimitLayer (no wait)": RateLimitLayer(1e9, 1.0),
    "ConcurrencyLimitLayer": ConcurrencyLimitLayer(100),
    "CacheLayer (miss, POST)": CacheLayer(ttl=60),
    "TracingLayer (no-op API)": TracingLayer(),
    "CallTracingLayer (no-op API)": CallTracingLayer(),
    "TracingLayer (SDK, batch)": TracingLayer(tracer_provider=_sdk_provider()),
    "MetricsLayer": MetricsLayer(IOMetrics()),
    "LoggingLayer (level WARNING)": LoggingLayer(),
}

STACKS: dict[str, list[Layer]] = {
    "builder, 0 layers": [],
    "builder, 1 identity layer": [identity()],
    "builder, 3 identity layers": [identity(), identity(), identity()],
    "Parse + Timeout": [ParseLayer(), TimeoutLayer(30)],
    "full default stack": default_stack(),
}


async def per_layer(calls: int, repeats: int) -> list[list[object]]:
    """Each layer alone on its fast path over an in-memory service."""
    done = Response(200, content=b"{}", headers={"content-type": "application/json"})

    async def inner(request: Request) -> Response:
        return done

    get = Request("GET", "http://bench/json", endpoint="bench")
    post = Request("POST", "http://bench/json", endpoint="bench", json={"a": 1})
    base = await per_call_us(lambda: inner(get), calls=calls, repeats=repeats)
    rows: list[list[object]] = []
    for name, layer in LAYERS.items():
        svc = layer.wrap(inner)
        request = post if "POST" in name else get
        us = await per_call_us(lambda svc=svc, r=request: svc(r), calls=calls, repeats=repeats)
        rows.append([name, f"{us:.2f}", f"{us - base:.2f}"])
    hit = CacheLayer(ttl=60).wrap(inner)
    await hit(get)
    us = await per_call_us(lambda: hit(get), calls=calls, repeats=repeats)
    rows.append(["CacheLayer (hit)", f"{us:.2f}", f"{us - base:.2f}"])
    return rows


async def pure_overhead(calls: int, repeats: int) -> list[list[object]]:
    """Layers over an in-memory service: isolates the cost of the stack itself."""
    done = Response(200, content=b"{}")

    async def inner(request: Request) -> Response:
        return done

    request = Request("GET", "http://bench/")
    base = await per_call_us(lambda: inner(request), calls=calls, repeats=repeats)
    rows: list[list[object]] = [["service alone", f"{base:.2f}", "-"]]
    for name, layers in STACKS.items():
        svc = ServiceBuilder(layers).service(inner)
        us = await per_call_us(lambda svc=svc: svc(request), calls=calls, repeats=repeats)
        rows.append([name, f"{us:.2f}", f"+{us - base:.2f}"])
    return rows


async def over_transport(
    label: str, make_client: object, url: str, calls: int, repeats: int
) -> list[list[object]]:
    client: httpx.AsyncClient = make_client()  # type: ignore[operator]
    bare = await per_call_us(lambda: client.get(url), calls=calls, repeats=repeats)
    rows: list[list[object]] = [[label, "bare httpx.AsyncClient", f"{bare:.1f}", "1.00"]]
    transport = HttpxTransport(client)
    for name, layers in STACKS.items():
        svc = ServiceBuilder(layers).service(transport)
        request = Request("GET", url)
        us = await per_call_us(lambda svc=svc, r=request: svc(r), calls=calls, repeats=repeats)
        rows.append([label, name, f"{us:.1f}", f"{us / bare:.2f}"])
    await client.aclose()
    return rows


async def main(quick: bool) -> None:
    repeats = 5 if quick else 15
    print("## Stack cost over an in-memory service (µs per call)\n")
    print(table(["stack", "µs/call", "added µs"], await pure_overhead(2000, repeats)))
    print("\n## Each layer alone, fast path (µs per call over an in-memory service)\n")
    print(table(["layer", "µs/call", "added µs"], await per_layer(2000, repeats)))

    mock = httpx.MockTransport(lambda r: httpx.Response(200, json={"ok": True}))
    rows = await over_transport(
        "MockTransport",
        lambda: httpx.AsyncClient(transport=mock),
        "http://bench/json",
        300,
        repeats,
    )
    with server_process() as base_url:
        rows += await over_transport(
            "loopback", lambda: httpx.AsyncClient(), base_url + "/json", 200, repeats
        )
    print("\n## Over a transport (µs per call, ratio to bare httpx)\n")
    print(table(["transport", "stack", "µs/call", "ratio"], rows))


if __name__ == "__main__":
    asyncio.run(main("--quick" in sys.argv))
