"""CPU time of one orchestration run over an in-memory service (issue 13, rows 3-5).

Run: ``python benchmarks/run_overhead.py [--rounds N] [--runs N] [--mode MODE] [--against DIR]``.

Times SEQUENTIAL (or ``--mode``) runs of 5 GET endpoints whose transport answers from
memory with the default stack (cache off, no-op tracing), in CPU time
(``time.process_time``). ``--against DIR`` also runs another checkout's ``src`` in
alternating subprocesses (e.g. ``git archive HEAD src | tar -x -C DIR``) for a
before/after. Prints medians and spreads in µs per run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

CALLS = 5


async def _sample(runs: int, mode: str) -> float:
    from lamina import (
        APIEndpoint,
        APIOrchestrationConfig,
        APIOrchestrator,
        OrchestrationMode,
        Request,
        Response,
    )

    done = Response(200, content=b"{}", headers={"content-type": "application/json"})

    async def inner(request: Request) -> Response:
        return done

    endpoints = [APIEndpoint(name=f"e{i}", url=f"http://bench/json?i={i}") for i in range(CALLS)]
    config = APIOrchestrationConfig(
        endpoints=endpoints, mode=OrchestrationMode[mode], cache_ttl=None
    )
    orchestrator = APIOrchestrator(config, transport=inner)
    for _ in range(50):
        await orchestrator.run()
    start = time.process_time()
    for _ in range(runs):
        await orchestrator.run()
    return (time.process_time() - start) / runs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--mode", default="SEQUENTIAL")
    parser.add_argument("--against")
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        print(asyncio.run(_sample(args.runs, args.mode)))
        return
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    sources = {"this": here}
    if args.against:
        sources["against"] = os.path.join(args.against, "src")
    samples: dict[str, list[float]] = {name: [] for name in sources}
    for _ in range(args.rounds):
        for name, src in sources.items():
            env = dict(os.environ, PYTHONPATH=src)
            out = subprocess.run(
                [sys.executable, __file__, "--once", "--runs", str(args.runs), "--mode", args.mode],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            samples[name].append(float(out.stdout))
    for name, values in samples.items():
        q = statistics.quantiles(values, n=4)
        median = statistics.median(values)
        print(f"{name:8s} median {median:7.1f} µs/run  IQR {q[0]:.1f}-{q[2]:.1f}")


if __name__ == "__main__":
    main()
