"""Rate limiting: per-call cost of the fast path, and accuracy in virtual time.

Run: ``python benchmarks/layers_ratelimit.py``. Prints two tables:

1. µs per call through a bare ``service_fn``, through ``RateLimitLayer`` when
   the limit never binds (the fast path), and through ``aiolimiter`` for scale;
2. for each rate, 60 s of virtual time (looptime) with 4 greedy callers: the
   achieved rate's error and the worst window of one period, for lamina's
   ``Limiter`` and for ``aiolimiter.AsyncLimiter`` (burst = rate for both).
"""

from __future__ import annotations

import asyncio
import bisect
import multiprocessing
import time
from collections.abc import Awaitable, Callable

import looptime
from aiolimiter import AsyncLimiter

from lamina import Request, Response, ServiceBuilder, service_fn
from lamina.layers.rate_limit import Limiter, RateLimitLayer

CALLS = 50_000
RATES = [(1, 1.0), (10, 1.0), (100, 1.0), (10, 60.0), (1000, 1.0)]
REAL_SECONDS_LIMIT = 15.0  # aiolimiter can stall virtual time (float drift): stop it


async def ok(request: Request) -> Response:
    return Response(200, request=request)


async def per_call_us(call: Callable[[], Awaitable[object]]) -> float:
    for _ in range(1000):
        await call()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(CALLS):
            await call()
        best = min(best, time.perf_counter() - start)
    return best / CALLS * 1e6


async def cost_table() -> None:
    request = Request("GET", "http://x/")
    bare = service_fn(ok)
    limited = ServiceBuilder().layer(RateLimitLayer(1e12)).service(ok)
    aio = AsyncLimiter(1e12, 1)

    async def aio_call() -> Response:
        async with aio:
            return await bare(request)

    rows = [
        ("bare service_fn", await per_call_us(lambda: bare(request))),
        ("RateLimitLayer fast path", await per_call_us(lambda: limited(request))),
        ("aiolimiter + service_fn", await per_call_us(aio_call)),
    ]
    base = rows[0][1]
    print(f"{'stack':28} {'µs/call':>8} {'added µs':>9}")
    for name, us in rows:
        print(f"{name:28} {us:8.2f} {us - base:9.2f}")


async def greedy(acquire: Callable[[], Awaitable[object]], seconds: float) -> list[float]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    stamps: list[float] = []

    async def worker() -> None:
        while True:
            await acquire()
            now = loop.time()
            if now >= start + seconds - 1e-9:
                return
            stamps.append(now - start)

    await asyncio.gather(*(worker() for _ in range(4)))
    return sorted(stamps)


def _measure_in_child(
    make: Callable[[], Callable[[], Awaitable[object]]],
    rate: int,
    period: float,
    out: multiprocessing.Queue[tuple[str, str]],
) -> None:
    loop = looptime.new_event_loop()
    stamps = loop.run_until_complete(greedy(make(), 60.0))
    expected = rate * 60 / period
    error = (len(stamps) - expected) / expected * 100
    worst = max(bisect.bisect_left(stamps, t + period - 2e-6) - i for i, t in enumerate(stamps))
    out.put((f"{error:.2f}", str(worst)))


def measure(
    make: Callable[[], Callable[[], Awaitable[object]]], rate: int, period: float
) -> tuple[str, str]:
    """(error %, worst window) measured in a child process, or "stalled" if it never ends."""
    out: multiprocessing.Queue[tuple[str, str]] = multiprocessing.Queue()
    child = multiprocessing.Process(target=_measure_in_child, args=(make, rate, period, out))
    child.start()
    child.join(REAL_SECONDS_LIMIT)
    if child.is_alive():
        child.terminate()
        child.join()
        return "stalled (virtual time stopped)", "-"
    return out.get()


def accuracy_table() -> None:
    print(
        f"\n{'rate':>10} {'lamina err%':>12} {'worst win':>10} {'aiolimiter err%':>16} {'worst':>6}"
    )
    for rate, period in RATES:

        def ours(rate: int = rate, period: float = period) -> Callable[[], Awaitable[object]]:
            return Limiter(rate, period).acquire

        def theirs(rate: int = rate, period: float = period) -> Callable[[], Awaitable[object]]:
            return AsyncLimiter(rate, period).acquire

        e1, w1 = measure(ours, rate, period)
        e2, w2 = measure(theirs, rate, period)
        label = f"{rate}/{period:g}s"
        print(f"{label:>10} {e1:>12} {w1:>10} {e2:>22} {w2:>6}", flush=True)


if __name__ == "__main__":
    asyncio.run(cost_table())
    accuracy_table()
