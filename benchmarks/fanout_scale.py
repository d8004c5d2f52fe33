"""One FANOUT run of 1,000 and 10,000 endpoints over an in-memory service (issue 13).

Run: ``python benchmarks/fanout_scale.py [--rounds 5] [--sizes 1000,10000]``.

Each round, interleaved: lamina (``APIOrchestrator``, default stack, cache off,
``max_concurrent=100``) and a hand-written ``asyncio.gather`` bounded by a semaphore,
both over the same in-memory service. Time per endpoint is the wall time of one built
run; memory per endpoint is what the built orchestrator holds (tracemalloc) and the run's
peak above what was allocated before it (a separate run: tracemalloc slows everything).
Warm, timed and traced runs share one loop (an orchestrator rebinds to a new loop).
Prints medians and the growth of time per endpoint from the smallest size to the
largest (1.00x = linear). ``--freeze`` calls ``gc.freeze()`` once each is built.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).parent))
from _util import table

if TYPE_CHECKING:
    from lamina import Service

MAX_CONCURRENT = 100


def service() -> Service:
    from lamina import Request, Response

    async def inner(request: Request) -> Response:
        await asyncio.sleep(0)  # one switch, like a reply arriving later
        return Response(200, content=b'{"ok":1}', headers={"content-type": "application/json"})

    return inner


def lamina_run(n: int) -> Callable[[], Awaitable[Any]]:
    from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode

    endpoints = [APIEndpoint(name=f"e{i}", url=f"http://bench/json?i={i}") for i in range(n)]
    config = APIOrchestrationConfig(
        endpoints=endpoints,
        mode=OrchestrationMode.FANOUT,
        max_concurrent=MAX_CONCURRENT,
        cache_ttl=None,
    )
    orchestrator = APIOrchestrator(config, transport=service())
    return orchestrator.execute


def gather_run(n: int) -> Callable[[], Awaitable[Any]]:
    from lamina import Request

    inner = service()
    urls = [f"http://bench/json?i={i}" for i in range(n)]

    async def run() -> Any:
        slots = asyncio.Semaphore(MAX_CONCURRENT)

        async def one(url: str) -> Any:
            async with slots:
                response = await inner(Request("GET", url))
                return response.json()

        return await asyncio.gather(*(one(url) for url in urls))

    return run


def measure(
    make: Callable[[int], Callable[[], Awaitable[Any]]], n: int, *, freeze: bool = False
) -> tuple[float, float, float]:
    """(µs per endpoint of one run, KB per endpoint at the run's peak, KB per endpoint
    the built orchestrator holds) for ``n`` endpoints. ``freeze``: ``gc.freeze()`` once
    built, as docs/performance.md suggests for large runs."""
    gc.collect()
    tracemalloc.start()
    run = make(n)
    built = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    if freeze:
        gc.freeze()
    try:
        return asyncio.run(_runs(run, n, built))
    finally:
        gc.unfreeze()


async def _runs(
    run: Callable[[], Awaitable[Any]], n: int, built: int
) -> tuple[float, float, float]:
    """Warm, timed and traced runs on one loop (an orchestrator rebinds to a new loop)."""
    await run()
    gc.collect()
    start = time.perf_counter()
    await run()
    us = (time.perf_counter() - start) / n * 1e6
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    await run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return us, (peak - before) / n / 1024, built / n / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--only", choices=("lamina", "gather"))
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() once built")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    makers = {"lamina": lamina_run, "gather": gather_run}
    if args.only:
        makers = {args.only: makers[args.only]}
    samples: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for _ in range(args.rounds):
        for n in sizes:
            for name, make in makers.items():
                samples.setdefault((name, n), []).append(measure(make, n, freeze=args.freeze))
    rows: list[list[object]] = []
    for name in makers:
        us = {n: statistics.median(s[0] for s in samples[name, n]) for n in sizes}
        for n in sizes:
            kb = statistics.median(s[1] for s in samples[name, n])
            built = statistics.median(s[2] for s in samples[name, n])
            growth = us[n] / us[sizes[0]]
            rows.append(
                [name, f"{n:,}", f"{us[n]:.1f}", f"{growth:.2f}x", f"{kb:.2f}", f"{built:.2f}"]
            )
    headers = ["run", "endpoints", "µs/endpoint", "time growth", "KB/endpoint run peak"]
    print(table([*headers, "KB/endpoint built"], rows))


if __name__ == "__main__":
    main()
