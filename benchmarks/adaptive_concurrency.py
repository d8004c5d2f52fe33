"""AdaptiveConcurrencyLayer against an upstream that serves 8 requests at once.

Run: ``python benchmarks/adaptive_concurrency.py``. The upstream is lamina's local
server in its own process (``/capacity/{key}``): it answers in 10 ms while at most 8
requests are in it and queues the rest (a server-side semaphore of 8). First the
unloaded latency (sequential calls); then ``--callers`` concurrent callers (500), each
calling in a loop for ``--seconds`` (5), through the layer with its defaults, and,
for comparison, straight through the transport. A call the layer sheds
(``ConcurrencyLimitExceeded``) is tried again by its caller after 100-300 ms.
``--transport`` picks the transport (httpx).

The latency columns are the time an admitted call took (the layer sheds instead of
queueing, so that is the upstream's answer time, its queue included, plus the client's
own time: its event loop runs all 500 callers), over the whole run and over the calls
started in its second half (settled: without the start, where 500 callers arrive at
once, connections open and the limit is still being found); the limit column is the
median of the limit sampled every 50 ms over the second half.

Three columns say where the latency came from: the upstream's own queueing (the server
reports it, ``queued_ms``; second half), the share of the run the client's event loop
spent on a CPU (its thread's CPU time / wall time), and the share it was ready to run
but waited for a CPU taken by other processes (Linux ``schedstat``; a loaded machine).
A loop on a CPU most of the run is saturated: calls then wait for the loop, not for the
upstream, and no limit on in-flight calls removes that wait. That is httpx's case here:
it spends several times the CPU per call of aiohttp or pyreqwest (about a third of it in
httpcore's connection pool), so its loop is saturated below the upstream's 800 calls/s.

Target (issue 16): the limit settles between 4 and 16 and p99 stays under 4x the
unloaded latency, without configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import server_process

from lamina import ConcurrencyLimitExceeded, Request, Service
from lamina.layers.adaptive_concurrency import AdaptiveConcurrencyLayer
from lamina.transports import AiohttpTransport, HttpxTransport, PyreqwestTransport

TRANSPORTS = {
    "httpx": HttpxTransport,
    "aiohttp": AiohttpTransport,
    "pyreqwest": PyreqwestTransport,
}


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


async def unloaded(service: Service, url: str, calls: int = 100) -> list[float]:
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await service(Request("GET", url))
        latencies.append(time.perf_counter() - started)
    return sorted(latencies)


async def loaded(
    service: Service,
    url: str,
    callers: int,
    seconds: float,
    layer: AdaptiveConcurrencyLayer | None,
) -> dict[str, float]:
    latencies: list[float] = []
    settled: list[float] = []  # of the calls started in the second half
    queued: list[float] = []  # the upstream's own queueing (ms) of those calls
    shed = 0
    limits: list[tuple[float, int]] = []
    start = time.perf_counter()
    end = start + seconds
    rng = random.Random(16)

    async def caller() -> None:
        nonlocal shed
        while time.perf_counter() < end:
            started = time.perf_counter()
            try:
                response = await service(Request("GET", url))
            except ConcurrencyLimitExceeded:
                shed += 1
                await asyncio.sleep(rng.uniform(0.1, 0.3))
                continue
            latency = time.perf_counter() - started
            latencies.append(latency)
            if started - start >= seconds / 2:
                settled.append(latency)
                queued.append(float(response.json()["queued_ms"]))

    async def sample() -> None:
        while time.perf_counter() < end:
            if layer is not None:
                limits.append((time.perf_counter() - start, layer.current_limit))
            await asyncio.sleep(0.05)

    sched = _schedstat()
    cpu = time.thread_time()
    await asyncio.gather(sample(), *(caller() for _ in range(callers)))
    wall = time.perf_counter() - start
    cpu = time.thread_time() - cpu
    waited = (_schedstat()[1] - sched[1]) / 1e9 if sched else math.nan
    latencies.sort()
    settled.sort()
    queued.sort()
    late = [limit for at, limit in limits if at >= seconds / 2]
    return {
        "calls": len(latencies),
        "shed": shed,
        "p50": percentile(latencies, 0.5) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "settled_p99": percentile(settled, 0.99) * 1000,
        "busy": cpu / wall,
        "runqueue": waited / wall,
        "queued_p50": percentile(queued, 0.5),
        "queued_p99": percentile(queued, 0.99),
        "limit": statistics.median(late) if late else math.nan,
        "low": min(late) if late else math.nan,
        "high": max(late) if late else math.nan,
    }


def _schedstat() -> list[int]:
    """This thread's time on a CPU and waiting for one (ns), Linux only."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--transport", choices=sorted(TRANSPORTS), default="httpx")
    args = parser.parse_args()
    with server_process() as base:
        async with TRANSPORTS[args.transport]() as transport:
            base_latency = await unloaded(transport, f"{base}/capacity/unloaded")
            p50 = percentile(base_latency, 0.5) * 1000
            p99 = percentile(base_latency, 0.99) * 1000
            print(f"unloaded (sequential calls): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            print(
                f"{args.callers} concurrent callers for {args.seconds:g} s, "
                f"transport {args.transport}; "
                "upstream: 10 ms, 8 at once, the rest queue"
            )
            print(
                "| stack | admitted calls | shed | p50 ms | p99 ms | p99 2nd half ms "
                "| 2nd-half p99 / unloaded p50 | limit (median, min-max, 2nd half) "
                "| upstream queue p50 / p99 ms (2nd half) | client loop on CPU "
                "| waiting for a CPU |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            layer = AdaptiveConcurrencyLayer()
            cases: list[tuple[str, Service, AdaptiveConcurrencyLayer | None, str]] = [
                ("AdaptiveConcurrencyLayer()", layer.wrap(transport), layer, "adaptive"),
                ("no limit (the transport's pool of 100)", transport, None, "bare"),
            ]
            for name, service, limiter, key in cases:
                row = await loaded(
                    service, f"{base}/capacity/{key}", args.callers, args.seconds, limiter
                )
                limit = (
                    "-"
                    if limiter is None
                    else f"{row['limit']:.0f} ({row['low']:.0f}-{row['high']:.0f})"
                )
                print(
                    f"| {name} | {row['calls']:.0f} | {row['shed']:.0f} | {row['p50']:.1f} "
                    f"| {row['p99']:.1f} | {row['settled_p99']:.1f} "
                    f"| {row['settled_p99'] / p50:.2f}x | {limit} "
                    f"| {row['queued_p50']:.1f} / {row['queued_p99']:.1f} "
                    f"| {row['busy']:.0%} | {row['runqueue']:.0%} |"
                )
            print(f"min_rtt measured by the layer: {(layer.min_rtt or 0) * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
