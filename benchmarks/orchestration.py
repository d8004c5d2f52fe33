"""lamina's APIOrchestrator vs hand-written asyncio.gather vs dataknobs-fsm, one run.

Run: ``python benchmarks/orchestration.py [--quick] [--peer-python PATH] [--no-profile]``.

One loopback server (``python -m lamina.testing``) in its own process serves all
three contenders, which do the same work (GET, check the status, parse JSON):

- **lamina**: ``APIOrchestrator`` with its default layers (cache off);
- **gather**: ``asyncio.gather`` (or a loop, for SEQUENTIAL) over one bare
  ``httpx.AsyncClient``, the baseline of every ratio;
- **dataknobs-fsm**: its ``APIOrchestrator.orchestrate()``, run by
  ``benchmarks/_peer_dataknobs.py`` in the peer's virtualenv (Python >= 3.12).

Cases: A. PARALLEL, 5 endpoints of 100 ms, wall time per run; B. SEQUENTIAL, 5
fast endpoints, ms per run; C. 1,000 PARALLEL runs of 5 fast endpoints, 50 at a
time: seconds and runs/s. Medians of repeats; lamina and gather alternate within
each repeat. Then a pyinstrument profile of lamina in B and C (own time). Tables
are printed and written to ``benchmarks/results/orchestration.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _util import server_process, table

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEER_SCRIPT = HERE / "_peer_dataknobs.py"
DEFAULT_PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PEER_INSTALL = (
    "/root/.pyenv/versions/3.12.1/bin/python -m venv .venv-peer && "
    ".venv-peer/bin/pip install 'dataknobs-fsm[http]==0.5.0'"
)
N_ENDPOINTS = 5


@dataclass
class Sizes:
    """How much work each case does."""

    a_repeats: int
    b_repeats: int
    b_runs: int  # runs per B sample (the sample is their mean)
    c_repeats: int
    c_runs: int
    c_concurrency: int = 50


FULL = Sizes(a_repeats=15, b_repeats=9, b_runs=100, c_repeats=5, c_runs=1000)
QUICK = Sizes(a_repeats=5, b_repeats=5, b_runs=40, c_repeats=5, c_runs=200)


# -- the two in-process contenders ---------------------------------------------
def urls(base: str, case: str) -> list[str]:
    query = "ms=100&" if case == "A" else ""
    return [f"{base}/json?{query}i={i}" for i in range(N_ENDPOINTS)]


def lamina_orchestrator(base: str, case: str) -> APIOrchestrator:
    endpoints = [APIEndpoint(name=f"e{i}", url=u) for i, u in enumerate(urls(base, case))]
    mode = OrchestrationMode.SEQUENTIAL if case == "B" else OrchestrationMode.PARALLEL
    return APIOrchestrator(APIOrchestrationConfig(endpoints=endpoints, mode=mode))


def check(result: dict[str, Any]) -> None:
    """Every run must hold the 5 responses, each from its own endpoint."""
    for i in range(N_ENDPOINTS):
        value = result.get(f"e{i}")
        if not (isinstance(value, dict) and value.get("query", {}).get("i") == str(i)):
            raise AssertionError(f"run lacks e{i}: {value!r}")


Runner = Callable[[], Awaitable[dict[str, Any]]]


def gather_run(client: httpx.AsyncClient, targets: list[str], *, sequential: bool) -> Runner:
    async def one(url: str) -> Any:
        response = await client.get(url)
        response.raise_for_status()
        return response.json()

    async def run() -> dict[str, Any]:
        if sequential:
            values = [await one(u) for u in targets]
        else:
            values = await asyncio.gather(*(one(u) for u in targets))
        return {f"e{i}": v for i, v in enumerate(values)}

    return run


async def time_runs(run: Runner, runs: int) -> tuple[float, float]:
    """Wall and CPU seconds per run, over ``runs`` runs one after another."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(runs):
        check(await run())
    return (time.perf_counter() - t0) / runs, (time.process_time() - c0) / runs


