"""Per-call cost of lamina's stack over a bare client (httpx and aiohttp).

Run: ``python benchmarks/overhead.py [--quick] [--transport httpx|aiohttp|both]``.
Prints Markdown tables. ``transport_overhead`` is what ``run_all.py`` reuses.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import per_call_us, server_process, table
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
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
from lamina.orchestration.stack import default_layers, new_shared_state


async def _identity(request: Request, call_next: Service) -> Response:
    return await call_next(request)


def identity() -> Layer:
    return layer_fn(_identity)


class _Drop(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _sdk_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop()))
    return provider


def default_stack(tracer_provider: TracerProvider | None = None) -> list[Layer]:
    """The orchestrator's default layers for one endpoint (no-op tracing unless a provider)."""
    endpoint = APIEndpoint(name="bench", url="http://bench/json")
    config = APIOrchestrationConfig(endpoints=[endpoint], cache_ttl=None)
    return default_layers(endpoint, config, new_shared_state(config, None, tracer_provider))


LAYERS: dict[str, Layer] = {
    "ParseLayer": ParseLayer(),
    "TimeoutLayer": TimeoutLayer(30),
    "RetryLayer": RetryLayer(),
    "CircuitBreakerLayer (closed)": CircuitBreakerLayer(5, 60),
    "RateLimitLayer (no wait)": RateLimitLayer(1e6, 1.0),
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
        us = await per_call_us(functools.partial(svc, request), calls=calls, repeats=repeats)
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
        us = await per_call_us(functools.partial(svc, request), calls=calls, repeats=repeats)
        rows.append([name, f"{us:.2f}", f"+{us - base:.2f}"])
    return rows


# -- over a real client: bare vs lamina, both transports -------------------------------
TRANSPORTS = ("httpx", "aiohttp")
NOOP = "full default stack (no-op tracing)"
SDK = "full default stack (SDK + batch, dropping exporter)"


@dataclass
class OverheadRow:
    """One contender over one client: the median µs per call and its ratio to the bare client."""

    transport: str  # "httpx" or "aiohttp"
    medium: str  # "MockTransport" or "loopback"
    stack: str  # "bare ..." or a stack name
    us: float
    ratio: float


async def interleaved_us(
    fns: dict[str, Callable[[], Awaitable[object]]], *, calls: int, repeats: int, warmup: int = 50
) -> tuple[dict[str, float], dict[str, float]]:
    """Median µs per call of each function, and the median of its per-repeat ratio to the
    first function. Within every repeat each runs in turn (the order rotates), so a burst
    of load on a shared machine hits them all and the paired ratio cancels it."""
    for fn in fns.values():
        for _ in range(warmup):
            await fn()
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(repeats):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            fn = fns[name]
            start = time.perf_counter()
            for _ in range(calls):
                await fn()
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    base = samples[names[0]]
    us = {name: statistics.median(values) for name, values in samples.items()}
    ratio = {
        name: statistics.median(v / b for v, b in zip(values, base, strict=True))
        for name, values in samples.items()
    }
    return us, ratio


def bench_stacks(all_stacks: bool) -> dict[str, list[Layer]]:
    """The stacks measured over a client: the full default stack with no-op and SDK tracing
    (and, with ``all_stacks``, the small stacks of ``STACKS``)."""
    stacks = dict(STACKS) if all_stacks else {}
    stacks.pop("full default stack", None)
    stacks[NOOP] = default_stack()
    stacks[SDK] = default_stack(_sdk_provider())
    return stacks


def _bare_httpx(client: httpx.AsyncClient, url: str) -> Callable[[], Awaitable[object]]:
    async def call() -> Any:  # the same work as the stack: GET, check the status, parse JSON
        response = await client.get(url)
        response.raise_for_status()
        return response.json()

    return call


def _bare_aiohttp(session: Any, url: str) -> Callable[[], Awaitable[object]]:
    async def call() -> Any:
        async with session.get(url) as response:
            response.raise_for_status()
            return json.loads(await response.read())

    return call


async def _over(
    transport: str, medium: str, url: str, calls: int, repeats: int, all_stacks: bool
) -> list[OverheadRow]:
    """Bare client vs lamina's stacks over the same client library, interleaved."""
    closers: list[Callable[[], Awaitable[object]]] = []
    if transport == "httpx":
        if medium == "MockTransport":
            mock = httpx.MockTransport(lambda r: httpx.Response(200, json={"ok": True}))
            client = httpx.AsyncClient(transport=mock)
        else:
            client = httpx.AsyncClient()
        bare_name = "bare httpx.AsyncClient"
        bare = _bare_httpx(client, url)
        inner: Service = HttpxTransport(client)
        closers.append(client.aclose)
    else:
        import aiohttp

        from lamina.transports import AiohttpTransport

        session = aiohttp.ClientSession()
        bare_name = "bare aiohttp.ClientSession"
        bare = _bare_aiohttp(session, url)
        owned = AiohttpTransport()  # lamina's own session, as the orchestrator makes it
        inner = owned
        closers += [session.close, owned.aclose]
    fns: dict[str, Callable[[], Awaitable[object]]] = {bare_name: bare}
    for name, layers in bench_stacks(all_stacks).items():
        svc = ServiceBuilder(layers).service(inner)
        request = Request("GET", url, endpoint="bench")
        fns[name] = functools.partial(svc, request)
    try:
        us, ratio = await interleaved_us(fns, calls=calls, repeats=repeats)
    finally:
        for close in closers:
            await close()
    return [OverheadRow(transport, medium, n, v, ratio[n]) for n, v in us.items()]


async def transport_overhead(
    base_url: str,
    *,
    quick: bool = False,
    transports: tuple[str, ...] = TRANSPORTS,
    all_stacks: bool = False,
) -> list[OverheadRow]:
    """Case 1: lamina's full default stack over each bare client, in memory and on loopback.

    aiohttp has no in-memory transport like ``httpx.MockTransport``, so it is measured on
    loopback only.
    """
    repeats = 15 if quick else 40
    rows: list[OverheadRow] = []
    if "httpx" in transports:
        rows += await _over("httpx", "MockTransport", "http://bench/json", 100, repeats, all_stacks)
    for transport in transports:
        rows += await _over(transport, "loopback", base_url + "/json", 50, repeats, all_stacks)
    return rows


def overhead_table(rows: list[OverheadRow]) -> str:
    """The rows as a Markdown table."""
    return table(
        ["client", "medium", "stack", "µs/call", "ratio to bare"],
        [[r.transport, r.medium, r.stack, f"{r.us:.1f}", f"{r.ratio:.2f}"] for r in rows],
    )


async def main(quick: bool, transports: tuple[str, ...]) -> None:
    repeats = 5 if quick else 15
    print("## Stack cost over an in-memory service (µs per call)\n")
    print(table(["stack", "µs/call", "added µs"], await pure_overhead(2000, repeats)))
    print("\n## Each layer alone, fast path (µs per call over an in-memory service)\n")
    print(table(["layer", "µs/call", "added µs"], await per_layer(2000, repeats)))
    with server_process() as base_url:
        rows = await transport_overhead(
            base_url, quick=quick, transports=transports, all_stacks=True
        )
    print("\n## Over a client (µs per call, ratio to the bare client)\n")
    print(overhead_table(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--transport", choices=["httpx", "aiohttp", "both"], default="both")
    args = parser.parse_args()
    chosen = TRANSPORTS if args.transport == "both" else (args.transport,)
    asyncio.run(main(args.quick, chosen))
