"""examples/engines.py runs and prints what it promises (issue 14 item 9)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("aiolimiter")
pytest.importorskip("purgatory")


def test_engines_example() -> None:
    done = subprocess.run(
        [sys.executable, "examples/engines.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "catalog: [200, 200, 200, 200, 200, 200, 200, 200]" in out
    assert out.count("payments: 503") == 2
    assert "payments: CircuitOpenError, retry in 30s" in out
    assert "server saw 2 calls to payments" in out