async def time_batch(run: Runner, runs: int, concurrency: int) -> tuple[float, float]:
    """Wall and CPU seconds for ``runs`` runs, ``concurrency`` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            check(await run())

    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(runs)))
    return time.perf_counter() - t0, time.process_time() - c0


@dataclass
class Samples:
    wall: list[float]
    cpu: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


async def measure(base: str, case: str, sizes: Sizes) -> dict[str, Samples]:
    """lamina and gather, alternating within each repeat (plus one bare call for A)."""
    client = httpx.AsyncClient()
    orchestrator = lamina_orchestrator(base, case)
    contenders: dict[str, Runner] = {
        "lamina": orchestrator.execute,
        "gather": gather_run(client, urls(base, case), sequential=case == "B"),
    }
    out = {name: Samples([], []) for name in contenders}
    try:
        if case == "A":
            for run in contenders.values():
                await time_runs(run, 2)  # warm up: connections, imports
            single = Samples([], [])
            out["one call"] = single
            for _ in range(sizes.a_repeats):
                t0 = time.perf_counter()
                (await client.get(urls(base, "A")[0])).raise_for_status()
                single.wall.append(time.perf_counter() - t0)
                single.cpu.append(0.0)
                for name, run in contenders.items():
                    wall, cpu = await time_runs(run, 1)
                    out[name].wall.append(wall)
                    out[name].cpu.append(cpu)
        elif case == "B":
            for run in contenders.values():
                await time_runs(run, 20)
            for _ in range(sizes.b_repeats):
                for name, run in contenders.items():
                    wall, cpu = await time_runs(run, sizes.b_runs)
                    out[name].wall.append(wall)
                    out[name].cpu.append(cpu)
        else:
            for run in contenders.values():
                await time_batch(run, sizes.c_concurrency * 2, sizes.c_concurrency)
            for _ in range(sizes.c_repeats):
                for name, run in contenders.items():
                    wall, cpu = await time_batch(run, sizes.c_runs, sizes.c_concurrency)
                    out[name].wall.append(wall)
                    out[name].cpu.append(cpu)
    finally:
        await orchestrator.aclose()
        await client.aclose()
    return out


# -- the peer, in its own virtualenv ---------------------------------------------
def peer_status(python: Path) -> str | None:
    """None when the peer can run, else why not."""
    if not python.exists():
        return f"peer not installed: {PEER_INSTALL} (or pass --peer-python PATH)"
    probe = subprocess.run(
        [str(python), "-c", "import aiohttp, dataknobs_fsm.patterns.api_orchestration"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"peer not installed ({last}): {PEER_INSTALL}"
    return None


def run_peer(python: Path, base: str, case: str, sizes: Sizes) -> dict[str, Any]:
    if case == "A":
        extra = ["--repeats", str(sizes.a_repeats), "--warmup", "2"]
    elif case == "B":
        extra = ["--repeats", str(sizes.b_repeats), "--runs", str(sizes.b_runs), "--warmup", "20"]
    else:
        extra = [
            "--repeats",
            str(sizes.c_repeats),
            "--runs",
            str(sizes.c_runs),
            "--concurrency",
            str(sizes.c_concurrency),
            "--warmup",
            str(sizes.c_concurrency * 2),
        ]
    proc = subprocess.run(
        [str(python), str(PEER_SCRIPT), base, case, *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-1:])
        return {"error": f"peer failed (exit {proc.returncode}): {tail}"[:300]}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- tables ----------------------------------------------------------------------
PEER_LABEL = "dataknobs-fsm"


def peer_cells(peer: dict[str, Any] | str, fmt: Callable[[float, float], list[str]]) -> list[str]:
    """The peer's cells, or its problem in the first cell."""
    if isinstance(peer, str) or "error" in peer:
        reason = peer if isinstance(peer, str) else peer["error"]
        return [reason]
    cells = fmt(peer["median"], statistics.median(peer["cpu"]))
    bad = peer["check"]["bad_runs"]
    if bad:
        cells[-1] += f" ({bad}/{peer['check']['runs']} runs INCOMPLETE: {peer['check']['example']})"
    return cells


def pad(cells: list[str], width: int) -> list[str]:
    return cells + [""] * (width - len(cells))


