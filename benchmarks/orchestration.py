"""lamina's APIOrchestrator vs hand-written asyncio.gather vs dataknobs-fsm, in one run.

Run: ``python benchmarks/orchestration.py [--quick] [--transport httpx|aiohttp|both]
[--peer-python PATH] [--no-profile]``.

One loopback server (``python -m lamina.testing``) in its own process serves every
contender; each does the same work (GET, check the status, parse the JSON):

- **gather (httpx)**: ``asyncio.gather`` (a loop, for SEQUENTIAL) over one bare
  ``httpx.AsyncClient``: the baseline of every ratio;
- **lamina (httpx)**: ``APIOrchestrator`` with its default layers (cache off);
- **lamina (aiohttp)**, **gather (aiohttp)**: the same over aiohttp
  (``transport="aiohttp"``; one ``aiohttp.ClientSession``), in this process;
- **dataknobs-fsm**: its ``APIOrchestrator.orchestrate()``, run by
  ``benchmarks/_peer_dataknobs.py`` in the peer's virtualenv (Python >= 3.12);
- **gather (aiohttp, peer venv)**, for reference when this process does not run
  aiohttp: the hand-written version in the peer's virtualenv.

Cases: A. PARALLEL, 5 endpoints of 100 ms: wall time per run; B. SEQUENTIAL, 5
fast endpoints: ms per run; C. 1,000 PARALLEL runs of 5 fast endpoints, 50 runs
at a time: seconds and runs/s. Medians of repeats; the in-process contenders
alternate within each repeat. Then a pyinstrument profile of lamina in B and C
(own time per function). The tables are printed and written to
``benchmarks/results/orchestration.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _util import server_process, table

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode

HERE = Path(__file__).resolve().parent
PEER_SCRIPT = HERE / "_peer_dataknobs.py"
DEFAULT_PEER_PYTHON = HERE.parent / ".venv-peer" / "bin" / "python"
PEER_INSTALL = (
    "`/root/.pyenv/versions/3.12.1/bin/python -m venv .venv-peer && "
    ".venv-peer/bin/pip install 'dataknobs-fsm[http]==0.5.0'`"
)
N_ENDPOINTS = 5
CASES = ("A", "B", "C")
Runner = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Sizes:
    """How much work each case does."""

    a_repeats: int
    b_repeats: int
    b_runs: int  # runs per B sample (the sample is their mean)
    c_repeats: int
    c_runs: int
    c_concurrency: int = 50

    def peer_args(self) -> list[str]:
        return [
            *("--a-repeats", str(self.a_repeats), "--b-repeats", str(self.b_repeats)),
            *("--b-runs", str(self.b_runs), "--c-repeats", str(self.c_repeats)),
            *("--c-runs", str(self.c_runs), "--concurrency", str(self.c_concurrency)),
        ]


# C: the brief's shape is 1,000 runs; at httpx's 10-50 runs/s on a busy 2-core machine that
# alone takes 8-15 minutes (5 repeats x 2 contenders), so the default is 200 (--c-runs 1000).
FULL = Sizes(a_repeats=11, b_repeats=7, b_runs=60, c_repeats=5, c_runs=200)
QUICK = Sizes(a_repeats=5, b_repeats=5, b_runs=20, c_repeats=5, c_runs=60)


@dataclass
class Result:
    """Per-repeat wall and CPU seconds of one contender in one case (or why there are none)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    problem: str | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


# -- lamina and gather (httpx), in this process --------------------------------------
def urls(base: str, case: str) -> list[str]:
    query = "ms=100&" if case == "A" else ""
    return [f"{base}/json?{query}i={i}" for i in range(N_ENDPOINTS)]


TRANSPORTS = ("httpx", "aiohttp")


def lamina_orchestrator(base: str, case: str, transport: str = "httpx") -> APIOrchestrator:
    endpoints = [APIEndpoint(name=f"e{i}", url=u) for i, u in enumerate(urls(base, case))]
    mode = OrchestrationMode.SEQUENTIAL if case == "B" else OrchestrationMode.PARALLEL
    config = APIOrchestrationConfig(endpoints=endpoints, mode=mode)
    return APIOrchestrator(config, transport=transport)  # type: ignore[arg-type]


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


