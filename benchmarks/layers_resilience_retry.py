"""Per-call cost of RetryLayer and ConcurrencyLimitLayer on the fast path.

The inner service answers 200 at once, so the numbers are pure layer overhead
(no sleeps, no queueing). Run: ``python benchmarks/layers_resilience_retry.py``.
Prints µs per call, median of repeated runs, and the overhead over a bare
``service_fn``.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from lamina import Request, Response, Service, service_fn
from lamina.layers.concurrency import ConcurrencyLimitLayer
from lamina.layers.retry import RetryBudget, RetryLayer

CALLS = 20_000
REPEATS = 7


async def _per_call_us(svc: Service, request: Request) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        await svc(request)
    return (time.perf_counter() - start) / CALLS * 1e6


async def main() -> None:
    response = Response(200)

    async def ok(request: Request) -> Response:
        return response

    bare = service_fn(ok)
    cases: dict[str, Service] = {
        "bare service_fn": bare,
        "RetryLayer()": RetryLayer().wrap(bare),
        "RetryLayer(budget=RetryBudget())": RetryLayer(budget=RetryBudget()).wrap(bare),
        "RetryLayer(idempotency_key=True) POST": RetryLayer(idempotency_key=True).wrap(bare),
        "RetryLayer(total_timeout=30)": RetryLayer(total_timeout=30).wrap(bare),
        "ConcurrencyLimitLayer(10)": ConcurrencyLimitLayer(10).wrap(bare),
    }
    request = Request("GET", "http://bench.test/x")
    post = Request("POST", "http://bench.test/x")
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(REPEATS):  # interleave cases so drift hits them all alike
        for name, svc in cases.items():
            req = post if "POST" in name else request
            samples[name].append(await _per_call_us(svc, req))
    base = statistics.median(samples["bare service_fn"])
    print(f"{'service':<40} {'µs/call':>9} {'overhead µs':>12} {'ratio':>7}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<40} {median:>9.2f} {median - base:>12.2f} {median / base:>7.2f}")
    print(f"({CALLS} calls x {REPEATS} runs, median; inner answers 200 at once)")


if __name__ == "__main__":
    asyncio.run(main())