def case_a(res: dict[str, Samples], peer: dict[str, Any] | str) -> str:
    one = res["one call"].median
    base = res["gather"].median

    def fmt(wall: float, cpu: float) -> list[str]:
        return [f"{wall * 1e3:.1f}", f"{(wall - one) * 1e3:+.1f}", f"{wall / base:.2f}"]

    rows: list[list[object]] = [["one bare call (100 ms)", *fmt(one, 0)[:2], "-"]]
    rows += [["gather (httpx)", *fmt(base, 0)], ["lamina", *fmt(res["lamina"].median, 0)]]
    rows.append([PEER_LABEL, *pad(peer_cells(peer, fmt), 3)])
    headers = ["A: PARALLEL 5 x 100 ms", "ms/run", "vs one call (ms)", "ratio to gather"]
    return table(headers, rows)


def case_b(res: dict[str, Samples], peer: dict[str, Any] | str) -> str:
    base = res["gather"].median

    def fmt(wall: float, cpu: float) -> list[str]:
        over = (wall - base) / N_ENDPOINTS * 1e6
        return [f"{wall * 1e3:.2f}", f"{cpu * 1e3:.2f}", f"{over:+.0f}", f"{wall / base:.2f}"]

    rows: list[list[object]] = [
        ["gather (httpx, loop)", *fmt(base, res["gather"].cpu_median)],
        ["lamina", *fmt(res["lamina"].median, res["lamina"].cpu_median)],
        [PEER_LABEL, *pad(peer_cells(peer, fmt), 4)],
    ]
    headers = [
        "B: SEQUENTIAL 5 x /json",
        "ms/run",
        "client CPU ms/run",
        "µs/call over gather",
        "ratio to gather",
    ]
    return table(headers, rows)


def case_c(res: dict[str, Samples], peer: dict[str, Any] | str, sizes: Sizes) -> str:
    base = res["gather"].median
    runs = sizes.c_runs

    def fmt(wall: float, cpu: float) -> list[str]:
        return [
            f"{wall:.2f}",
            f"{runs / wall:.0f}",
            f"{cpu / runs * 1e3:.2f}",
            f"{base / wall:.2f}",
        ]

    rows: list[list[object]] = [
        ["gather (httpx)", *fmt(base, res["gather"].cpu_median)],
        ["lamina", *fmt(res["lamina"].median, res["lamina"].cpu_median)],
        [PEER_LABEL, *pad(peer_cells(peer, fmt), 4)],
    ]
    headers = [
        f"C: {runs} runs x 5 /json, {sizes.c_concurrency} at a time",
        "seconds",
        "runs/s",
        "client CPU ms/run",
        "throughput vs gather",
    ]
    return table(headers, rows)


def verdicts(results: dict[str, dict[str, Samples]]) -> str:
    a = results["A"]
    over = (a["lamina"].median - a["one call"].median) * 1e3
    c = results["C"]
    thr = c["gather"].median / c["lamina"].median
    return (
        f"- A target (lamina within 15 ms of one call): {over:+.1f} ms -> "
        f"{'met' if over <= 15 else 'MISSED'}\n"
        f"- C target (lamina >= 0.85x gather throughput): {thr:.2f}x -> "
        f"{'met' if thr >= 0.85 else 'MISSED'}"
    )


# -- profile -------------------------------------------------------------------------
IDLE = {("select", "selectors.py"), ("poll", "selectors.py")}


