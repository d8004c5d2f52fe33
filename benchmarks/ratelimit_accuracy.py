"""Rate limiter accuracy in real time: 10, 100 and 1,000 per second.

Run: ``python benchmarks/ratelimit_accuracy.py [--quick] [--seconds S]``.

For each rate R, ``RateLimitLayer(R, 1.0)`` (an in-memory ``lamina.layers.rate_limit.Limiter``)
wraps a no-op service that records the event-loop time of every call it receives;
2R callers (at least 20) loop on the stack for S seconds (10; ``--quick``: 3), so
callers always wait on the limiter. Two burst settings: the default (burst = R:
R calls at once, then the window slides) and burst = 1 (calls spaced 1/R apart).
Reported: the achieved rate (calls / S) and its error against R; the busiest sliding
1-second window of *admissions* (the instants the limiter granted a slot: it promises
at most R; recorded by wrapping ``Bucket.consume`` for the run) and of *arrivals* at
the service (admission plus the event loop's delay in resuming the caller); the
longest pause between two arrivals; and CPU per call.
``accuracy_rows`` is what ``run_all.py`` reuses.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import table

from lamina import Request, Response, ServiceBuilder
from lamina.layers import RateLimitLayer
from lamina.layers.rate_limit import Bucket

RATES = (10, 100, 1000)


@dataclass
class AccuracyRow:
    """One rate's measurement."""

    rate: float
    burst: int
    seconds: float
    calls: int
    busiest: int  # most arrivals at the service in any 1-second window
    busiest_admitted: int  # most admissions (limiter's own instants) in any 1-second window
    longest_gap: float  # seconds between two consecutive calls
    cpu_us_per_call: float

    @property
    def achieved(self) -> float:
        return self.calls / self.seconds

    @property
    def error(self) -> float:
        """Relative error of the achieved rate (negative: slower than asked)."""
        return self.achieved / self.rate - 1


def busiest_window(stamps: list[float]) -> int:
    """Most calls in any sliding 1-second window (a busiest window can start at a call)."""
    return max((bisect.bisect_left(stamps, t + 1.0) - i for i, t in enumerate(stamps)), default=0)


def longest_gap(stamps: list[float], start: float) -> float:
    """The longest pause between consecutive calls (from ``start`` to the first)."""
    points = [start, *stamps]
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)


@contextlib.contextmanager
def admissions() -> Iterator[list[float]]:
    """Record the instant of every admission any in-memory Bucket makes, while open."""
    seen: list[float] = []
    original = Bucket.consume

    def consume(self: Bucket, weight: int, now: float, due: float | None = None) -> None:
        seen.extend([now] * weight)
        original(self, weight, now, due)

    Bucket.consume = consume  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Bucket.consume = original  # type: ignore[method-assign]


async def measure(rate: float, seconds: float, burst: int | None = None) -> AccuracyRow:
    """Drive a RateLimitLayer(rate, burst=burst) stack for ``seconds`` of real time."""
    with admissions() as admitted:
        return await _measure(rate, seconds, burst, admitted)


async def _measure(
    rate: float, seconds: float, burst: int | None, admitted: list[float]
) -> AccuracyRow:
    loop = asyncio.get_running_loop()
    stamps: list[float] = []
    done = Response(200, content=b"")

    async def noop(request: Request) -> Response:
        stamps.append(loop.time())
        return done

    layer = RateLimitLayer(rate, 1.0, burst=burst)
    service = ServiceBuilder([layer]).service(noop)
    request = Request("GET", "http://bench/noop")
    start = loop.time()
    end = start + seconds

    async def caller() -> None:
        while loop.time() < end:
            await service(request)

    c0 = time.process_time()
    callers = [asyncio.create_task(caller()) for _ in range(max(20, int(2 * rate)))]
    await asyncio.sleep(seconds)
    for task in callers:
        task.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    cpu = time.process_time() - c0
    inside = [t for t in stamps if start <= t < end]
    return AccuracyRow(
        rate,
        burst if burst is not None else int(rate),
        seconds,
        len(inside),
        busiest_window(inside),
        busiest_window(sorted(t for t in admitted if start <= t < end)),
        longest_gap(inside, start),
        cpu / max(len(inside), 1) * 1e6,
    )


async def accuracy_rows(
    seconds: float, rates: tuple[float, ...] = RATES, bursts: tuple[int | None, ...] = (None, 1)
) -> list[AccuracyRow]:
    """Every rate with every burst setting (None: the default, burst = rate), in turn."""
    rows = []
    for burst in bursts:
        for rate in rates:
            rows.append(await measure(rate, seconds, burst))
            print(f"[ratelimit] {rate:g}/s burst {burst} done", file=sys.stderr, flush=True)
    return rows


def accuracy_table(rows: list[AccuracyRow]) -> str:
    """The rows as a Markdown table."""
    return table(
        [
            "rate/s",
            "burst",
            "seconds",
            "calls",
            "achieved/s",
            "error",
            "busiest 1 s, admitted",
            "busiest 1 s, arrived",
            "longest pause ms",
            "CPU µs/call",
        ],
        [
            [
                f"{r.rate:g}",
                r.burst,
                f"{r.seconds:g}",
                r.calls,
                f"{r.achieved:.1f}",
                f"{r.error * 100:+.2f}%",
                r.busiest_admitted,
                r.busiest,
                f"{r.longest_gap * 1e3:.1f}",
                f"{r.cpu_us_per_call:.0f}",
            ]
            for r in rows
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per rate")
    parser.add_argument("--seconds", type=float, help="seconds per rate (default 10)")
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    rows = asyncio.run(accuracy_rows(seconds))
    print(accuracy_table(rows))


if __name__ == "__main__":
    main()
