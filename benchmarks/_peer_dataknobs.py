"""The peer side of ``benchmarks/orchestration.py``: dataknobs-fsm's APIOrchestrator.

Runs in the peer's own virtualenv (dataknobs-fsm needs Python >= 3.12), so it
imports nothing from lamina. Usage::

    .venv-peer/bin/python benchmarks/_peer_dataknobs.py URL CASE \
        [--repeats N] [--runs N] [--concurrency N] [--warmup N]

CASE is ``A`` (PARALLEL, 5 x ``/json?ms=100``: seconds per run), ``B``
(SEQUENTIAL, 5 x ``/json``: seconds per run, mean over ``--runs``) or ``C``
(PARALLEL, 5 x ``/json``, ``--runs`` runs, ``--concurrency`` at a time: total
seconds). Prints one JSON object: version, per-repeat ``samples`` (wall
seconds), ``cpu`` (process CPU seconds per repeat) and ``check``, which says
whether every run returned the 5 expected responses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from importlib.metadata import version
from typing import Any

from dataknobs_fsm.patterns.api_orchestration import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    OrchestrationMode,
)

N_ENDPOINTS = 5


def make(url: str, case: str) -> APIOrchestrator:
    """One orchestrator of 5 endpoints, in the case's mode, with its default settings."""
    query = "ms=100&" if case == "A" else ""
    endpoints = [
        APIEndpoint(name=f"e{i}", url=f"{url}/json?{query}i={i}") for i in range(N_ENDPOINTS)
    ]
    mode = OrchestrationMode.SEQUENTIAL if case == "B" else OrchestrationMode.PARALLEL
    return APIOrchestrator(APIOrchestrationConfig(endpoints=endpoints, mode=mode))


class Checker:
    """Counts runs whose result lacks one of the 5 responses (the peer swallows errors)."""

    def __init__(self) -> None:
        self.runs = 0
        self.bad = 0
        self.example: str | None = None

    def __call__(self, result: dict[str, Any]) -> None:
        self.runs += 1
        for i in range(N_ENDPOINTS):
            value = result.get(f"e{i}")
            if not (
                isinstance(value, dict)
                and value.get("ok") is True
                and value.get("query", {}).get("i") == str(i)
            ):
                self.bad += 1
                if self.example is None:
                    self.example = f"e{i} -> {value!r}"[:200]
                return

    def summary(self) -> dict[str, Any]:
        return {"runs": self.runs, "bad_runs": self.bad, "example": self.example}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    orchestrator = make(args.url, args.case)
    check = Checker()
    samples: list[float] = []
    cpu: list[float] = []
    try:
        if args.case == "C":

            async def one(sem: asyncio.Semaphore) -> None:
                async with sem:
                    check(await orchestrator.orchestrate())

            async def batch(runs: int) -> None:
                sem = asyncio.Semaphore(args.concurrency)
                await asyncio.gather(*(one(sem) for _ in range(runs)))

            await batch(args.warmup)
            for _ in range(args.repeats):
                c0, t0 = time.process_time(), time.perf_counter()
                await batch(args.runs)
                samples.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        else:
            for _ in range(args.warmup):
                check(await orchestrator.orchestrate())
            runs = 1 if args.case == "A" else args.runs
            for _ in range(args.repeats):
                c0, t0 = time.process_time(), time.perf_counter()
                for _ in range(runs):
                    check(await orchestrator.orchestrate())
                samples.append((time.perf_counter() - t0) / runs)
                cpu.append((time.process_time() - c0) / runs)
    finally:
        await orchestrator.close()
    return {
        "version": version("dataknobs-fsm"),
        "case": args.case,
        "samples": samples,
        "median": statistics.median(samples),
        "cpu": cpu,
        "check": check.summary(),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("case", choices=["A", "B", "C"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=2)
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse()))))
