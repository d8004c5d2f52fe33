"""HedgeLayer against an upstream with a slow tail: latency percentiles and extra calls.

Run: ``python benchmarks/hedge.py``. The upstream is lamina's local server in its own
process (``/slow-some/{key}``): one arrival in ten (seeded, so every run sees the same
ones) answers after 1 s, the others after 10 ms. ``--calls`` sequential calls (200)
follow ``--warmup`` calls (50) that let the layer learn its delay; each row gives the
call latency percentiles of the measured calls and the upstream requests they caused
(the server's count: a hedge cancelled before it was sent is not one).

Target (issue 16): p99 under 100 ms with at most 15% extra upstream calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import server_process

from lamina import Request, ServiceBuilder
from lamina.layers.hedge import HedgeLayer
from lamina.transports import AiohttpTransport, HttpxTransport, PyreqwestTransport

TRANSPORTS = {
    "httpx": HttpxTransport,
    "aiohttp": AiohttpTransport,
    "pyreqwest": PyreqwestTransport,
}


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def hits(base: str, path: str) -> int:
    with urllib.request.urlopen(base + "/__stats") as answer:
        stats = json.load(answer)
    return int(stats.get(path, {}).get("hits", 0))


async def run(
    base: str, key: str, transport_kind: str, layer: HedgeLayer | None, calls: int, warmup: int
) -> dict[str, float]:
    path = f"/slow-some/{key}"
    url = f"{base}{path}?rate=0.1&seed=16&slow_ms=1000&fast_ms=10"
    async with TRANSPORTS[transport_kind]() as transport:
        builder = ServiceBuilder()
        if layer is not None:
            builder = builder.layer(layer)
        service = builder.service(transport)
        for _ in range(warmup):
            await service(Request("GET", url))
        before = hits(base, path)
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            response = await service(Request("GET", url))
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
        await asyncio.sleep(0.05)  # let the server log the last cancelled hedges
        upstream = hits(base, path) - before
    latencies.sort()
    return {
        "p50": percentile(latencies, 0.50) * 1000,
        "p90": percentile(latencies, 0.90) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "max": latencies[-1] * 1000,
        "upstream": upstream,
        "extra": (upstream - calls) / calls * 100,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--transport", choices=sorted(TRANSPORTS), default="httpx")
    args = parser.parse_args()
    cases: list[tuple[str, HedgeLayer | None]] = [
        ("no hedging", None),
        ('HedgeLayer() (delay="p95", max_hedges=1)', HedgeLayer()),
        ('HedgeLayer(delay="p88", max_hedges=2)', HedgeLayer(delay="p88", max_hedges=2)),
        ("HedgeLayer(delay=0.05)", HedgeLayer(delay=0.05)),
        ("HedgeLayer(delay=0.03, max_hedges=2)", HedgeLayer(delay=0.03, max_hedges=2)),
    ]
    print(
        f"{args.calls} sequential calls after {args.warmup} warm-up calls, "
        f"transport {args.transport}; upstream: 1 in 10 takes 1 s, the rest 10 ms"
    )
    print("| stack | p50 ms | p90 ms | p99 ms | max ms | upstream calls | extra | delay |")
    print("|---|---|---|---|---|---|---|---|")
    with server_process() as base:
        for index, (name, layer) in enumerate(cases):
            row = await run(base, f"k{index}", args.transport, layer, args.calls, args.warmup)
            learned = layer.current_delay() if layer is not None else None
            delay = "-" if learned is None else f"{learned * 1000:.1f} ms"
            print(
                f"| {name} | {row['p50']:.1f} | {row['p90']:.1f} | {row['p99']:.1f} "
                f"| {row['max']:.1f} | {row['upstream']:.0f} | {row['extra']:.1f}% | {delay} |"
            )


if __name__ == "__main__":
    asyncio.run(main())
