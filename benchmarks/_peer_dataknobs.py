"""The peer side of ``benchmarks/orchestration.py``: dataknobs-fsm's APIOrchestrator.

Runs in the peer's own virtualenv (dataknobs-fsm 0.5.0 needs Python >= 3.12), so
it imports nothing from lamina. Usage::

    .venv-peer/bin/python benchmarks/_peer_dataknobs.py URL CASES [--impl IMPL] [sizes]

CASES is a comma list of ``A`` (PARALLEL, 5 x ``/json?ms=100``: seconds per
run), ``B`` (SEQUENTIAL, 5 x ``/json``: seconds per run, mean over ``--b-runs``)
and ``C`` (PARALLEL, 5 x ``/json``, ``--c-runs`` runs, ``--concurrency`` at a
time: total seconds). ``--impl dataknobs`` (default) drives
``APIOrchestrator.orchestrate()``; ``--impl aiohttp`` is a hand-written
``asyncio.gather`` over one ``aiohttp.ClientSession``, the same client library
dataknobs-fsm uses, for reference. Prints one JSON object: versions and, per
case, the per-repeat ``samples`` (wall seconds), ``cpu`` (process CPU seconds)
and ``check``: how many runs lacked one of the 5 expected responses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

import aiohttp
from dataknobs_fsm.patterns.api_orchestration import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    OrchestrationMode,
)

N_ENDPOINTS = 5
Runner = Callable[[], Awaitable[dict[str, Any]]]


def urls(base: str, case: str) -> list[str]:
    query = "ms=100&" if case == "A" else ""
    return [f"{base}/json?{query}i={i}" for i in range(N_ENDPOINTS)]


def dataknobs(base: str, case: str) -> tuple[Runner, Callable[[], Awaitable[None]]]:
    """One orchestrator of 5 endpoints in the case's mode, with its default settings."""
    endpoints = [APIEndpoint(name=f"e{i}", url=u) for i, u in enumerate(urls(base, case))]
    mode = OrchestrationMode.SEQUENTIAL if case == "B" else OrchestrationMode.PARALLEL
    orchestrator = APIOrchestrator(APIOrchestrationConfig(endpoints=endpoints, mode=mode))
    return orchestrator.orchestrate, orchestrator.close


def aiohttp_gather(base: str, case: str) -> tuple[Runner, Callable[[], Awaitable[None]]]:
    """The hand-written equivalent over one aiohttp session."""
    session = aiohttp.ClientSession()
    targets = urls(base, case)

    async def one(url: str) -> Any:
        async with session.get(url) as response:
            response.raise_for_status()
            return await response.json()

    async def run() -> dict[str, Any]:
        if case == "B":
            values = [await one(u) for u in targets]
        else:
            values = await asyncio.gather(*(one(u) for u in targets))
        return {f"e{i}": v for i, v in enumerate(values)}

    return run, session.close


class Checker:
    """Counts runs whose result lacks one of the 5 responses (dataknobs swallows errors)."""

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


async def measure(args: argparse.Namespace, case: str) -> dict[str, Any]:
    make = dataknobs if args.impl == "dataknobs" else aiohttp_gather
    run, close = make(args.url, case)
    check = Checker()
    samples: list[float] = []
    cpu: list[float] = []
    try:
        if case == "C":

            async def one(sem: asyncio.Semaphore) -> None:
                async with sem:
                    check(await run())

            async def batch(runs: int) -> None:
                sem = asyncio.Semaphore(args.concurrency)
                await asyncio.gather(*(one(sem) for _ in range(runs)))

            await batch(args.concurrency * 2)
            for _ in range(args.c_repeats):
                c0, t0 = time.process_time(), time.perf_counter()
                await batch(args.c_runs)
                samples.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        else:
            for _ in range(2 if case == "A" else 20):
                check(await run())
            runs = 1 if case == "A" else args.b_runs
            repeats = args.a_repeats if case == "A" else args.b_repeats
            for _ in range(repeats):
                c0, t0 = time.process_time(), time.perf_counter()
                for _ in range(runs):
                    check(await run())
                samples.append((time.perf_counter() - t0) / runs)
                cpu.append((time.process_time() - c0) / runs)
    finally:
        await close()
    return {
        "samples": samples,
        "median": statistics.median(samples),
        "cpu": cpu,
        "check": check.summary(),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    cases = {case: await measure(args, case) for case in args.cases.split(",")}
    return {
        "impl": args.impl,
        "version": version("dataknobs-fsm"),
        "aiohttp": version("aiohttp"),
        "python": platform.python_version(),
        "cases": cases,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("cases", help="comma list of A, B, C")
    parser.add_argument("--impl", choices=["dataknobs", "aiohttp"], default="dataknobs")
    parser.add_argument("--a-repeats", type=int, default=5)
    parser.add_argument("--b-repeats", type=int, default=5)
    parser.add_argument("--b-runs", type=int, default=50)
    parser.add_argument("--c-repeats", type=int, default=5)
    parser.add_argument("--c-runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse()))))
