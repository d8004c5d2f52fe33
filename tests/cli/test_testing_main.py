"""``python -m lamina.testing --help`` prints usage instead of starting a server."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina.testing", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def test_help_prints_usage() -> None:
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m lamina.testing")
    assert "PORT" in done.stdout
    assert "LISTENING http" not in done.stdout  # no server started


def test_a_bad_port_is_a_usage_error() -> None:
    done = _run("not-a-port")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "PORT" in done.stderr


def test_a_port_in_use_is_one_line_not_a_traceback() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _run(str(port))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
