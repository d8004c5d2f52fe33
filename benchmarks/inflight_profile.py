"""CPU per call of issue 13's rows 3-5 shape as the runs in flight grow: lamina's
PARALLEL orchestrator on its aiohttp transport against a hand-written ``asyncio.gather``
over one ``aiohttp.ClientSession``, 5 ``GET /json`` per run, K runs at a time.

Run (any venv with lamina[aiohttp]; rows 3-5 use ``.venv-peer``)::

    python benchmarks/inflight_profile.py [--in-flight 1,5,10,50] [--rounds 7] [--runs 200]
        [--impl lamina,gather] [--url URL] [--profile IMPL@K] [--counts]

Per round every contender runs ``--runs`` runs at each K, in an order that rotates;
reported: median CPU µs per call (``time.process_time``) and its ratio to the gather in
the same round. ``--counts`` adds, per call: tasks created, connections opened, loop
iterations (``select`` calls), and the collections of each generation of the garbage
collector with the CPU they took. ``--profile lamina@50`` prints a cProfile of that
contender (top functions by own time) instead of timing. ``--gc off|freeze`` switches
the collector off, or freezes what the warm-up left, before measuring.
``lamina-ParseLayer+TimeoutLayer`` is the default stack without those layers.

Instruction counts, which other load on the machine does not change (the server runs
outside valgrind)::

    valgrind --tool=callgrind --callgrind-out-file=DIR/cg.%p \
        .venv-peer/bin/python benchmarks/inflight_profile.py --callgrind DIR \
        --rounds 2 --runs 200 --in-flight 1,50

prints instructions per call (median over rounds); the dump files in DIR, one per
contender and round (``desc: Trigger: dump lamina@50``), give the rest:
``callgrind_annotate --inclusive=yes FILE | grep gc_collect_main`` the collector's
share, and the ``calls=`` lines into ``_PyObject_GC_Link`` the objects the collector
tracks, allocated per call.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import glob
import importlib
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import server_process, table

N = 5
Run = Callable[[], Awaitable[Any]]


def urls(base: str) -> list[str]:
    return [f"{base}/json?i={i}" for i in range(N)]


def gather(base: str, **_: Any) -> tuple[Run, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession()
    targets = urls(base)

    async def one(url: str) -> Any:
        async with session.get(url) as response:
            response.raise_for_status()
            return await response.json()

    async def run() -> Any:
        values = await asyncio.gather(*(one(u) for u in targets))
        return {f"e{i}": v for i, v in enumerate(values)}

    return run, session.close


def lamina(base: str, *, drop: str = "", **_: Any) -> tuple[Run, Callable[[], Awaitable[None]]]:
    from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode

    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name=f"e{i}", url=u) for i, u in enumerate(urls(base))],
        mode=OrchestrationMode.PARALLEL,
    )
    layers = None
    if drop:
        dropped = set(drop.split("+"))

        def layers(endpoint: Any, config: Any) -> list[Any]:
            return [
                layer
                for layer in APIOrchestrator.default_layers(endpoint, config)
                if type(layer).__name__ not in dropped
            ]

    orchestrator = APIOrchestrator(config, transport="aiohttp", layers=layers)
    return orchestrator.execute, orchestrator.aclose


IMPLS = {"gather": gather, "lamina": lamina}


class Counts:
    """Tasks created, connections opened, loop iterations, collections (while on)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.on = False
        self.tasks = self.connections = self.selects = 0
        self.gcs = 0
        self.gc_time = 0.0
        self.full = 0
        self.by_gen = [[0, 0.0], [0, 0.0], [0, 0.0]]
        self._gen = 0
        self._gc_started = 0.0
        make_task = asyncio.Task

        def factory(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            if self.on:
                self.tasks += 1
            return make_task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        create_connection = loop.create_connection

        async def counting(*args: Any, **kwargs: Any) -> Any:
            if self.on:
                self.connections += 1
            return await create_connection(*args, **kwargs)

        loop.create_connection = counting  # type: ignore[method-assign]
        selector = loop._selector  # type: ignore[attr-defined]
        select = selector.select

        def counting_select(timeout: Any = None) -> Any:
            if self.on:
                self.selects += 1
            return select(timeout)

        selector.select = counting_select
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if not self.on:
            return
        if phase == "start":
            self.gcs += 1
            self.full += info["generation"] == 2
            self._gen = info["generation"]
            self._gc_started = time.process_time()
        else:
            spent = time.process_time() - self._gc_started
            self.gc_time += spent
            self.by_gen[self._gen][0] += 1
            self.by_gen[self._gen][1] += spent

    def reset(self) -> None:
        self.tasks = self.connections = self.selects = self.gcs = self.full = 0
        self.gc_time = 0.0
        self.by_gen = [[0, 0.0], [0, 0.0], [0, 0.0]]

    def snapshot(self) -> list[float]:
        return [
            self.tasks,
            self.connections,
            self.selects,
            *(n for n, _ in self.by_gen),
            *(t for _, t in self.by_gen),
        ]


async def batch(run: Run, runs: int, in_flight: int) -> None:
    if in_flight == 1:
        for _ in range(runs):
            await run()
        return
    sem = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with sem:
            await run()

    await asyncio.gather(*(one() for _ in range(runs)))


def dump(tag: str) -> None:
    """Make callgrind write its counts since the last dump, tagged (``callgrind_control``)."""
    subprocess.run(
        ["callgrind_control", "-d", tag, str(os.getpid())], check=True, capture_output=True
    )


def callgrind_totals(directory: str) -> dict[str, list[int]]:
    """Instructions per dump tag, from this process's dump files in ``directory``."""
    found: dict[str, list[int]] = {}
    for path in sorted(glob.glob(os.path.join(directory, f"*.{os.getpid()}.*"))):
        tag = total = None
        with open(path) as file:
            for line in file:
                if line.startswith("desc: Trigger: dump "):
                    tag = line.split("dump ", 1)[1].strip()
                elif line.startswith("totals: "):
                    total = int(line.split()[1])
                    break
        if tag is not None and total is not None:
            found.setdefault(tag, []).append(total)
    return found


async def callgrind_rounds(
    args: argparse.Namespace, made: dict[str, Any], levels: list[int], names: list[str]
) -> None:
    """Instruction counts per call (under ``valgrind --tool=callgrind``): load-independent."""
    for r in range(args.rounds):
        for k in levels:
            for name in names[r % len(names) :] + names[: r % len(names)]:
                dump("between")
                await batch(made[name][0], args.runs, k)
                dump(f"{name}@{k}")
    totals = callgrind_totals(args.callgrind)
    calls = args.runs * N
    rows = []
    for k in levels:
        base = statistics.median(totals[f"{names[0]}@{k}"]) / calls
        for name in names:
            per_call = statistics.median(totals[f"{name}@{k}"]) / calls
            rows.append([name, k, f"{per_call / 1000:.1f}", f"{per_call / base:.2f}x"])
    print(f"callgrind: {args.rounds} rounds of {args.runs} runs x {N} calls, medians")
    print(table(["contender", "runs in flight", "k instructions/call", f"/ {names[0]}"], rows))


async def main(args: argparse.Namespace) -> None:
    levels = [int(k) for k in args.in_flight.split(",")]
    names = args.impl.split(",")
    made = {}
    for name in names:
        impl, _, drop = name.partition("-")
        made[name] = IMPLS[impl](args.url, drop=drop)
    counts = Counts(asyncio.get_running_loop()) if args.counts else None
    try:
        for name in names:  # warm up: connections, first use
            await batch(made[name][0], 200, 50)
        if args.gc == "off":
            gc.disable()
        elif args.gc == "freeze":
            gc.collect()
            gc.freeze()
        if args.profile:
            name, _, k = args.profile.partition("@")
            profiler = cProfile.Profile()
            profiler.enable()
            await batch(made[name][0], args.runs, int(k))
            profiler.disable()
            stats = pstats.Stats(profiler)
            print(f"{name} @{k}: {args.runs} runs of {N} calls")
            stats.sort_stats("tottime").print_stats(args.top)
            return
        if args.callgrind:
            await callgrind_rounds(args, made, levels, names)
            return
        cpu: dict[tuple[str, int], list[float]] = {}
        ratio: dict[tuple[str, int], list[float]] = {}
        extra: dict[tuple[str, int], list[float]] = {}
        for r in range(args.rounds):
            for k in levels:
                order = names[r % len(names) :] + names[: r % len(names)]
                got = {}
                for name in order:
                    run = made[name][0]
                    if counts is not None:
                        counts.reset()
                        counts.on = True
                    c0 = time.process_time()
                    await batch(run, args.runs, k)
                    got[name] = (time.process_time() - c0) / (args.runs * N) * 1e6
                    if counts is not None:
                        counts.on = False
                        sums = extra.setdefault((name, k), [0.0] * 9)
                        for i, v in enumerate(counts.snapshot()):
                            sums[i] += v
                    cpu.setdefault((name, k), []).append(got[name])
                base = got.get(names[0])
                for name in names:
                    if base:
                        ratio.setdefault((name, k), []).append(got[name] / base)
        headers = ["contender", "runs in flight", "CPU µs/call", f"/ {names[0]} (same round)"]
        if counts is not None:
            headers += [
                "tasks/call",
                "conns/call",
                "selects/call",
                "GCs gen0/1/2 per 1000 calls",
                "GC µs/call gen0/1/2",
            ]
        rows = []
        for k in levels:
            for name in names:
                row: list[object] = [
                    name,
                    k,
                    f"{statistics.median(cpu[(name, k)]):.1f}",
                    f"{statistics.median(ratio[(name, k)]):.2f}x",
                ]
                if counts is not None:
                    calls = args.rounds * args.runs * N
                    per = [x / calls for x in extra[(name, k)]]
                    row += [
                        f"{per[0]:.2f}",
                        f"{per[1]:.3f}",
                        f"{per[2]:.3f}",
                        "/".join(f"{x * 1000:.1f}" for x in per[3:6]),
                        "/".join(f"{x * 1e6:.1f}" for x in per[6:9]),
                    ]
                rows.append(row)
        print(
            f"{args.rounds} rounds of {args.runs} runs x {N} calls; python {sys.version.split()[0]}"
        )
        print(table(headers, rows))
    finally:
        for _, close in made.values():
            await close()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-flight", default="1,5,10,50")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument(
        "--impl",
        default="gather,lamina",
        help="comma list: gather, lamina, lamina-Layer1+Layer2 (the default stack without those)",
    )
    parser.add_argument("--url")
    parser.add_argument("--profile", help="IMPL@K: cProfile that contender at K runs in flight")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--counts", action="store_true")
    parser.add_argument(
        "--callgrind",
        metavar="DIR",
        help="count instructions instead of timing: run this script under "
        "valgrind --tool=callgrind --callgrind-out-file=DIR/cg.%%p (see the module doc)",
    )
    parser.add_argument(
        "--import",
        dest="imports",
        default="",
        help="comma list of modules to import first (a larger heap: row 4's process imports "
        "dataknobs_fsm.patterns.api_orchestration)",
    )
    parser.add_argument(
        "--gc",
        choices=("on", "off", "freeze"),
        default="on",
        help="off: gc.disable() after the warm-up; freeze: gc.freeze() after it",
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = parse()
    for module in filter(None, args.imports.split(",")):
        importlib.import_module(module)
    if args.url:
        asyncio.run(main(args))
    else:
        with server_process() as url:
            args.url = url
            asyncio.run(main(args))
