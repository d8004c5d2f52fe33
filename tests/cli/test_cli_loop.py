"""``lamina run --loop`` and ``lamina demo --loop``: the CLI's event loop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.testing import LocalServer

from .conftest import Cli

pytest.importorskip("uvloop")

# Reports which loop the command made, from a sitecustomize on PYTHONPATH.
SPY = """
import asyncio, sys
import uvloop

def _spy(made, name):
    def make():
        print(f"loop made: {name}", file=sys.stderr)
        return made()
    return make

uvloop.new_event_loop = _spy(uvloop.new_event_loop, "uvloop")
asyncio.new_event_loop = _spy(asyncio.new_event_loop, "asyncio")
"""


@pytest.fixture
def spy_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(SPY, encoding="utf-8")
    return {"PYTHONPATH": str(tmp_path)}


@pytest.mark.parametrize(
    ("given", "made"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_run_makes_the_loop_it_is_told(
    cli: Cli,
    write_flow: Callable[..., Path],
    lamina_server: LocalServer,
    spy_env: dict[str, str],
    given: str,
    made: str,
) -> None:
    flow = write_flow(f"endpoints:\n  - name: a\n    url: {lamina_server.url}/json?loop={given}\n")
    done = cli("run", str(flow), "--json", "--loop", given, env=spy_env)
    assert done.returncode == 0, done.stderr
    assert f"loop made: {made}" in done.stderr
    assert '"outcome": "ok"' in done.stdout
    # the call reached the server, once, from this run
    assert [r.query for r in lamina_server.requests("/json")].count({"loop": given}) == 1


def test_an_unknown_loop_is_refused_by_the_parser(
    cli: Cli, write_flow: Callable[..., Path]
) -> None:
    flow = write_flow("endpoints:\n  - name: a\n    url: http://127.0.0.1:9/\n")
    done = cli("run", str(flow), "--loop", "trio")
    assert done.returncode == 2
    assert "--loop: invalid choice: 'trio'" in done.stderr
