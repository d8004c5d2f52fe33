"""Redis-backed limiter, breaker and cache versus in-memory: cost per call and throughput.

Run: ``python benchmarks/redis_backend.py`` (needs Redis at ``LAMINA_REDIS_URL``,
default ``redis://127.0.0.1:6379/0``). Keys go under a random prefix and are
deleted afterwards. "added" is the Redis time per call minus the in-memory
time; "conc ops/s" runs 64 callers at once on one event loop.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _util import per_call_us, table

from lamina._headers import Headers
from lamina.backends.redis import RedisBackend
from lamina.layers.cache import CacheEntry, MemoryCacheStore
from lamina.layers.circuit_breaker import CircuitBreaker, MemoryBreakerStore, Outcome
from lamina.layers.rate_limit import Limiter

CALLS, REPEATS, CONCURRENCY = 500, 5, 64


async def throughput(fn: Callable[[], Awaitable[object]], total: int = 4000) -> float:
    """Operations per second with CONCURRENCY callers."""

    async def worker(n: int) -> None:
        for _ in range(n):
            await fn()

    start = time.perf_counter()
    await asyncio.gather(*(worker(total // CONCURRENCY) for _ in range(CONCURRENCY)))
    return (total // CONCURRENCY) * CONCURRENCY / (time.perf_counter() - start)


def breaker_call(brk: CircuitBreaker) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        permit = await brk.acquire()
        await brk.release(permit, Outcome.SUCCESS)

    return call


async def main() -> None:
    url = os.environ.get("LAMINA_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"lamina-bench-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(url, prefix=prefix, timeout=1.0)
    try:
        await backend.ping()
    except Exception as exc:
        print(f"no Redis at {backend.address}: {type(exc).__name__}")
        return
    pings = []
    for _ in range(200):
        pings.append(await backend.ping() * 1e6)
    rtt = statistics.median(pings)

    entry = CacheEntry(
        status_code=200,
        headers=Headers([("content-type", "application/json")]),
        content=b'{"id": 1, "name": "x", "tags": ["a", "b"]}',
        value={"id": 1, "name": "x", "tags": ["a", "b"]},
        namespace="bench",
        stored_at=0.0,
        fresh_for=300.0,
    )
    memory_store, redis_store = MemoryCacheStore(), backend.cache_store()
    key = "bench|GET http://example/items/1|body:-|cred:-"
    memory_store.set_nowait(key, entry, 300)
    await redis_store.set(key, entry, 300)

    huge = 1e9  # never waits: measures the bookkeeping only
    cases: list[tuple[str, Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]] = [
        (
            "rate limiter acquire",
            Limiter(huge, 1, burst=10**6).acquire,
            backend.limiter(huge, 1, burst=10**6, name="bench").acquire,
        ),
        (
            "breaker acquire+release",
            breaker_call(CircuitBreaker(5, 30, name="m", backend=MemoryBreakerStore())),
            breaker_call(CircuitBreaker(5, 30, name="r", backend=backend.breaker_backend())),
        ),
        ("cache get (hit)", lambda: memory_store.get(key), lambda: redis_store.get(key)),
    ]
    rows: list[list[object]] = []
    for name, local, shared in cases:
        mem_us = await per_call_us(local, calls=CALLS * 10, repeats=REPEATS)
        red_us = await per_call_us(shared, calls=CALLS, repeats=REPEATS)
        rows.append(
            [
                name,
                f"{mem_us:.1f}",
                f"{red_us:.0f}",
                f"{red_us - mem_us:.0f}",
                f"{1e6 / mem_us:,.0f}",
                f"{1e6 / red_us:,.0f}",
                f"{await throughput(shared):,.0f}",
                f"{rtt:.0f}",
            ]
        )
    print(f"Redis at {backend.address}; PING round trip median {rtt:.0f} us\n")
    print(
        table(
            [
                "operation",
                "memory us/call",
                "redis us/call",
                "added us",
                "memory ops/s",
                "redis ops/s (1 caller)",
                f"redis ops/s ({CONCURRENCY} callers)",
                "PING us",
            ],
            rows,
        )
    )
    client = backend.client()
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await backend.aclose()


if __name__ == "__main__":
    asyncio.run(main())
