"""The peer side of ``benchmarks/orchestration.py`` and ``run_all.py``: dataknobs-fsm's
APIOrchestrator, and lamina on the same interpreter.

Runs in the peer's own virtualenv (dataknobs-fsm 0.5.0 needs Python >= 3.12). Usage::

    .venv-peer/bin/python benchmarks/_peer_dataknobs.py URL CASES [--impl IMPLS] [sizes]

CASES is a comma list of ``A`` (PARALLEL, 5 x ``/json?ms=100``: seconds per
run), ``B`` (SEQUENTIAL, 5 x ``/json``: seconds per run, mean over ``--b-runs``)
and ``C`` (PARALLEL, 5 x ``/json``, ``--c-runs`` runs, ``--concurrency`` at a
time: total seconds). IMPLS is a comma list: ``dataknobs`` (default) drives
``APIOrchestrator.orchestrate()``; ``aiohttp`` is a hand-written ``asyncio.gather``
over one ``aiohttp.ClientSession``, the same client library dataknobs-fsm uses;
``lamina`` is lamina's ``APIOrchestrator`` on its aiohttp transport (default stack,
cache off), imported only then (install lamina into this virtualenv:
``pip install -e '.[aiohttp]'``). Several IMPLS take turns within every repeat, in an
order that rotates from repeat to repeat. Prints one JSON object: versions and, per
impl (``impls``; the first also as ``cases``) and case, the per-repeat ``samples``
(wall seconds), ``cpu`` (process CPU seconds), ``check``: how many runs lacked one
of the 5 expected responses, ``gc``: per generation of the garbage collector, the
collections during that impl's repeats and the CPU seconds they took, and ``gc_cpu``:
the collector's part of each ``cpu`` sample.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
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


class GcTime:
    """Collections and the CPU they took, per generation, while ``impl`` is set."""

    def __init__(self) -> None:
        self.impl: str | None = None
        self.by_impl: dict[str, list[list[float]]] = {}
        self.spent = 0.0  # CPU seconds of every collection so far
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if self.impl is None:
            return
        if phase == "start":
            self._started = time.process_time()
            return
        spent = time.process_time() - self._started
        gens = self.by_impl.setdefault(self.impl, [[0, 0.0], [0, 0.0], [0, 0.0]])
        gens[info["generation"]][0] += 1
        gens[info["generation"]][1] += spent
        self.spent += spent


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


def lamina_aiohttp(base: str, case: str) -> tuple[Runner, Callable[[], Awaitable[None]]]:
    """lamina's APIOrchestrator on its aiohttp transport: default stack, cache off."""
    from lamina import APIEndpoint as LEndpoint
    from lamina import APIOrchestrationConfig as LConfig
    from lamina import APIOrchestrator as LOrchestrator
    from lamina import OrchestrationMode as LMode

    endpoints = [LEndpoint(name=f"e{i}", url=u) for i, u in enumerate(urls(base, case))]
    mode = LMode.SEQUENTIAL if case == "B" else LMode.PARALLEL
    orchestrator = LOrchestrator(LConfig(endpoints=endpoints, mode=mode), transport="aiohttp")
    return orchestrator.execute, orchestrator.aclose


IMPLS = {"dataknobs": dataknobs, "aiohttp": aiohttp_gather, "lamina": lamina_aiohttp}


async def measure(args: argparse.Namespace, case: str, impls: list[str]) -> dict[str, Any]:
    """Every impl in ``impls`` on ``case``, taking turns within each repeat."""
    made = {impl: IMPLS[impl](args.url, case) for impl in impls}
    checks = {impl: Checker() for impl in impls}
    samples: dict[str, list[float]] = {impl: [] for impl in impls}
    cpu: dict[str, list[float]] = {impl: [] for impl in impls}
    gc_cpu: dict[str, list[float]] = {impl: [] for impl in impls}
    repeats = {"A": args.a_repeats, "B": args.b_repeats, "C": args.c_repeats}[case]
    collections = GcTime()

    async def batch(impl: str, runs: int) -> None:
        run, check = made[impl][0], checks[impl]
        sem = asyncio.Semaphore(args.concurrency)

        async def one() -> None:
            async with sem:
                check(await run())

        await asyncio.gather(*(one() for _ in range(runs)))

    async def in_turn(impl: str, runs: int) -> None:
        run, check = made[impl][0], checks[impl]
        for _ in range(runs):
            check(await run())

    try:
        for impl in impls:  # warm up: connections, first-use costs
            if case == "C":
                await batch(impl, args.concurrency * 2)
            else:
                await in_turn(impl, 2 if case == "A" else 20)
        for i in range(args.offset, args.offset + repeats):
            k = i % len(impls)
            for impl in impls[k:] + impls[:k]:
                collections.impl = impl
                g0, c0, t0 = collections.spent, time.process_time(), time.perf_counter()
                if case == "C":
                    await batch(impl, args.c_runs)
                    samples[impl].append(time.perf_counter() - t0)
                    cpu[impl].append(time.process_time() - c0)
                    gc_cpu[impl].append(collections.spent - g0)
                else:
                    runs = 1 if case == "A" else args.b_runs
                    await in_turn(impl, runs)
                    samples[impl].append((time.perf_counter() - t0) / runs)
                    cpu[impl].append((time.process_time() - c0) / runs)
                    gc_cpu[impl].append((collections.spent - g0) / runs)
                collections.impl = None
    finally:
        gc.callbacks.remove(collections._callback)
        for _, close in made.values():
            await close()
    return {
        impl: {
            "samples": samples[impl],
            "median": statistics.median(samples[impl]),
            "cpu": cpu[impl],
            "check": checks[impl].summary(),
            # per generation: [collections, CPU seconds] over all repeats
            "gc": collections.by_impl.get(impl, [[0, 0.0], [0, 0.0], [0, 0.0]]),
            "gc_cpu": gc_cpu[impl],  # the part of each ``cpu`` sample the collector took
        }
        for impl in impls
    }


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


async def main(args: argparse.Namespace) -> dict[str, Any]:
    impls = args.impl.split(",")
    unknown = [i for i in impls if i not in IMPLS]
    if unknown:
        raise SystemExit(f"unknown --impl {unknown}; choose from {', '.join(IMPLS)}")
    per_case = {case: await measure(args, case, impls) for case in args.cases.split(",")}
    by_impl = {impl: {case: per_case[case][impl] for case in per_case} for impl in impls}
    return {
        "impl": impls[0],
        "version": version("dataknobs-fsm"),
        "aiohttp": version("aiohttp"),
        "lamina": _version("lamina"),
        "python": platform.python_version(),
        "cases": by_impl[impls[0]],
        "impls": by_impl,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("cases", help="comma list of A, B, C")
    parser.add_argument(
        "--impl", default="dataknobs", help="comma list: dataknobs, aiohttp, lamina"
    )
    parser.add_argument("--offset", type=int, default=0, help="first repeat's rotation")
    parser.add_argument("--a-repeats", type=int, default=5)
    parser.add_argument("--b-repeats", type=int, default=5)
    parser.add_argument("--b-runs", type=int, default=50)
    parser.add_argument("--c-repeats", type=int, default=5)
    parser.add_argument("--c-runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse()))), flush=True)
    os._exit(0)  # no finalization: pyreqwest's threads (if lamina loaded it) can abort it
