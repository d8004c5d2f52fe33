"""Every figure of issue 13 side by side in one run; writes docs/performance.md and .svg.

Run from the repository root with the project's virtualenv::

    python benchmarks/run_all.py                 # one full run: about 5-8 minutes on 2 cores
    python benchmarks/run_all.py --runs 3        # three full runs, all three on the page
    python benchmarks/run_all.py --quick         # same shape, tiny samples (a smoke test)
        [--peer-python PATH] [--at REF] [--out docs/performance.md] [--svg ...]
    python benchmarks/run_all.py --render benchmarks/results/run_all-*.json   # page only

Every measurement runs in a child process against one loopback server
(``python -m lamina.testing``, on its own core); the children take turns in cycles, so
a burst of load on a shared machine hits every contender:

- ``percall.py`` on this interpreter, OpenTelemetry SDK off and on: rows 1, 2 and 8
  (and the SDK's cost);
- ``percall.py --groups httpx`` on the peer's interpreter, SDK off and on: the table
  against httpx + tenacity + aiolimiter + purgatory + opentelemetry-instrumentation-httpx;
- ``_peer_dataknobs.py --impl dataknobs,lamina,aiohttp`` on the peer's interpreter
  (Python >= 3.12): rows 3, 4 and 5, lamina and dataknobs-fsm on the same Python;
- ``_fanout_json.py`` (``fanout_scale.py``'s measure) once: rows 6 and 7;
- ``breakdown.py`` once (full runs): where lamina's per-call CPU goes.

Each run's raw samples go to ``benchmarks/results/run_all-<time>.json``; ``--render``
rebuilds the page from such files. The page keeps its hand-written part (between the
``<!-- hand-written -->`` markers) as it is.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import datetime
import functools
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import percall as pc
from _util import server_process, table
from chart import Bar, Panel, svg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DEFAULT_PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PEER_SETUP = (
    "/root/.pyenv/versions/3.12.1/bin/python -m venv .venv-peer && "
    ".venv-peer/bin/pip install -r benchmarks/requirements.txt -e '.[aiohttp,pyreqwest]'"
)
BEGIN, END = "<!-- hand-written: begin -->", "<!-- hand-written: end -->"
Samples = dict[str, dict[str, list[float]]]  # contender -> {"cpu": [...], "wall": [...]}
Json = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much work one run does."""

    quick: bool
    cycles: int  # turns of every child
    rounds: int  # percall rounds per child
    calls: float  # scales percall's calls per round
    b_repeats: int  # row 3 repeats per cycle
    b_runs: int  # runs per row 3 sample
    c_repeats: int  # rows 4-5 repeats per cycle
    c_runs: int  # runs per rows 4-5 sample (the 200)
    fanout_rounds: int
    fanout_sizes: tuple[int, int]
    breakdown_rounds: int  # 0: skip


FULL = Plan(False, 3, 2, 0.6, 3, 40, 3, 200, 5, (1000, 10000), 10)
QUICK = Plan(True, 1, 1, 0.01, 1, 3, 1, 10, 1, (50, 500), 0)


def log(message: str) -> None:
    print(f"[run_all] {message}", file=sys.stderr, flush=True)


