"""Scale: one FANOUT run over 1,000 and 10,000 endpoints, wall time and peak RSS.

Run: ``python benchmarks/scale.py [--quick] [--sizes 1000,10000] [--transport both]``.

Every (size, transport) runs in a fresh subprocess against one loopback server
(``python -m lamina.testing``, its own process): the child imports lamina, notes its
RSS, builds an ``APIOrchestrator`` of N endpoints ``/json?i=K`` in FANOUT mode with
``max_concurrent=100`` (default layers, cache off), runs it once, checks that all N
results came back, and reports build and run seconds and its peak RSS: ``VmHWM``
from ``/proc/self/status`` where there is one, else
``resource.getrusage(RUSAGE_SELF).ru_maxrss``. (On Linux ``ru_maxrss`` survives
``fork`` + ``exec``: a child started by a 60 MB parent reports at least 60 MB, so
it is shown as well but not used.) ``scale_rows`` is what ``run_all.py`` reuses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _util import server_process, table

SIZES = (1000, 10000)
TRANSPORTS = ("httpx", "aiohttp")
MAX_CONCURRENT = 100


@dataclass
class ScaleRow:
    """One FANOUT run in a fresh process."""

    transport: str
    endpoints: int
    build_s: float = 0.0
    run_s: float = 0.0
    import_mb: float = 0.0  # RSS after importing lamina, before building
    peak_mb: float = 0.0
    ok: int = 0  # results that came back
    ru_maxrss_mb: float = 0.0  # may include the parent's peak (see the module docstring)
    problem: str | None = None

    @property
    def ms_per_endpoint(self) -> float:
        return (self.build_s + self.run_s) / self.endpoints * 1e3

    @property
    def kb_per_endpoint(self) -> float:
        return (self.peak_mb - self.import_mb) * 1024 / self.endpoints


def _ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mb() -> float:
    """This process's own peak RSS in MB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return _ru_maxrss_mb()


def child(base: str, n: int, transport: str) -> dict[str, Any]:
    """Build and run one FANOUT orchestration (runs in the fresh subprocess)."""
    from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode

    import_mb = _rss_mb()
    t0 = time.perf_counter()
    endpoints = [APIEndpoint(name=f"e{i}", url=f"{base}/json?i={i}") for i in range(n)]
    config = APIOrchestrationConfig(
        endpoints=endpoints, mode=OrchestrationMode.FANOUT, max_concurrent=MAX_CONCURRENT
    )
    orchestrator = APIOrchestrator(config, transport=transport)  # type: ignore[arg-type]
    build_s = time.perf_counter() - t0

    async def go() -> tuple[Any, float]:
        try:
            t1 = time.perf_counter()
            value = await orchestrator.execute()
            return value, time.perf_counter() - t1
        finally:
            await orchestrator.aclose()

    value, run_s = asyncio.run(go())
    ok = sum(
        1
        for i in range(n)
        if isinstance(value, dict)
        and isinstance(value.get(f"e{i}"), dict)
        and value[f"e{i}"].get("query", {}).get("i") == str(i)
    )
    return {
        "build_s": build_s,
        "run_s": run_s,
        "import_mb": import_mb,
        "peak_mb": _rss_mb(),
        "ok": ok,
        "ru_maxrss_mb": _ru_maxrss_mb(),
    }


def run_one(base: str, n: int, transport: str, timeout: float = 600) -> ScaleRow:
    """One (size, transport) in a fresh interpreter."""
    cmd = [sys.executable, __file__, "--child", base, str(n), transport]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return ScaleRow(transport, n, problem=f"did not finish in {timeout:.0f} s")
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-1:])[:200]
        return ScaleRow(transport, n, problem=f"exit {proc.returncode}: {tail}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return ScaleRow(transport, n, **data)


def scale_rows(
    base: str, sizes: tuple[int, ...] = SIZES, transports: tuple[str, ...] = TRANSPORTS
) -> list[ScaleRow]:
    """Every size on every transport, each in a fresh process."""
    rows = []
    for transport in transports:
        for n in sizes:
            rows.append(run_one(base, n, transport))
            print(f"[scale] {transport} {n} done", file=sys.stderr, flush=True)
    return rows


def growth(rows: list[ScaleRow], transport: str) -> tuple[float, float] | None:
    """(time ratio, memory-above-import ratio) of the largest size over the smallest,
    divided by the size ratio: <= 1 means no worse than linear."""
    mine = sorted(
        (r for r in rows if r.transport == transport and not r.problem), key=lambda r: r.endpoints
    )
    if len(mine) < 2:
        return None
    small, big = mine[0], mine[-1]
    scale = big.endpoints / small.endpoints
    t = (big.build_s + big.run_s) / (small.build_s + small.run_s) / scale
    m = (big.peak_mb - big.import_mb) / max(small.peak_mb - small.import_mb, 1.0) / scale
    return t, m


def scale_table(rows: list[ScaleRow]) -> str:
    """The rows as a Markdown table."""
    out: list[list[object]] = []
    for r in rows:
        if r.problem:
            out.append([r.transport, f"{r.endpoints:,}", r.problem, "", "", "", "", ""])
            continue
        out.append(
            [
                r.transport,
                f"{r.endpoints:,}",
                f"{r.build_s:.2f}",
                f"{r.run_s:.2f}",
                f"{r.ms_per_endpoint:.2f}",
                f"{r.import_mb:.0f}",
                f"{r.peak_mb:.0f}",
                f"{r.kb_per_endpoint:.1f}",
                f"{r.ok:,}/{r.endpoints:,}",
            ]
        )
    headers = [
        "transport",
        "endpoints",
        "build s",
        "run s",
        "ms/endpoint",
        "RSS after import MB",
        "peak RSS MB",
        "KB/endpoint above import",
        "results",
    ]
    return table(headers, [row + [""] * (len(headers) - len(row)) for row in out])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        base, n, transport = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        print(json.dumps(child(base, n, transport)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 3,000 endpoints")
    parser.add_argument("--sizes", help="comma list of endpoint counts")
    parser.add_argument("--transport", choices=["httpx", "aiohttp", "both"], default="both")
    args = parser.parse_args()
    sizes: tuple[int, ...] = (1000, 3000) if args.quick else SIZES
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    transports = TRANSPORTS if args.transport == "both" else (args.transport,)
    with server_process() as base:
        rows = scale_rows(base, sizes, transports)
    print(f"## FANOUT, max_concurrent {MAX_CONCURRENT}\n")
    print(scale_table(rows))
    for transport in transports:
        g = growth(rows, transport)
        if g is not None:
            print(f"\n{transport}: time {g[0]:.2f}x linear, memory {g[1]:.2f}x linear")


if __name__ == "__main__":
    main()
