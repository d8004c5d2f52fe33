"""Every script in examples/ and the demo run and print what they promise."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_custom_stack_example() -> None:
    out = run("examples/custom_stack.py")
    assert "echo: value='demo-echo'" in out
    assert "slow: value='demo-slow'" in out
    assert "hang: TimeoutError" in out
    assert "server saw 3 requests" in out


def test_demo_module() -> None:
    out = run("-m", "lamina.demo")
    assert "=> value \"{'ok': True" in out
    assert "hang: a hung upstream" in out
    assert "TimeoutError" in out
    assert "ResponseTooLarge" in out
    assert "local server received 7 requests; 4 calls failed as expected" in out