async def profile(base: str, sizes: Sizes) -> str:
    """pyinstrument over lamina alone in B and C: the top 10 functions by own time."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return "pyinstrument not installed: `pip install pyinstrument` to profile lamina."
    parts = []
    for case in ("B", "C"):
        orchestrator = lamina_orchestrator(base, case)
        try:
            run = orchestrator.execute
            await time_runs(run, 20)
            profiler = Profiler(interval=0.0002, async_mode="disabled")
            profiler.start()
            if case == "B":
                await time_runs(run, sizes.b_runs * 3)
            else:
                await time_batch(run, sizes.c_runs // 2, sizes.c_concurrency)
            profiler.stop()
        finally:
            await orchestrator.aclose()
        parts.append(hot_spots(profiler, case))
    return "\n\n".join(parts)


def hot_spots(profiler: Any, case: str) -> str:
    root = profiler.last_session.root_frame()
    own: dict[tuple[str, str], float] = {}
    total = root.time
    stack = [root]
    while stack:
        frame = stack.pop()
        stack.extend(frame.children)
        if frame.is_synthetic:
            continue
        key = (frame.function, _short(frame.file_path or ""), str(frame.line_no))
        own[key] = own.get(key, 0.0) + frame.total_self_time
    idle = sum(t for (fn, f, _), t in own.items() if (fn, f.rsplit("/", 1)[-1]) in IDLE)
    busy = [(k, t) for k, t in own.items() if (k[0], k[1].rsplit("/", 1)[-1]) not in IDLE]
    busy.sort(key=lambda kv: -kv[1])
    rows: list[list[object]] = [
        [fn, f"{path}:{line}", f"{t / total * 100:.1f}"] for (fn, path, line), t in busy[:10]
    ]
    lamina = [(k, t) for k, t in busy if "lamina/" in k[1]]
    share = sum(t for _, t in lamina) / total * 100
    head = (
        f"Case {case}: {total:.2f} s sampled, {idle / total * 100:.0f}% idle in the selector "
        f"(waiting for the server), {share:.1f}% own time in lamina's files.\n\n"
    )
    top = table([f"{case}: top 10 by own time", "file:line", "% of time"], rows)
    lam_rows: list[list[object]] = [
        [fn, f"{path}:{line}", f"{t / total * 100:.1f}"] for (fn, path, line), t in lamina[:10]
    ]
    lam = table([f"{case}: top 10 in lamina", "file:line", "% of time"], lam_rows)
    return head + top + "\n\n" + lam


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail if marker != "/lib/python3" else "stdlib/" + tail.split("/", 1)[-1]
    return path


# -- main ------------------------------------------------------------------------------
async def measure_all(base: str, sizes: Sizes) -> dict[str, dict[str, Samples]]:
    return {case: await measure(base, case, sizes) for case in ("A", "B", "C")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~30 s version")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "orchestration.md")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()

    peer_problem = peer_status(args.peer_python)
    with server_process() as base:
        results = asyncio.run(measure_all(base, sizes))
        peers: dict[str, dict[str, Any] | str] = {}
        for case in ("A", "B", "C"):
            peers[case] = peer_problem or run_peer(args.peer_python, base, case, sizes)
        prof = None if args.no_profile else asyncio.run(profile(base, sizes))

    version = next(
        (p["version"] for p in peers.values() if isinstance(p, dict) and "version" in p), None
    )
    peer_py = (
        subprocess.run(
            [str(args.peer_python), "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if peer_problem is None
        else "-"
    )
    header = (
        f"# Orchestration: lamina vs asyncio.gather vs dataknobs-fsm\n\n"
        f"{'quick' if args.quick else 'full'} run; lamina and gather on Python "
        f"{platform.python_version()} (httpx {httpx.__version__}), "
        f"dataknobs-fsm {version or '-'} on Python {peer_py}; one loopback server "
        f"process. Medians of {sizes.a_repeats} (A), {sizes.b_repeats} x {sizes.b_runs} "
        f"runs (B), {sizes.c_repeats} (C) repeats."
    )
    sections = [
        header,
        "## A. PARALLEL, 5 endpoints of 100 ms\n\n" + case_a(results["A"], peers["A"]),
        "## B. SEQUENTIAL, 5 fast endpoints\n\n" + case_b(results["B"], peers["B"]),
        "## C. Throughput\n\n" + case_c(results["C"], peers["C"], sizes),
        "## Targets\n\n" + verdicts(results),
    ]
    if prof is not None:
        sections.append("## Profile of lamina (pyinstrument, own time)\n\n" + prof)
    sections.append(f"_Total runtime {time.perf_counter() - started:.0f} s._")
    text = "\n\n".join(sections) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
