"""Per-call cost of CacheLayer: hit path and miss path vs a bare service_fn.

Run: ``python benchmarks/layers_cache.py [N]``. Prints µs per call, the best
of 20 rounds of N calls (the round least disturbed by other work on a shared
machine), and for reference the cost of copying a small JSON value with
``copy.deepcopy`` vs the pickle snapshot the cache uses. The last rows go
through a real HTTP server on 127.0.0.1, to put a hit next to a real call.
"""

from __future__ import annotations

import asyncio
import copy
import sys
import time
from collections.abc import Awaitable, Callable

from lamina import HttpxTransport, Request, Response, service_fn
from lamina.layers.cache import CacheLayer
from lamina.layers.cache.entry import _Snapshot
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer

VALUE = {"ok": True, "path": "/json", "query": {"a": "1"}, "items": [1, 2, 3], "name": "x"}
HEADERS = {"content-type": "application/json", "x-request-id": "1"}


async def _handler(request: Request) -> Response:
    return Response(200, headers=HEADERS, content=b"{}", request=request, value=VALUE)


def _request(i: int = 0, *, auth: bool = True) -> Request:
    headers = {"Accept": "application/json"}
    if auth:
        headers["Authorization"] = "Bearer secret-token"
    return Request(
        "GET", f"http://127.0.0.1/json?page={i}&sort=asc", headers=headers, endpoint="users"
    )


async def _per_call(fn: Callable[[int], Awaitable[object]], n: int, rounds: int = 20) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(n):
            await fn(i)
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


async def main(n: int) -> None:
    bare = service_fn(_handler)
    hit_layer = CacheLayer(ttl=3600, cache_authorized=True)
    hit_svc = hit_layer.wrap(bare)
    req = _request()
    await hit_svc(req)
    anon_layer = CacheLayer(ttl=3600)
    anon_svc = anon_layer.wrap(bare)
    anon = _request(auth=False)
    await anon_svc(anon)
    miss_layer = CacheLayer(ttl=3600, maxsize=1024, cache_authorized=True)
    miss_svc = miss_layer.wrap(bare)
    misses = [_request(i) for i in range(n)]
    # Distinct keys per call and round: the store is full, so each miss also evicts.
    counter = iter(range(10**9))

    async def miss(i: int) -> object:
        r = misses[i]
        return await miss_svc(r.replace(params={"n": next(counter)}))

    async def bare_replaced(i: int) -> object:
        return await bare(misses[i].replace(params={"n": i}))

    rows: list[tuple[str, float]] = [
        ("bare service_fn", await _per_call(lambda i: bare(req), n)),
        ("cache hit (Authorization, opt-in)", await _per_call(lambda i: hit_svc(req), n)),
        ("cache hit (no credentials)", await _per_call(lambda i: anon_svc(anon), n)),
        ("bare service_fn + Request.replace", await _per_call(bare_replaced, n)),
        ("cache miss + store (+ eviction)", await _per_call(miss, n)),
    ]
    snap = _Snapshot(VALUE)

    async def deep(i: int) -> object:
        return copy.deepcopy(VALUE)

    async def pickled(i: int) -> object:
        return snap.copy()

    rows += [
        ("copy.deepcopy(small JSON dict) (+ await)", await _per_call(deep, n)),
        ("pickle snapshot copy (used) (+ await)", await _per_call(pickled, n)),
    ]

    with LocalServer() as server:
        async with HttpxTransport() as transport:
            real = ParseLayer().wrap(transport)
            cached = CacheLayer(ttl=3600).wrap(real)
            url = Request("GET", server.url_for("/json"), endpoint="bench")
            await cached(url)
            m = max(50, n // 20)
            rows.append(
                (
                    "real HTTP call (Parse + httpx, loopback)",
                    await _per_call(lambda i: real(url), m, rounds=3),
                )
            )
            rows.append(("cache hit in front of it", await _per_call(lambda i: cached(url), n)))
            assert server.hits("/json") == 1 + 3 * m, "a cache hit reached the server"

    base = rows[0][1]
    print(f"{'path':44} {'µs/call':>9} {'x bare':>8}")
    for name, us in rows:
        print(f"{name:44} {us:9.2f} {us / base:8.1f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
