"""Per-call cost of FallbackLayer and ChaosLayer, in microseconds (issue 16 items 2 and 3).

Run: ``python benchmarks/layers_fallback_chaos.py [--calls N] [--rounds R]``. Prints the
median over ``R`` interleaved rounds of ``N`` sequential calls each, for a bare
``service_fn`` and the same service behind each layer, on the paths that matter:

* FallbackLayer when the call succeeds (what every call pays), and when it falls back
  (a value, and an async function of the error and the request);
* ChaosLayer on, injecting (almost) nothing (a status at a 0.0001 rate: the draw and the
  marks every call pays while chaos is on), and injecting a fault (compared with a bare
  service raising one) or a status on every call;
* ChaosLayer switched off (``enabled=False`` or ``LAMINA_CHAOS=off``): wrap() returns the
  inner service, so it costs nothing; shown to prove it.

No I/O and no OpenTelemetry SDK: this isolates the layers' own CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lamina import ConnectError, Request, Response, service_fn
from lamina.layers.chaos import ChaosLayer
from lamina.layers.fallback import FallbackLayer


async def _medians_us(
    cases: list[Callable[[], Awaitable[object]]], calls: int, rounds: int
) -> list[float]:
    """Interleave the cases round by round, so machine noise hits them alike."""
    samples: list[list[float]] = [[] for _ in cases]
    for _ in range(rounds):
        for i, call in enumerate(cases):
            started = time.perf_counter()
            for _ in range(calls):
                await call()
            samples[i].append((time.perf_counter() - started) / calls * 1e6)
    return [statistics.median(s) for s in samples]


async def main(calls: int, rounds: int) -> None:
    request = Request("GET", "http://127.0.0.1/x", endpoint="bench")
    response = Response(200, request=request)

    async def ok(req: Request) -> Response:
        return response

    async def refused(req: Request) -> Response:
        raise ConnectError("refused", request=req)

    async def degraded(error: Exception, req: Request) -> dict[str, Any]:
        return {"endpoint": req.endpoint}

    bare = service_fn(ok)
    failing = service_fn(refused)
    fallback_ok = FallbackLayer({"x": 1}).wrap(bare)
    fallback_value = FallbackLayer({"x": 1}).wrap(failing)
    fallback_function = FallbackLayer(degraded).wrap(failing)
    chaos_quiet = ChaosLayer(status=503, status_rate=0.0001, seed=1).wrap(bare)
    chaos_fault = ChaosLayer(fault_rate=1.0, seed=1).wrap(bare)
    chaos_status = ChaosLayer(status=503, status_rate=1.0, seed=1).wrap(bare)
    chaos_off = ChaosLayer(fault_rate=1.0, enabled=False).wrap(bare)
    assert chaos_off is bare

    async def raising(service: Any) -> None:
        with contextlib.suppress(ConnectError):
            await service(request)

    async def raw_raise() -> None:
        with contextlib.suppress(ConnectError):
            await failing(request)

    import logging

    logging.getLogger("lamina.chaos").setLevel(logging.ERROR)  # the once-per-stack warning
    cases: list[tuple[str, Callable[[], Awaitable[object]], str]] = [
        ("bare service_fn (200)", lambda: bare(request), ""),
        ("FallbackLayer, call succeeds", lambda: fallback_ok(request), "ok"),
        ("bare service_fn (raises ConnectError)", raw_raise, ""),
        ("FallbackLayer, falls back to a value", lambda: fallback_value(request), "raise"),
        ("FallbackLayer, falls back to an async fn", lambda: fallback_function(request), "raise"),
        ("ChaosLayer on, injects (almost) nothing", lambda: chaos_quiet(request), "ok"),
        ("ChaosLayer, fault on every call", lambda: raising(chaos_fault), "raise"),
        ("ChaosLayer, status 503 on every call", lambda: chaos_status(request), "ok"),
        ("ChaosLayer enabled=False (no wrap)", lambda: chaos_off(request), "ok"),
    ]
    medians = await _medians_us([call for _, call, _ in cases], calls, rounds)
    base = {"ok": medians[0], "raise": medians[2]}
    print(f"{calls} calls x {rounds} rounds, median µs per call")
    print("| case | µs/call | over its bare service (µs) |")
    print("|---|---:|---:|")
    for (name, _, ref), us in zip(cases, medians, strict=True):
        over = f"{us - base[ref]:+.3f}" if ref else ""
        print(f"| {name} | {us:.3f} | {over} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
