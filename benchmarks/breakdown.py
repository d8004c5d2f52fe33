"""Where lamina's per-call time goes: SEQUENTIAL runs of 5 fast calls over aiohttp,
with the default stack built up one group of layers at a time.

Run: ``python benchmarks/breakdown.py [rounds]``. Prints a Markdown table of client CPU
µs per call (medians over rounds, the variants alternating within every round), each
row with what it adds to the one before. ``breakdown_rows`` is what ``run_all.py`` reuses.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import server_process, table

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, Layer, OrchestrationMode
from lamina.layers import (
    CallTracingLayer,
    CircuitBreakerLayer,
    MetricsLayer,
    ParseLayer,
    RetryLayer,
    TimeoutLayer,
    TracingLayer,
)

CALLS = 5
RUNS_PER_SAMPLE = 20

#: Each variant keeps the default layers of these types (and the one before's).
GROUPS: list[tuple[str, tuple[type, ...]]] = [
    ("lamina: orchestration + ParseLayer", (ParseLayer,)),
    (
        "+ RetryLayer, CircuitBreakerLayer, TimeoutLayer",
        (RetryLayer, CircuitBreakerLayer, TimeoutLayer),
    ),
    (
        "+ MetricsLayer, CallTracingLayer, TracingLayer (no-op)",
        (MetricsLayer, CallTracingLayer, TracingLayer),
    ),
]


def _config(base: str) -> APIOrchestrationConfig:
    endpoints = [APIEndpoint(name=f"e{i}", url=f"{base}/json?i={i}") for i in range(CALLS)]
    return APIOrchestrationConfig(endpoints=endpoints, mode=OrchestrationMode.SEQUENTIAL)


def _keep(kinds: tuple[type, ...]) -> Callable[[APIEndpoint, APIOrchestrationConfig], list[Layer]]:
    def layers(endpoint: APIEndpoint, config: APIOrchestrationConfig) -> list[Layer]:
        return [
            layer
            for layer in APIOrchestrator.default_layers(endpoint, config)
            if isinstance(layer, kinds)
        ]

    return layers


async def _measure(base: str, rounds: int) -> list[tuple[str, float]]:
    import aiohttp

    session = aiohttp.ClientSession()
    urls = [f"{base}/json?i={i}" for i in range(CALLS)]

    async def gather() -> Any:  # the hand-written loop: GET, check the status, parse the JSON
        values = []
        for url in urls:
            async with session.get(url) as response:
                response.raise_for_status()
                values.append(json.loads(await response.read()))
        return values

    variants: dict[str, Callable[[], Awaitable[Any]]] = {"hand-written loop (aiohttp)": gather}
    orchestrators = []
    kinds: tuple[type, ...] = ()
    for name, group in GROUPS:
        kinds += group
        orchestrator = APIOrchestrator(_config(base), transport="aiohttp", layers=_keep(kinds))
        orchestrators.append(orchestrator)
        variants[name] = orchestrator.execute
    samples: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for fn in variants.values():
            for _ in range(RUNS_PER_SAMPLE):
                await fn()
        names = list(variants)
        for i in range(rounds):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                fn = variants[name]
                start = time.process_time()
                for _ in range(RUNS_PER_SAMPLE):
                    await fn()
                samples[name].append((time.process_time() - start) / RUNS_PER_SAMPLE / CALLS)
    finally:
        for orchestrator in orchestrators:
            await orchestrator.aclose()
        await session.close()
    return [(name, statistics.median(values) * 1e6) for name, values in samples.items()]


def breakdown_rows(base: str, rounds: int = 40) -> list[list[object]]:
    """Rows: variant, client CPU µs per call, µs added over the row before."""
    measured = asyncio.run(_measure(base, rounds))
    rows: list[list[object]] = []
    previous: float | None = None
    for name, us in measured:
        rows.append([name, f"{us:.0f}", "-" if previous is None else f"{us - previous:+.0f}"])
        previous = us
    return rows


def breakdown_table(rows: list[list[object]]) -> str:
    """The rows as a Markdown table."""
    return table(["variant (SEQUENTIAL, 5 x /json, aiohttp)", "client CPU µs/call", "added"], rows)


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    with server_process() as base:
        print(breakdown_table(breakdown_rows(base, rounds)))
