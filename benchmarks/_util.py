"""Shared helpers for the benchmark scripts: timing, a server process, a table."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager


async def per_call_us(
    fn: Callable[[], Awaitable[object]], *, calls: int, repeats: int, warmup: int = 50
) -> float:
    """Median over ``repeats`` runs of the mean microseconds per call."""
    for _ in range(warmup):
        await fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            await fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def pin_apart(server_pid: int) -> None:
    """Server on the last CPU, this process (and what it starts later) on the others, so
    client and server never take turns on one core (on a 2-core machine: one core each)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return
    os.sched_setaffinity(server_pid, {cpus[-1]})
    os.sched_setaffinity(0, set(cpus[:-1]))


@contextmanager
def server_process() -> Iterator[str]:
    """lamina's local test server in its own process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lamina.testing"],
        stdout=subprocess.PIPE,
        text=True,
    )
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    pin_apart(proc.pid)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"server did not start: {line!r}")
        yield line.split(" ", 1)[1]
    finally:
        proc.terminate()
        proc.wait(5)
        if affinity:
            os.sched_setaffinity(0, affinity)


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    return "\n".join([line, sep, *body])
