"""The benchmark scripts keep running: a short run of breakdown.py prints its whole table."""

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
