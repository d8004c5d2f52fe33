"""benchmarks/run_overhead.py keeps running: a short run prints a median per source."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "run_overhead.py"


@pytest.mark.parametrize("mode", ["SEQUENTIAL", "PARALLEL"])  # apart: two workers run them
def test_run_overhead_prints_a_median_for_each_mode(mode: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "2", "--runs", "20", "--mode", mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.fullmatch(r"this\s+median\s+([\d.]+) µs/run\s+IQR [\d.]+-[\d.]+\n", done.stdout)
    assert found is not None, done.stdout
    assert float(found.group(1)) > 0