def aiohttp_gather_run(session: Any, targets: list[str], *, sequential: bool) -> Runner:
    """The hand-written version over one ``aiohttp.ClientSession``."""

    async def one(url: str) -> Any:
        async with session.get(url) as response:
            response.raise_for_status()
            return json.loads(await response.read())

    async def run() -> dict[str, Any]:
        if sequential:
            values = [await one(u) for u in targets]
        else:
            values = await asyncio.gather(*(one(u) for u in targets))
        return {f"e{i}": v for i, v in enumerate(values)}

    return run


def check(result: dict[str, Any]) -> None:
    """Every run must hold the 5 responses, each from its own endpoint."""
    for i in range(N_ENDPOINTS):
        value = result.get(f"e{i}")
        if not (isinstance(value, dict) and value.get("query", {}).get("i") == str(i)):
            raise AssertionError(f"run lacks e{i}: {value!r}")


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


async def measure(
    base: str, case: str, sizes: Sizes, transports: tuple[str, ...] = ("httpx",)
) -> dict[str, Result]:
    """The in-process contenders, alternating within each repeat; A also times one bare call
    per client ("one call", "one call (aiohttp)")."""
    client = httpx.AsyncClient(timeout=30.0)  # lamina's per-attempt default; no 5 s pool wait
    targets = urls(base, case)
    sequential = case == "B"
    contenders: dict[str, Runner] = {
        "gather (httpx)": gather_run(client, targets, sequential=sequential)
    }
    orchestrators = []
    closers: list[Callable[[], Awaitable[object]]] = [client.aclose]
    session: Any = None
    for transport in transports:
        if transport == "aiohttp":
            import aiohttp

            session = aiohttp.ClientSession()
            closers.append(session.close)
            contenders["gather (aiohttp)"] = aiohttp_gather_run(
                session, targets, sequential=sequential
            )
        orchestrator = lamina_orchestrator(base, case, transport)
        orchestrators.append(orchestrator)
        contenders[f"lamina ({transport})"] = orchestrator.execute
    out = {name: Result() for name in contenders}

    async def sample(run: Runner) -> tuple[float, float]:
        if case == "A":
            return await time_runs(run, 1)
        if case == "B":
            return await time_runs(run, sizes.b_runs)
        return await time_batch(run, sizes.c_runs, sizes.c_concurrency)

    async def one_aiohttp() -> None:
        async with session.get(targets[0]) as response:
            response.raise_for_status()
            await response.read()

    try:
        for run in contenders.values():  # warm up: connections, first-use costs
            if case == "C":
                await time_batch(run, sizes.c_concurrency * 2, sizes.c_concurrency)
            else:
                await time_runs(run, 2 if case == "A" else 20)
        singles: dict[str, Callable[[], Awaitable[object]]] = {}
        if case == "A":
            singles["one call"] = lambda: client.get(targets[0])
            if session is not None:
                singles["one call (aiohttp)"] = one_aiohttp
            out.update({name: Result() for name in singles})
        repeats = {"A": sizes.a_repeats, "B": sizes.b_repeats, "C": sizes.c_repeats}[case]
        for _ in range(repeats):
            for name, single in singles.items():
                t0 = time.perf_counter()
                await single()
                out[name].wall.append(time.perf_counter() - t0)
                out[name].cpu.append(0.0)
            for name, run in contenders.items():
                wall, cpu = await sample(run)
                out[name].wall.append(wall)
                out[name].cpu.append(cpu)
    finally:
        for orchestrator in orchestrators:
            await orchestrator.aclose()
        for close in closers:
            await close()
    return out


# -- the peer, in its own virtualenv ----------------------------------------------------
PEER_IMPLS = {"dataknobs": "dataknobs-fsm", "aiohttp": "gather (aiohttp, peer venv)"}