# -- measuring -------------------------------------------------------------------------
def child_json(cmd: list[str], timeout: float = 400) -> Json:
    """Run ``cmd``; its last stdout line is one JSON object."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-2:])
        raise RuntimeError(f"{Path(cmd[1]).name} failed (exit {done.returncode}): {tail}"[:500])
    result: Json = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def peer_problem(python: Path) -> str | None:
    """None when the peer's interpreter has dataknobs-fsm and lamina, else what to do."""
    if not python.exists():
        return f"no peer interpreter at {python}: `{PEER_SETUP}` (or --peer-python PATH)"
    probe = subprocess.run(
        [str(python), "-c", "import dataknobs_fsm.patterns.api_orchestration, lamina, aiohttp"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"peer not set up ({last}): `{PEER_SETUP}`"
    return None


def merge(into: Samples, more: Samples) -> None:
    for name, s in more.items():
        slot = into.setdefault(name, {"cpu": [], "wall": []})
        slot["cpu"] += s["cpu"]
        slot["wall"] += s["wall"]


def measure(plan: Plan, peer_python: Path) -> Json:
    started = time.perf_counter()
    load = [("start", os.getloadavg()[0])]
    problem = peer_problem(peer_python)
    if problem:
        log(f"peer rows skipped: {problem}")
    main_py, peer_py = sys.executable, str(peer_python)
    percall: dict[str, dict[str, Samples]] = {"main": {"off": {}, "on": {}}}
    versions: dict[str, Json] = {}
    peer_rows: dict[str, dict[str, Json]] = {"B": {}, "C": {}}
    peer_info: Json = {}
    errors: list[str] = []
    profile: str | None = None
    calls = ["--calls", str(plan.calls), "--rounds", str(plan.rounds), "--json"]
    with server_process() as base:
        url = base + "/json"
        jobs: list[tuple[str, Callable[[int], None]]] = []

        def percall_job(i: int, where: str, python: str, groups: str, sdk: str) -> None:
            cmd = [python, str(HERE / "percall.py"), "--groups", groups, "--url", url]
            cmd += ["--offset", str(i * plan.rounds), *calls]
            if where == "uvloop":
                cmd += ["--loop", "uvloop"]
            data = child_json([*cmd, "--sdk"] if sdk == "on" else cmd)
            merge(percall[where][sdk], data["samples"])
            versions[where] = data["versions"]

        uvloop = importlib.util.find_spec("uvloop") is not None
        for where, python, groups in (
            ("main", main_py, "memory,native,native50"),
            ("uvloop", main_py, "native,native50"),  # rows 8u, 8bu: both sides on uvloop
            ("peer", peer_py, "httpx"),
        ):
            if (where == "peer" and problem) or (where == "uvloop" and not uvloop):
                continue
            percall.setdefault(where, {"off": {}, "on": {}})
            for sdk in ("off",) if where == "uvloop" else ("off", "on"):
                bound: Callable[[int], None] = functools.partial(
                    percall_job, where=where, python=python, groups=groups, sdk=sdk
                )
                jobs.append((f"percall {where} SDK {sdk}", bound))
        if not problem:

            def peer_job(i: int) -> None:
                cmd = [
                    peer_py,
                    str(HERE / "_peer_dataknobs.py"),
                    base,
                    "B,C",
                    "--impl",
                    "dataknobs,lamina,aiohttp",
                    "--offset",
                    str(i),
                    "--b-repeats",
                    str(plan.b_repeats),
                    "--b-runs",
                    str(plan.b_runs),
                    "--c-repeats",
                    str(plan.c_repeats),
                    "--c-runs",
                    str(plan.c_runs),
                    "--concurrency",
                    "50",
                ]
                data = child_json(cmd)
                peer_info.update({k: v for k, v in data.items() if k not in ("cases", "impls")})
                for impl, cases in data["impls"].items():
                    for case, res in cases.items():
                        slot = peer_rows[case].setdefault(
                            impl, {"samples": [], "cpu": [], "runs": 0, "bad_runs": 0}
                        )
                        slot["samples"] += res["samples"]
                        slot["cpu"] += res["cpu"]
                        slot["runs"] += res["check"]["runs"]
                        slot["bad_runs"] += res["check"]["bad_runs"]

            jobs.append(("dataknobs-fsm, lamina, gather (peer)", peer_job))
        for i in range(plan.cycles):
            k = i % len(jobs)
            for name, job in jobs[k:] + jobs[:k]:
                log(f"cycle {i + 1}/{plan.cycles}: {name}")
                try:
                    job(i)
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    errors.append(f"{name}: {error}")
                    log(f"  failed: {error}")
            load.append((f"cycle {i + 1}", os.getloadavg()[0]))
        if plan.breakdown_rounds:
            log("pyinstrument profile of lamina on aiohttp")
            code = (
                f"import asyncio, sys; sys.path.insert(0, {str(HERE)!r}); import orchestration; "
                f"print(asyncio.run(orchestration.profile({base!r}, orchestration.FULL, "
                "('aiohttp',))))"
            )
            done = subprocess.run(
                [main_py, "-c", code], capture_output=True, text=True, timeout=600
            )
            profile = done.stdout.strip() if done.returncode == 0 else None
            if profile is None:
                errors.append(f"profile: exit {done.returncode}")
    log("FANOUT 1,000 and 10,000 endpoints")
    fanout: Json = {}
    try:
        sizes = ",".join(str(n) for n in plan.fanout_sizes)
        fanout = child_json(
            [
                main_py,
                str(HERE / "_fanout_json.py"),
                "--rounds",
                str(plan.fanout_rounds),
                "--sizes",
                sizes,
            ]
        )
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        errors.append(f"fanout: {error}")
    load.append(("fanout", os.getloadavg()[0]))
    breakdown = None
    if plan.breakdown_rounds:
        log("breakdown")
        done = subprocess.run(
            [main_py, str(HERE / "breakdown.py"), str(plan.breakdown_rounds)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode == 0:
            breakdown = done.stdout.strip()
        else:
            errors.append(f"breakdown: exit {done.returncode}")
    load.append(("end", os.getloadavg()[0]))
    return {
        "plan": dataclasses.asdict(plan),
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": os.environ.get("LAMINA_BENCH_COMMIT") or git_commit(),
        "cpus": os.cpu_count(),
        "runtime": time.perf_counter() - started,
        "load": load,
        "peer_problem": problem,
        "errors": errors,
        "versions": versions,
        "percall": percall,
        "peer": {"info": peer_info, "rows": peer_rows},
        "fanout": fanout,
        "breakdown": breakdown,
        "profile": profile,
    }


def git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() + (" + uncommitted src changes" if dirty.stdout.strip() else "")


# -- figures ---------------------------------------------------------------------------
@dataclasses.dataclass
class Figure:
    """One figure: per-round values of the headline (CPU) and of wall time."""

    values: list[float]
    wall: list[float] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)


def spread(values: list[float], fmt: str) -> str:
    """The middle half of ``values`` (quartiles), or the range of fewer than 4."""
    if len(values) < 4:
        lo, hi = min(values), max(values)
    else:
        q = statistics.quantiles(values, n=4)
        lo, hi = q[0], q[2]
    return f"{fmt.format(lo)} to {fmt.format(hi)}"


def paired(a: list[float], b: list[float], op: Callable[[float, float], float]) -> list[float]:
    return [op(x, y) for x, y in zip(a, b, strict=False)]


def ratio(x: float, y: float) -> float:
    return x / y


def minus(x: float, y: float) -> float:
    return x - y


@dataclasses.dataclass
class Row:
    """One row of issue 13's table as measured by one run."""

    key: str
    title: str
    target: str
    limit: float
    strict: bool  # "below" (True) or "at most" (False)
    fmt: str
    figure: Figure | None
    python: str
    note: str = ""

    def met(self) -> bool | None:
        if self.figure is None:
            return None
        m = self.figure.median
        return m < self.limit if self.strict else m <= self.limit

    def text(self) -> str:
        return "not measured" if self.figure is None else self.fmt.format(self.figure.median)


def _pc(res: Json, where: str, sdk: str = "off") -> Samples:
    out: Samples = res["percall"].get(where, {}).get(sdk, {})
    return out


def per_call_figure(
    s: Samples, top: str, bottom: str, op: Callable[[float, float], float]
) -> Figure | None:
    if top not in s or bottom not in s:
        return None
    return Figure(
        paired(s[top]["cpu"], s[bottom]["cpu"], op), paired(s[top]["wall"], s[bottom]["wall"], op)
    )


def peer_figure(res: Json, case: str, top: str, bottom: str) -> Figure | None:
    rows = res["peer"]["rows"].get(case, {})
    if top not in rows or bottom not in rows:
        return None
    return Figure(
        paired(rows[top]["cpu"], rows[bottom]["cpu"], ratio),
        paired(rows[top]["samples"], rows[bottom]["samples"], ratio),
    )


def fanout_samples(res: Json, name: str, n: int) -> list[list[float]]:
    out: list[list[float]] = res["fanout"].get("samples", {}).get(name, {}).get(str(n), [])
    return out


def rows(res: Json) -> list[Row]:
    """Issue 13's eight rows (and their companions) from one run's results."""
    main = f"Python {res['versions'].get('main', {}).get('python', '?')}"
    peer = f"Python {res['peer']['info'].get('python', '?')}"
    s = _pc(res, "main")
    uv = _pc(res, "uvloop")  # rows 8u and 8bu: the same contenders, both on uvloop
    small, big = res["plan"]["fanout_sizes"]
    memory: Figure | None = None
    growth: dict[str, Figure | None] = {}
    for name in ("lamina", "lamina, gc.freeze()", "gather"):
        a, b = fanout_samples(res, name, small), fanout_samples(res, name, big)
        growth[name] = (
            Figure(paired([x[0] for x in b], [x[0] for x in a], ratio)) if a and b else None
        )
    lam = fanout_samples(res, "lamina", big)
    if lam:
        memory = Figure([x[1] + x[2] for x in lam])
    gather_kb = [x[1] + x[2] for x in fanout_samples(res, "gather", big)]
    peer_note = "" if not res["peer_problem"] else "not run: no peer interpreter (see the run)"
    return [
        Row(
            "1",
            "full default stack over an in-memory service, added CPU per call",
            "at most +8 µs",
            8.0,
            False,
            "+{:.1f} µs",
            per_call_figure(s, pc.MEMORY_STACK, pc.MEMORY_BARE, minus),
            main,
        ),
        Row(
            "2",
            "full default stack on the aiohttp transport / bare aiohttp, CPU per call",
            "at most 1.10x",
            1.10,
            False,
            "{:.2f}x",
            per_call_figure(s, "lamina full stack (aiohttp)", "bare aiohttp", ratio),
            main,
        ),
        Row(
            "3",
            "SEQUENTIAL 5 fast calls, lamina (aiohttp) / dataknobs-fsm 0.5.0, CPU per run",
            "below 1.0x",
            1.0,
            True,
            "{:.2f}x",
            peer_figure(res, "B", "lamina", "dataknobs"),
            peer,
            peer_note,
        ),
        Row(
            "4",
            f"{res['plan']['c_runs']} runs of 5 calls, 50 at a time, lamina (aiohttp) / "
            "dataknobs-fsm, CPU per run",
            "below 1.0x",
            1.0,
            True,
            "{:.2f}x",
            peer_figure(res, "C", "lamina", "dataknobs"),
            peer,
            peer_note,
        ),
        Row(
            "5",
            "same, lamina (aiohttp) / hand-written gather over aiohttp, CPU per run",
            "at most 1.15x",
            1.15,
            False,
            "{:.2f}x",
            peer_figure(res, "C", "lamina", "aiohttp"),
            peer,
            peer_note,
        ),
        Row(
            "6",
            f"one FANOUT run, memory per endpoint at {big:,} endpoints (built + run peak)",
            "at most 3 KB",
            3.0,
            False,
            "{:.2f} KB",
            memory,
            main,
            f"gather: {statistics.median(gather_kb):.2f} KB" if gather_kb else "",
        ),
        Row(
            "7",
            f"one FANOUT run, time per endpoint from {small:,} to {big:,}",
            "at most 1.1x",
            1.1,
            False,
            "{:.2f}x",
            growth["lamina"],
            main,
            _growth_note(growth["gather"]),
        ),
        Row(
            "7b",
            "same, with `gc.freeze()` once the orchestrator is built (documented)",
            "at most 1.1x",
            1.1,
            False,
            "{:.2f}x",
            growth["lamina, gc.freeze()"],
            main,
        ),
        Row(
            "8",
            "fastest transport (pyreqwest), full default stack / bare aiohttp, CPU per call",
            "below 1.0x",
            1.0,
            True,
            "{:.2f}x",
            per_call_figure(s, "lamina full stack (pyreqwest)", "bare aiohttp", ratio),
            main,
        ),
        Row(
            "8u",
            "same, both on uvloop (`lamina[uvloop]`)",
            "below 1.0x",
            1.0,
            True,
            "{:.2f}x",
            per_call_figure(uv, "lamina full stack (pyreqwest)", "bare aiohttp", ratio),
            main,
        ),
        Row(
            "8b",
            f"same, {pc.IN_FLIGHT} calls in flight",
            "below 1.0x",
            1.0,
            True,
            "{:.2f}x",
            per_call_figure(
                s,
                f"lamina full stack (pyreqwest) @{pc.IN_FLIGHT}",
                f"bare aiohttp @{pc.IN_FLIGHT}",
                ratio,
            ),
            main,
        ),
        Row(
            "8bu",
            f"same, {pc.IN_FLIGHT} calls in flight, both on uvloop",
            "below 1.0x",
            1.0,
            True,
            "{:.2f}x",
            per_call_figure(
                uv,
                f"lamina full stack (pyreqwest) @{pc.IN_FLIGHT}",
                f"bare aiohttp @{pc.IN_FLIGHT}",
                ratio,
            ),
            main,
        ),
    ]


def _growth_note(gather: Figure | None) -> str:
    return f"gather: {gather.median:.2f}x" if gather else ""


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "**not met**")


def rounds_of(row: Row) -> int:
    return 0 if row.figure is None else len(row.figure.values)


def targets_table(runs: list[Json]) -> str:
    """Each row: every run's median, the verdict on the median of the runs."""
    per_run = [rows(r) for r in runs]
    headers = ["#", "figure", "target", *[f"run {i + 1}" for i in range(len(runs))]]
    headers += ["verdict", "gap (median of runs)", "ran on"]
    out: list[list[object]] = []
    for i, row in enumerate(per_run[-1]):
        same = [r[i] for r in per_run]
        medians = [r.figure.median for r in same if r.figure is not None]
        ok: bool | None = None
        gap = ""
        if medians:
            m = statistics.median(medians)
            ok = m < row.limit if row.strict else m <= row.limit
            if not ok:
                gap = "over by " + row.fmt.format(m - row.limit).lstrip("+")
                if not any(c in "123456789" for c in gap):  # rounds to zero
                    gap = f"just over (median {m:.3f})"
        cells = [r.text() for r in same]
        python = row.python if row.figure is not None else (row.note or "not measured")
        out.append([row.key, row.title, row.target, *cells, verdict(ok), gap, python])
    return table(headers, out)


def detail_table(res: Json) -> str:
    """One run: CPU median and spread, wall median and spread, rounds."""
    out: list[list[object]] = []
    for row in rows(res):
        f = row.figure
        if f is None:
            out.append([row.key, row.text(), "", "", "", verdict(None), row.note])
            continue
        wall = (
            f"{row.fmt.format(statistics.median(f.wall))} ({spread(f.wall, row.fmt)})"
            if f.wall
            else "-"
        )
        out.append(
            [
                row.key,
                row.text(),
                spread(f.values, row.fmt),
                wall,
                len(f.values),
                verdict(row.met()),
                row.note,
            ]
        )
    headers = ["#", "CPU (median)", "CPU spread", "wall time (median, spread)", "rounds"]
    return table([*headers, "verdict", "note"], out)


def us_cell(s: Samples, name: str, kind: str = "cpu") -> str:
    return f"{statistics.median(s[name][kind]):.0f}" if name in s else "-"


def glue_table(res: Json) -> str | None:
    off, on = _pc(res, "peer", "off"), _pc(res, "peer", "on")
    if pc.HTTPX_BARE not in off:
        return None
    out: list[list[object]] = []
    for name in (pc.HTTPX_BARE, pc.GLUE, pc.HTTPX_STACK):
        if name not in off:
            out.append([name, "not installed: `pip install -r benchmarks/requirements.txt`"])
            continue
        cells: list[object] = [name]
        for s in (off, on):
            f = per_call_figure(s, name, pc.HTTPX_BARE, ratio)
            against = f"{f.median:.2f}x ({spread(f.values, '{:.2f}')})" if f else "-"
            cells += [
                us_cell(s, name),
                "1.00x" if name == pc.HTTPX_BARE else against,
                us_cell(s, name, "wall"),
            ]
        out.append(cells)
    headers = ["contender (SDK off, then on)", "CPU µs/call", "/ bare httpx", "wall µs/call"]
    return table([*headers, "SDK on: CPU µs/call", "/ bare httpx", "wall µs/call"], out)


def sdk_table(res: Json) -> str:
    out: list[list[object]] = []
    pairs = [
        ("main", pc.MEMORY_STACK, pc.MEMORY_BARE),
        ("main", "lamina full stack (aiohttp)", "bare aiohttp"),
        ("main", "lamina full stack (pyreqwest)", "bare aiohttp"),
        ("peer", pc.HTTPX_STACK, pc.HTTPX_BARE),
        ("peer", pc.GLUE, pc.HTTPX_BARE),
    ]
    for where, name, bare in pairs:
        off, on = _pc(res, where, "off"), _pc(res, where, "on")
        if name not in off or name not in on:
            continue
        a, b = statistics.median(off[name]["cpu"]), statistics.median(on[name]["cpu"])
        wa, wb = statistics.median(off[name]["wall"]), statistics.median(on[name]["wall"])
        f_off = per_call_figure(off, name, bare, ratio if bare != pc.MEMORY_BARE else minus)
        f_on = per_call_figure(on, name, bare, ratio if bare != pc.MEMORY_BARE else minus)
        unit = "+{:.1f} µs" if bare == pc.MEMORY_BARE else "{:.2f}x"
        python = res["versions"].get(where, {}).get("python", "?")
        out.append(
            [
                name,
                f"{a:.1f}",
                f"{b:.1f}",
                f"{b - a:+.1f}",
                f"{wb - wa:+.1f}",
                unit.format(f_off.median) if f_off else "-",
                unit.format(f_on.median) if f_on else "-",
                python,
            ]
        )
    headers = ["contender", "CPU µs/call, SDK off", "SDK on", "SDK adds (CPU µs)", "(wall µs)"]
    return table([*headers, "vs bare, SDK off", "vs bare, SDK on", "Python"], out)


def raw_table(res: Json) -> str:
    """Every contender's own medians (µs per call; ms per run for the peer's cases)."""
    out: list[list[object]] = []
    for where in ("main", "peer"):
        for sdk in ("off", "on"):
            for name, s in _pc(res, where, sdk).items():
                out.append(
                    [
                        name,
                        f"SDK {sdk}",
                        f"{statistics.median(s['cpu']):.1f} ({spread(s['cpu'], '{:.1f}')})",
                        f"{statistics.median(s['wall']):.1f}",
                        "µs/call",
                        len(s["cpu"]),
                    ]
                )
    runs = {"B": 1, "C": res["plan"]["c_runs"]}
    for case, label in (("B", "SEQUENTIAL 5 calls"), ("C", "PARALLEL 5 calls, 50 runs at once")):
        for impl, r in res["peer"]["rows"].get(case, {}).items():
            cpu = [x / runs[case] * 1e3 for x in r["cpu"]]
            wall = [x / runs[case] * 1e3 for x in r["samples"]]
            bad = f", {r['bad_runs']} INCOMPLETE" if r["bad_runs"] else ""
            out.append(
                [
                    f"{impl} ({label})",
                    "peer venv",
                    f"{statistics.median(cpu):.3f} ({spread(cpu, '{:.3f}')})",
                    f"{statistics.median(wall):.3f}",
                    f"ms/run{bad}",
                    len(cpu),
                ]
            )
    return table(["contender", "setting", "CPU (median, spread)", "wall", "unit", "rounds"], out)


def fanout_table(res: Json) -> str | None:
    samples = res["fanout"].get("samples")
    if not samples:
        return None
    out: list[list[object]] = []
    for name, by_size in samples.items():
        for n, vals in by_size.items():
            out.append(
                [
                    name,
                    f"{int(n):,}",
                    f"{statistics.median(v[0] for v in vals):.1f}",
                    f"{statistics.median(v[2] for v in vals):.2f}",
                    f"{statistics.median(v[1] for v in vals):.2f}",
                    len(vals),
                ]
            )
    headers = [
        "run",
        "endpoints",
        "µs/endpoint (wall)",
        "KB/endpoint built",
        "KB/endpoint run peak",
    ]
    return table([*headers, "rounds"], out)


# -- chart -----------------------------------------------------------------------------
SHORT = {
    pc.GLUE: "glue (tenacity, aiolimiter, ...)",
    pc.HTTPX_STACK: "lamina on httpx, + rate limit",
}


def chart(runs: list[Json]) -> str:
    last = runs[-1]
    per_run = [rows(r) for r in runs]
    bars = []
    for i, row in enumerate(per_run[-1]):
        figures = [r[i].figure for r in per_run]
        medians = [f.median for f in figures if f is not None]
        if not medians:
            continue
        m = statistics.median(medians)
        share = m / row.limit
        met = m < row.limit if row.strict else m <= row.limit
        bars.append(
            Bar(
                f"{row.key}. {row.fmt.format(m)} (target {row.target})",
                share,
                f"{share:.2f}",
                "met" if met else "missed",
            )
        )
    panels = [
        Panel(
            f"Issue 13: each figure / its target (median of {len(runs)} run(s); 1.0 or less: met)",
            bars,
            target=1.0,
            target_label="target",
        )
    ]
    off = _pc(last, "peer", "off")
    if pc.HTTPX_BARE in off:
        panels.append(
            Panel(
                "httpx: CPU µs per call, same work (SDK off), lower is better",
                [
                    Bar(
                        SHORT.get(name, name),
                        statistics.median(off[name]["cpu"]),
                        f"{statistics.median(off[name]['cpu']):.0f} µs",
                        "lamina" if name.startswith("lamina") else "other",
                    )
                    for name in (pc.HTTPX_BARE, pc.GLUE, pc.HTTPX_STACK)
                    if name in off
                ],
            )
        )
    b = last["peer"]["rows"].get("B", {})
    if b:
        names = {"lamina": "lamina (aiohttp)", "dataknobs": "dataknobs-fsm", "aiohttp": "gather"}
        panels.append(
            Panel(
                "SEQUENTIAL 5 fast calls: client CPU ms per run (same Python), lower is better",
                [
                    Bar(
                        names.get(impl, impl),
                        statistics.median(r["cpu"]) * 1e3,
                        f"{statistics.median(r['cpu']) * 1e3:.2f} ms",
                        "lamina"
                        if impl == "lamina"
                        else "peer"
                        if impl == "dataknobs"
                        else "other",
                    )
                    for impl, r in b.items()
                ],
            )
        )
    quick = " (quick run)" if last["plan"]["quick"] else ""
    return svg(panels, f"lamina: issue 13 benchmarks{quick}")


# -- the page --------------------------------------------------------------------------
def hand_written(previous: str) -> str:
    """The hand-written part of the page as it is now (with its markers)."""
    if BEGIN in previous and END in previous:
        return previous[previous.index(BEGIN) : previous.index(END) + len(END)]
    start = previous.find("## Work in progress (issue 13)")
    if start < 0:
        return f"{BEGIN}\n{END}"
    stop = previous.find("## Reading and rerunning", start)
    body = previous[start : stop if stop > 0 else len(previous)].strip()
    return f"{BEGIN}\n\n{body}\n\n{END}"


def describe(res: Json) -> str:
    v = res["versions"]
    main, peer = v.get("main", {}), v.get("peer", {})
    info = res["peer"]["info"]
    plan = res["plan"]
    load = ", ".join(f"{label} {one:.1f}" for label, one in res["load"])
    parts = [
        f"{'Quick' if plan['quick'] else 'Full'} run of {res['when']} on commit "
        f"`{res['commit']}`, {res['cpus']} cores, {res['runtime']:.0f} s; load average "
        f"(1 min): {load}.",
        f"This interpreter: Python {main.get('python', '?')} (httpx {main.get('httpx', '-')}, "
        f"aiohttp {main.get('aiohttp', '-')}, pyreqwest {main.get('pyreqwest', '-')}).",
    ]
    if info:
        parts.append(
            f"Peer interpreter: Python {info.get('python')} with dataknobs-fsm "
            f"{info.get('version')} (aiohttp {info.get('aiohttp')}) and lamina from this "
            f"checkout; glue: tenacity {peer.get('tenacity', '-')}, aiolimiter "
            f"{peer.get('aiolimiter', '-')}, purgatory {peer.get('purgatory', '-')}, "
            "opentelemetry-instrumentation-httpx "
            f"{peer.get('opentelemetry-instrumentation-httpx', '-')}."
        )
    else:
        parts.append(f"Peer: {res['peer_problem']}")
    parts.append(
        f"Samples: {plan['cycles']} cycles of every child process; {plan['rounds']} rounds per "
        f"per-call child ({int(pc.CALLS['memory'] * plan['calls']):,} in-memory calls, "
        f"{int(pc.CALLS['native'] * plan['calls']):,} aiohttp/pyreqwest calls, "
        f"{int(pc.CALLS['httpx'] * plan['calls']):,} httpx calls per contender per round); "
        f"row 3: {plan['b_repeats']} repeats of {plan['b_runs']} runs per cycle; rows 4-5: "
        f"{plan['c_repeats']} repeats per cycle; FANOUT: {plan['fanout_rounds']} rounds."
    )
    if res["errors"]:
        parts.append("**Failures in this run:** " + "; ".join(res["errors"]))
    return " ".join(parts)


def page(runs: list[Json], previous: str) -> str:
    last = runs[-1]
    mode = "quick" if last["plan"]["quick"] else "full"
    parts = [
        "# Performance",
        "Every figure in the tables below comes from one command, run on this project's 2-core "
        "development machine, which is shared with other work: absolute times are noisy, so "
        "read ratios and compare rows within a table. Each child process measures its "
        "contenders in interleaved rounds (the order rotates from round to round), the child "
        "processes take turns in cycles, and the headline is **CPU time** "
        "(`time.process_time` of the client process, its threads included), which other "
        "processes disturb less than wall time; wall time is reported beside it. A ratio is "
        "the median over rounds of the per-round ratio; a spread is the middle half of the "
        "rounds (quartiles; the range when there are fewer than 4).",
        "```sh\n"
        "python benchmarks/run_all.py --runs 3   # rewrites this page and the chart\n"
        "python benchmarks/run_all.py --quick    # seconds: a smoke test of the harness\n"
        "```",
        "![issue 13 figures against their targets, the glue table and the sequential "
        "comparison](performance.svg)",
        f"## Issue 13: every row, {len(runs)} {mode} run{'s' if len(runs) > 1 else ''}",
        "Each run's median; the verdict is on the median of the runs. *ran on* is the "
        "interpreter of the row's lamina (rows 3-5 run lamina and dataknobs-fsm in the same "
        "peer process, Python >= 3.12, which dataknobs-fsm 0.5.0 needs).",
        targets_table(runs),
    ]
    for i, res in enumerate(runs):
        parts += [f"### Run {i + 1}", describe(res), detail_table(res)]
    parts += [
        "### What each row measures",
        "1. `percall.py`'s *memory* group: the orchestrator's default layers for one GET "
        "endpoint (call tracing, metrics, parse, retry, breaker, timeout, tracing; cache off, "
        "no SDK) over a service that returns a ready `Response`, minus that service alone, "
        f"per round ({int(pc.CALLS['memory'] * last['plan']['calls']):,} calls each).\n"
        "2. and 8. `transports.contenders`: GET `/json` on the loopback server, check the "
        "status, parse the JSON, one call at a time (8b: 50 at once with `asyncio.gather`); "
        "the default stack on `AiohttpTransport` / `PyreqwestTransport` against a bare "
        "`aiohttp.ClientSession` doing the same.\n"
        "3.-5. `_peer_dataknobs.py --impl dataknobs,lamina,aiohttp`, all three in one process "
        'on the peer\'s Python: `APIOrchestrator(..., transport="aiohttp")` with 5 endpoints '
        "`/json?i=K`, dataknobs-fsm's `APIOrchestrator.orchestrate()` with its defaults, and "
        "a hand-written `asyncio.gather` over one `aiohttp.ClientSession`; every run is "
        "checked for its 5 responses. Row 3 is SEQUENTIAL mode (runs one after another); "
        "rows 4-5 PARALLEL mode, runs 50 at a time (dataknobs-fsm 0.5.0 awaits its "
        "'parallel' endpoints one after another, so it has 50 requests in flight, the others "
        "250).\n"
        "6.-7. `fanout_scale.measure`: one FANOUT run, `max_concurrent=100`, default stack, "
        "cache off, over an in-memory service that yields once per call; memory is "
        "tracemalloc's (what the built orchestrator holds plus the run's peak above it, per "
        "endpoint), time the wall time of one warm run per endpoint.",
        "## Against what a user would glue together",
        "The same work per call on httpx: **glue** is `httpx.AsyncClient` instrumented by "
        "opentelemetry-instrumentation-httpx (a CLIENT span per request), inside "
        "`asyncio.timeout(30)`, an `aiolimiter.AsyncLimiter` (100,000/s: never waits here), "
        "a purgatory circuit breaker (threshold 5, 60 s), a tenacity `@retry` (4 attempts, "
        "exponential backoff with jitter on 429/5xx and transport errors), then "
        "`response.json()`; **lamina** is the default stack on `HttpxTransport` with a rate "
        "limit of the same size (`rate_limit` per minute, `burst_limit=1000`), which adds "
        "a call span and metrics on top. Run on the peer interpreter (where "
        "`benchmarks/requirements.txt` is installed); SDK on as in the next section.",
        glue_table(last) or "Not measured: " + str(last["peer_problem"]),
        "## The cost of the OpenTelemetry SDK",
        "*SDK on*: a child process that first sets a global `TracerProvider` with a "
        "`BatchSpanProcessor` feeding an exporter that drops the spans, and a global "
        "`MeterProvider` with an `InMemoryMetricReader`, so every span and instrument "
        "records; *off*: the API alone (no-op). The two kinds of child alternate, so the "
        "difference is of medians from different processes. lamina records two spans per "
        "call (the call and the attempt) and its `lamina.*` metrics; the glue one span and "
        "the instrumentation's duration histogram.",
        sdk_table(last),
        "## Every contender (last run)",
        raw_table(last),
    ]
    ft = fanout_table(last)
    if ft:
        parts += ["### FANOUT runs (last run)", ft]
    if last.get("breakdown"):
        parts += [
            "## Where lamina's per-call CPU goes (last run)",
            "`python benchmarks/breakdown.py`: client CPU per call of SEQUENTIAL runs of 5 "
            "fast calls over aiohttp, with the default stack built up one group of layers at "
            "a time (medians over interleaved rounds, this interpreter).",
            last["breakdown"],
        ]
    if last.get("profile"):
        parts += [
            "### Profile of lamina on aiohttp (pyinstrument, own time)",
            "`orchestration.profile`: lamina alone, SEQUENTIAL runs of 5 fast calls (B) and "
            "runs of 5 calls 50 at a time (C), on this interpreter; the share of the sampled "
            "time spent in each function itself.",
            last["profile"],
        ]
    parts += [
        hand_written(previous),
        "## Reading and rerunning",
        "- `python benchmarks/run_all.py --runs 3` rewrites this page and `performance.svg` "
        "(and saves each run's samples in `benchmarks/results/`); `--render FILE...` rebuilds "
        "them from saved runs; `--at REF` measures the `src/` of a commit instead of the "
        "working tree.\n"
        "- The parts run alone too: `percall.py`, `transports.py`, `stack_cpu.py`, "
        "`fanout_scale.py`, `breakdown.py`, `orchestration.py` (also PARALLEL latency), "
        "`scale.py` (peak RSS), `ratelimit_accuracy.py`; see `benchmarks/README.md`.\n"
        "- dataknobs-fsm needs Python >= 3.12, so rows 3-5 and the glue table run on the "
        f"peer's interpreter: `{PEER_SETUP}`; without it those rows say how to set it up.",
    ]
    return "\n\n".join(parts) + "\n"


def snapshot(ref: str) -> tuple[str, str]:
    """``src/`` of git ``ref`` in a temporary directory: (its path, the commit)."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    where = tempfile.mkdtemp(prefix="lamina-bench-")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", where], input=archive.stdout, check=True)
    return os.path.join(where, "src"), commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny samples: a smoke test")
    parser.add_argument("--runs", type=int, default=1, help="full runs, all on the page")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--at", metavar="REF", help="measure git REF's src/ (not the work tree)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--svg", type=Path, default=ROOT / "docs" / "performance.svg")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where samples go")
    parser.add_argument("--render", type=Path, nargs="+", help="saved runs: page only")
    parser.add_argument("--cycles", type=int, help="turns of every child (full: 3)")
    args = parser.parse_args()
    if args.render:
        runs = [json.loads(p.read_text()) for p in args.render]
    else:
        if args.at:
            src, commit = snapshot(args.at)
            atexit.register(shutil.rmtree, os.path.dirname(src), True)
            os.environ["PYTHONPATH"] = src + os.pathsep + os.environ.get("PYTHONPATH", "")
            os.environ["LAMINA_BENCH_COMMIT"] = commit
            log(f"measuring {args.at} ({commit}) from {src}")
        plan = QUICK if args.quick else FULL
        if args.cycles:
            plan = dataclasses.replace(plan, cycles=args.cycles)
        runs = []
        for i in range(args.runs):
            log(f"run {i + 1}/{args.runs}")
            res = measure(plan, args.peer_python)
            runs.append(res)
            args.results.mkdir(parents=True, exist_ok=True)
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
            saved = args.results / f"run_all-{'quick-' if plan.quick else ''}{stamp}.json"
            saved.write_text(json.dumps(res))
            log(f"run {i + 1} took {res['runtime']:.0f} s; samples in {saved}")
    previous = args.out.read_text() if args.out.exists() else ""
    text = page(runs, previous)
    args.out.write_text(text)
    args.svg.write_text(chart(runs))
    print(targets_table(runs))
    log(f"wrote {args.out} and {args.svg}")


if __name__ == "__main__":
    main()
