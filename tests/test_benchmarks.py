"""The benchmark scripts keep running: short runs print their tables; run_all.py renders
every row of issue 13 from saved samples."""

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_breakdown_prints_every_variant() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "breakdown.py"), "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == [
        "hand-written loop (aiohttp)",
        "lamina: orchestration + ParseLayer",
        "+ RetryLayer, CircuitBreakerLayer, TimeoutLayer",
        "+ MetricsLayer, CallTracingLayer, TracingLayer (no-op)",
    ]
    cpu = [float(row.split("|")[2]) for row in rows]
    assert all(us > 0 for us in cpu)


def test_stack_cpu_prints_the_added_cpu() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "stack_cpu.py"), "--rounds", "3", "--calls", "200"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert row.split("|")[1].strip() == "this checkout"


def test_fanout_scale_prints_both_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "fanout_scale.py"), "--rounds", "1", "--sizes", "20,40"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["lamina"] * 2 + ["gather"] * 2


def test_percall_times_the_in_memory_stack() -> None:
    done = subprocess.run(
        [
            *(sys.executable, str(BENCHMARKS / "percall.py"), "--groups", "memory"),
            *("--rounds", "2", "--calls", "0.01", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    samples = json.loads(done.stdout)["samples"]
    assert set(samples) == {"in-memory service alone", "lamina full stack (in-memory)"}
    for s in samples.values():
        assert len(s["cpu"]) == len(s["wall"]) == 2
        assert all(us > 0 for us in s["wall"])


def _render(tmp_path: Path, saved: Path, page: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, str(BENCHMARKS / "run_all.py"), "--render", str(saved)),
            *("--out", str(page), "--svg", str(tmp_path / "performance.svg")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _rows(text: str) -> dict[str, list[str]]:
    """The first table's rows (issue 13's) by their number."""
    start = text.index("| #")
    lines = text[start:].split("\n\n", 1)[0].splitlines()[2:]
    return {cells[1].strip(): [c.strip() for c in cells] for cells in (r.split("|") for r in lines)}


def test_run_all_renders_every_row_and_keeps_the_hand_written_part(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text(
        "# old\n\ngenerated\n\n<!-- hand-written: begin -->\nnotes by hand\n"
        "<!-- hand-written: end -->\n"
    )
    example = BENCHMARKS / "results" / "run_all-quick-example.json"
    done = _render(tmp_path, example, page)
    assert done.returncode == 0, done.stderr[-2000:]
    text = page.read_text()
    kept = "<!-- hand-written: begin -->\nnotes by hand\n<!-- hand-written: end -->"
    assert text.count(kept) == 1
    assert "generated" not in text
    rows = _rows(text)
    assert list(rows) == ["1", "2", "3", "4", "5", "6", "7", "7b", "8", "8u", "8b", "8bu"]
    for cells in rows.values():
        assert cells[4][-1] in "sxB", cells  # a figure in µs, x or KB
        assert cells[5] in ("met", "**not met**")
        assert cells[6].startswith(("over by ", "just over")) == (cells[5] == "**not met**")
        assert cells[7].startswith("Python 3.")
    assert rows["3"][7].startswith("Python 3.12")
    for table in ("glue: httpx + tenacity", "SDK adds (CPU µs)", "dataknobs (SEQUENTIAL"):
        assert table in text
    assert (tmp_path / "performance.svg").read_text().startswith("<svg")
    # without the peer, its rows say so and how to set it up
    res = json.loads(example.read_text())
    res["peer_problem"] = "no peer interpreter at /x: `pip install -r benchmarks/requirements.txt`"
    res["peer"] = {"info": {}, "rows": {"B": {}, "C": {}}}
    res["percall"].pop("peer")
    saved = tmp_path / "no-peer.json"
    saved.write_text(json.dumps(res))
    done = _render(tmp_path, saved, page)
    assert done.returncode == 0, done.stderr[-2000:]
    text = page.read_text()
    rows = _rows(text)
    for key in ("3", "4", "5"):
        assert rows[key][4:6] == ["not measured", "not measured"]
        assert "no peer interpreter" in rows[key][7]
    assert "benchmarks/requirements.txt" in text
    assert text.count("notes by hand") == 1