def peer_problem(python: Path) -> str | None:
    """None when the peer can run, else what to do."""
    if not python.exists():
        return f"peer not installed: {PEER_INSTALL} (or pass --peer-python PATH)"
    probe = subprocess.run(
        [str(python), "-c", "import aiohttp, dataknobs_fsm.patterns.api_orchestration"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"peer not installed ({last}): {PEER_INSTALL}"
    return None


def run_peer(
    python: Path, base: str, impl: str, sizes: Sizes
) -> tuple[dict[str, Result], dict[str, Any]]:
    """All cases of one peer implementation in one subprocess: results and versions."""
    proc = subprocess.run(
        [str(python), str(PEER_SCRIPT), base, ",".join(CASES), "--impl", impl, *sizes.peer_args()],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-1:])
        problem = f"peer failed (exit {proc.returncode}): {tail}"[:300]
        return {case: Result(problem=problem) for case in CASES}, {}
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out = {}
    for case, res in data["cases"].items():
        bad = res["check"]["bad_runs"]
        note = f"{bad}/{res['check']['runs']} runs INCOMPLETE: {res['check']['example']}"
        out[case] = Result(res["samples"], res["cpu"], note=note if bad else "")
    return out, data


# -- tables ----------------------------------------------------------------------------
def rows_for(
    results: dict[str, Result], fmt: Callable[[Result], list[str]], width: int
) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, res in results.items():
        if name.startswith("one call"):
            continue
        if res.problem is not None:
            rows.append([name, res.problem, *[""] * (width - 1)])
            continue
        cells = fmt(res)
        if res.note:
            cells[-1] += f" ({res.note})"
        rows.append([name, *cells])
    return rows


def case_a(results: dict[str, Result]) -> str:
    one = results["one call"].median
    base = results["gather (httpx)"].median

    def fmt(res: Result) -> list[str]:
        wall = res.median
        return [f"{wall * 1e3:.1f}", f"{(wall - one) * 1e3:+.1f}", f"{wall / base:.2f}"]

    rows: list[list[object]] = [["one bare httpx call", f"{one * 1e3:.1f}", "+0.0", "-"]]
    if "one call (aiohttp)" in results:
        one_a = results["one call (aiohttp)"].median
        rows.append(
            ["one bare aiohttp call", f"{one_a * 1e3:.1f}", f"{(one_a - one) * 1e3:+.1f}", "-"]
        )
    rows += rows_for(results, fmt, 3)
    headers = ["A: PARALLEL, 5 x 100 ms", "ms/run", "ms over one call", "ratio to gather (httpx)"]
    return table(headers, rows)


def case_b(results: dict[str, Result]) -> str:
    base = results["gather (httpx)"].median

    def fmt(res: Result) -> list[str]:
        wall = res.median
        over = (wall - base) / N_ENDPOINTS * 1e6
        return [
            f"{wall * 1e3:.2f}",
            f"{res.cpu_median * 1e3:.2f}",
            f"{over:+.0f}",
            f"{wall / base:.2f}",
        ]

    headers = [
        "B: SEQUENTIAL, 5 x /json",
        "ms/run",
        "client CPU ms/run",
        "µs/call over gather (httpx)",
        "ratio to gather (httpx)",
    ]
    return table(headers, rows_for(results, fmt, 4))


def case_c(results: dict[str, Result], sizes: Sizes) -> str:
    base = results["gather (httpx)"].median
    runs = sizes.c_runs
    by_res = {id(res): name for name, res in results.items()}

    def fmt(res: Result) -> list[str]:
        wall = res.median
        cpu = res.cpu_median / runs * 1e3
        name = by_res[id(res)]
        same = "-"
        if name.startswith("lamina (") and f"gather ({client_of(name)})" in results:
            same = f"{c_ratio(results, name, f'gather ({client_of(name)})'):.2f}"
        return [f"{wall:.2f}", f"{runs / wall:.0f}", f"{cpu:.2f}", f"{base / wall:.2f}", same]

    headers = [
        f"C: {runs} runs x 5 /json, {sizes.c_concurrency} at a time",
        "seconds",
        "runs/s",
        "client CPU ms/run",
        "throughput vs gather (httpx)",
        "vs gather, same client",
    ]
    return table(headers, rows_for(results, fmt, 5))


def lamina_names(results: dict[str, Result]) -> list[str]:
    """The lamina rows present, e.g. ``["lamina (httpx)", "lamina (aiohttp)"]``."""
    return [name for name in results if name.startswith("lamina (")]


def client_of(name: str) -> str:
    """``"lamina (aiohttp)"`` -> ``"aiohttp"``."""
    return name.split("(", 1)[1].rstrip(")")


def a_over_one_call(results: dict[str, Result], name: str) -> float:
    """Case A: ms of one run over one bare call with the same client library."""
    key = "one call (aiohttp)" if client_of(name) == "aiohttp" else "one call"
    return (results[name].median - results[key].median) * 1e3


def c_ratio(results: dict[str, Result], name: str, baseline: str = "gather (httpx)") -> float:
    """Case C: throughput of ``name`` relative to ``baseline`` (higher is faster)."""
    return results[baseline].median / results[name].median


def targets(results: dict[str, dict[str, Result]]) -> str:
    lines = []
    a, c = results["A"], results["C"]
    for name in lamina_names(a):
        over = a_over_one_call(a, name)
        gather = f"gather ({client_of(name)})"
        ref = f"; {gather} itself: {a_over_one_call(a, gather):+.1f} ms" if gather in a else ""
        verdict = "met" if over <= 15 else "MISSED"
        lines.append(f"- A: {name} within 15 ms of one call: {over:+.1f} ms ({verdict}{ref})")
    for name in lamina_names(c):
        gather = f"gather ({client_of(name)})"
        ratio = c_ratio(c, name, gather)
        vs_httpx = c_ratio(c, name)
        lines.append(
            f"- C: {name} >= 0.85x the throughput of {gather}: {ratio:.2f}x "
            f"({'met' if ratio >= 0.85 else 'MISSED'}; vs gather (httpx): {vs_httpx:.2f}x)"
        )
    return "\n".join(lines)


# -- profile ---------------------------------------------------------------------------
IDLE = {"epoll.poll", "kqueue.control", "select"}  # the event loop waiting for sockets


async def profile(base: str, sizes: Sizes, transports: tuple[str, ...] = ("httpx",)) -> str:
    """pyinstrument over lamina alone in B and C: the top 10 functions by own time."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return "pyinstrument not installed: `pip install pyinstrument` to profile lamina."
    parts = []
    for transport, case in [(t, c) for t in transports for c in ("B", "C")]:
        orchestrator = lamina_orchestrator(base, case, transport)
        try:
            if case == "B":
                await time_runs(orchestrator.execute, 20)
            else:  # open the connections 50 runs at a time need before profiling
                await time_batch(orchestrator.execute, 100, 50)
            profiler = Profiler(interval=0.001, async_mode="disabled")
            profiler.start()
            if case == "B":
                await time_runs(orchestrator.execute, max(sizes.b_runs * 2, 100))
            else:
                await time_batch(orchestrator.execute, max(sizes.c_runs // 2, 50), 50)
            profiler.stop()
        finally:
            await orchestrator.aclose()
        session = profiler.last_session
        assert session is not None
        parts.append(hot_spots(session.root_frame(), f"{case} ({transport})"))
    return "\n\n".join(parts)


def hot_spots(root: Any, case: str) -> str:
    own: dict[tuple[str, str], float] = {}
    stack = [root]
    while stack:
        frame = stack.pop()
        stack.extend(frame.children)
        if not frame.is_synthetic:
            key = (frame.function, f"{_short(frame.file_path or '')}:{frame.line_no}")
            own[key] = own.get(key, 0.0) + frame.total_self_time
    total = root.time
    idle = sum(t for (fn, where), t in own.items() if _is_idle(fn, where))
    busy = sorted(((k, t) for k, t in own.items() if not _is_idle(*k)), key=lambda kv: -kv[1])
    in_lamina = [(k, t) for k, t in busy if k[1].startswith("lamina/")]

    def rows(items: list[tuple[tuple[str, str], float]]) -> list[list[object]]:
        return [[fn, where, f"{t / total * 100:.1f}"] for (fn, where), t in items[:10]]

    lamina_share = sum(t for _, t in in_lamina) / total * 100
    head = (
        f"Case {case}: {total:.2f} s sampled; {idle / total * 100:.0f}% idle in the selector; "
        f"{lamina_share:.1f}% is own time in lamina's files."
    )
    top = table([f"{case}: top 10, own time", "file:line", "% of time"], rows(busy))
    lam = table([f"{case}: top 10 in lamina", "file:line", "% of time"], rows(in_lamina))
    return f"{head}\n\n{top}\n\n{lam}"


def _is_idle(function: str, where: str) -> bool:
    return function in IDLE and ("selectors" in where or where.startswith("<built-in>"))


def _short(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/src/" in path:
        return path.split("/src/", 1)[1]
    if "/lib/python3" in path:
        return "stdlib/" + path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return path


NOTES = """## Notes

- dataknobs-fsm 0.5.0's PARALLEL mode awaits its endpoint coroutines one after another
  (`for name, task in tasks: results[name] = await task` in `orchestrate`), so case A takes
  about 5 x 100 ms and in case C only 50 of its requests are in flight (250 for the others).
- dataknobs-fsm runs on another Python (its own virtualenv) over aiohttp; compare it with
  the gather (aiohttp) row for the orchestrator's own cost.
- In case C, 250 requests in flight share httpx's default pool of 100 connections; httpcore's
  pool matches every queued request against every connection on each change, which is most
  of the client CPU for both httpx rows (see the profile)."""


# -- main ------------------------------------------------------------------------------
@dataclass
class Report:
    """Everything one run measured."""

    sizes: Sizes
    transports: tuple[str, ...]
    results: dict[str, dict[str, Result]]
    peer_info: dict[str, Any]
    profile: str | None


async def measure_all(
    base: str, sizes: Sizes, transports: tuple[str, ...] = ("httpx",)
) -> dict[str, dict[str, Result]]:
    out = {}
    for case in CASES:
        out[case] = await measure(base, case, sizes, transports)
        progress(f"case {case}: {', '.join(out[case])} done")
    return out


def progress(message: str) -> None:
    print(f"[orchestration] {message}", file=sys.stderr, flush=True)


def run_cases(
    base: str,
    sizes: Sizes,
    *,
    transports: tuple[str, ...] = TRANSPORTS,
    peer_python: Path = DEFAULT_PEER_PYTHON,
    with_profile: bool = True,
) -> Report:
    """Cases A-C against the server at ``base``: in-process contenders, then the peer.

    The peer's hand-written aiohttp reference runs only when this process does not
    measure aiohttp itself.
    """
    problem = peer_problem(peer_python)
    peer_info: dict[str, Any] = {}
    results = asyncio.run(measure_all(base, sizes, transports))
    for impl, label in PEER_IMPLS.items():
        if impl == "aiohttp" and "aiohttp" in transports:
            continue
        if problem is not None:
            if impl == "dataknobs":
                for case in CASES:
                    results[case][label] = Result(problem=problem)
            continue
        peer, info = run_peer(peer_python, base, impl, sizes)
        progress(f"{label} done")
        peer_info = peer_info or info
        for case in CASES:
            results[case][label] = peer[case]
    prof = asyncio.run(profile(base, sizes, transports)) if with_profile else None
    return Report(sizes, transports, results, peer_info, prof)


def describe(report: Report) -> str:
    """One sentence: versions and sample sizes."""
    info, sizes = report.peer_info, report.sizes
    peer_desc = (
        f"dataknobs-fsm {info['version']} (aiohttp {info['aiohttp']}) on Python {info['python']}"
        if info
        else "dataknobs-fsm: not run"
    )
    clients = f"httpx {httpx.__version__}"
    if "aiohttp" in report.transports:
        from importlib.metadata import version

        clients += f", aiohttp {version('aiohttp')}"
    return (
        f"lamina and the hand-written gathers on Python {platform.python_version()} ({clients}); "
        f"{peer_desc}. One loopback server process. Medians of {sizes.a_repeats} (A), "
        f"{sizes.b_repeats} x {sizes.b_runs} runs (B), {sizes.c_repeats} (C) repeats."
    )


def render(report: Report, quick: bool, runtime: float | None = None) -> str:
    """The whole Markdown report."""
    results = report.results
    sections = [
        "# Orchestration: lamina vs asyncio.gather vs dataknobs-fsm\n\n"
        f"{'Quick' if quick else 'Full'} run. {describe(report)}",
        "## A. PARALLEL, 5 endpoints of 100 ms\n\n" + case_a(results["A"]),
        "## B. SEQUENTIAL, 5 fast endpoints\n\n" + case_b(results["B"]),
        "## C. Throughput, PARALLEL runs\n\n" + case_c(results["C"], report.sizes),
        "## Targets\n\n" + targets(results),
        NOTES,
    ]
    if report.profile is not None:
        sections.append("## Profile of lamina (pyinstrument, own time)\n\n" + report.profile)
    if runtime is not None:
        sections.append(f"_Runtime {runtime:.0f} s._")
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run, same shape")
    parser.add_argument("--transport", choices=["httpx", "aiohttp", "both"], default="both")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--c-runs", type=int, help="runs per C sample (default 200; quick 60)")
    parser.add_argument("--no-profile", action="store_true", help="skip the pyinstrument part")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "orchestration.md")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.c_runs:
        sizes = dataclasses.replace(sizes, c_runs=args.c_runs)
    transports = TRANSPORTS if args.transport == "both" else (args.transport,)
    started = time.perf_counter()
    with server_process() as base:
        report = run_cases(
            base,
            sizes,
            transports=transports,
            peer_python=args.peer_python,
            with_profile=not args.no_profile,
        )
    text = render(report, args.quick, time.perf_counter() - started)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
