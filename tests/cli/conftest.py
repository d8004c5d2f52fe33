"""Helpers for the CLI tests: run ``lamina`` through its real entry point in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

Cli = Callable[..., subprocess.CompletedProcess[str]]


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m lamina.cli ARGS`` (the same ``main`` the ``lamina`` script calls)."""
    return subprocess.run(
        [sys.executable, "-m", "lamina.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cli() -> Cli:
    """Run the CLI in a subprocess; returns the CompletedProcess."""
    return run_cli


@pytest.fixture
def write_flow(tmp_path: Path) -> Callable[..., Path]:
    """Write a flow file into a temporary directory and return its path."""

    def write(text: str, name: str = "flow.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
