"""Every ```python block in docs/ runs, unless marked ``<!-- illustrative -->``.

Each block runs on its own as a script, in a fresh Python process, in an empty directory,
as a reader who copies it into a file would run it: it imports what it uses, defines what
it needs and has no top-level ``await`` (wrap it in ``asyncio.run``). One test per block,
so pytest-xdist spreads them. A ```yaml or ```toml block preceded by ``<!-- flow -->``
must load as a valid flow. Put the marker on the line right above the fence (blank lines
in between are fine).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lamina.flows import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([*DOCS.glob("*.md"), *DOCS.glob("layers/*.md")])
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```\s*$",
                   re.S | re.M)  # fmt: skip
MARKER = re.compile(r"<!--\s*(illustrative|flow)\s*-->\s*$")
FLOW_ENV = {"API_TOKEN": "docs-token", "LAMINA_BASE_URL": "http://127.0.0.1:8765"}


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    marker: str | None


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        marked = MARKER.search(before[-1]) if before else None
        indent = len(match.group("indent"))
        code = "\n".join(line[indent:] for line in match.group("body").splitlines())
        found.append(
            Block(
                page,
                text.count("\n", 0, match.start()) + 2,
                match.group("lang").lower(),
                code,
                marked.group(1) if marked else None,
            )
        )
    return found


def page_id(page: Path) -> str:
    return str(page.relative_to(DOCS))


def python_blocks() -> list[Block]:
    return [
        block
        for page in PAGES
        for block in blocks(page)
        if block.lang in ("python", "py") and block.marker != "illustrative"
    ]


def block_id(block: Block) -> str:
    return f"{page_id(block.page)}:{block.line}"


#: seconds one block may take (a block that needs longer belongs in examples/)
BLOCK_TIMEOUT = 60

#: A fork server: it imports what blocks commonly import once, then runs each block in a
#: forked child (a fresh process: its own ``__main__``, nothing from other blocks), so a
#: block costs its own work, not an interpreter start and lamina's import.
RUNNER = r"""
import json, os, runpy, signal, sys, time, traceback
import asyncio, httpx, yaml, lamina, lamina.flows, lamina.orchestration, lamina.testing
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.chdir(job["cwd"])
            out = os.open("stdout.txt", os.O_WRONLY | os.O_CREAT, 0o644)
            err = os.open("stderr.txt", os.O_WRONLY | os.O_CREAT, 0o644)
            os.dup2(out, 1)
            os.dup2(err, 2)
            sys.argv = [job["script"]]
            sys.path[0] = job["cwd"]
            runpy.run_path(job["script"], run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    deadline = time.monotonic() + job["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            code = "timeout"
            break
        time.sleep(0.005)
    print(json.dumps({"code": code}), flush=True)
"""


class BlockRunner:
    """One fork server per test process (each xdist worker has its own)."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMINA_", "OTEL_"))}
        env["OTEL_SDK_DISABLED"] = "true"  # no exporter reaches out from a docs block
        self.process = subprocess.Popen(
            [sys.executable, "-c", RUNNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def run(self, script: Path) -> tuple[int | str, str]:
        """Run ``script`` in a forked child, in its directory: (exit code, stderr)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        job = {"script": str(script), "cwd": str(script.parent), "timeout": BLOCK_TIMEOUT}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError(f"the docs block runner died (exit {self.process.wait()})")
        code: int | str = json.loads(reply)["code"]
        return code, (script.parent / "stderr.txt").read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def block_runner() -> Iterator[BlockRunner]:
    runner = BlockRunner()
    yield runner
    runner.close()


@pytest.mark.parametrize("block", python_blocks(), ids=block_id)
def test_python_block_runs_standalone(
    block: Block, tmp_path: Path, block_runner: BlockRunner
) -> None:
    script = tmp_path / f"{block.page.stem}_{block.line}.py"
    script.write_text(block.code + "\n", encoding="utf-8")
    code, stderr = block_runner.run(script)
    if code != 0:
        pytest.fail(
            f"{block_id(block)} exited with {code}:\n{stderr[-3000:]}\n"
            "Fix the block so it runs on its own, or mark it <!-- illustrative --> "
            "if it cannot run offline."
        )


def test_a_block_runs_in_a_process_of_its_own(tmp_path: Path, block_runner: BlockRunner) -> None:
    first = tmp_path / "a" / "first.py"
    second = tmp_path / "b" / "second.py"
    for script, code in (
        (first, "import lamina.events\nlamina.events.LEAK = 1\nshared = 2\n"),
        (second, "import lamina.events\nassert not hasattr(lamina.events, 'LEAK')\nshared\n"),
    ):
        script.parent.mkdir()
        script.write_text(code, encoding="utf-8")
    assert block_runner.run(first) == (0, "")
    code, stderr = block_runner.run(second)
    assert code == 1
    assert "NameError: name 'shared' is not defined" in stderr
    top_level_await = tmp_path / "c" / "await.py"
    top_level_await.parent.mkdir()
    top_level_await.write_text("import asyncio\nawait asyncio.sleep(0)\n", encoding="utf-8")
    code, stderr = block_runner.run(top_level_await)
    assert code == 1
    assert "SyntaxError" in stderr


def test_every_page_has_been_looked_at() -> None:
    assert len(python_blocks()) >= 20  # the extractor still finds the blocks


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_flow_blocks_load(page: Path) -> None:
    for block in blocks(page):
        if block.marker != "flow":
            continue
        assert block.lang in ("yaml", "yml", "toml"), f"{page_id(page)}:{block.line}"
        data = tomllib.loads(block.code) if block.lang == "toml" else yaml.safe_load(block.code)
        config_from_dict(data, env=FLOW_ENV)


def test_markers_sit_on_code_blocks() -> None:
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            if MARKER.search(line):
                following = next((x for x in lines[index + 1 :] if x.strip()), "")
                assert following.lstrip().startswith("```"), f"{page_id(page)}:{index + 1}"


def test_the_extractor_sees_markers() -> None:
    page = DOCS / "flows.md"
    kinds = {(b.lang, b.marker) for b in blocks(page)}
    assert ("python", None) in kinds
    assert ("yaml", "flow") in kinds


REFERENCE = re.compile(r"\bthe reference\b", re.I)


def test_no_page_sends_readers_to_a_design_file_that_is_not_there() -> None:
    for page in [*PAGES, ROOT / "README.md"]:
        text = page.read_text(encoding="utf-8")
        assert "DESIGN.md" not in text or (ROOT / "DESIGN.md").exists(), page.name


def test_the_reference_is_explained_where_it_is_used() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    assert "## The reference" in index
    for page in PAGES:
        if page.name in ("index.md", "changelog.md"):
            continue
        text = page.read_text(encoding="utf-8")
        if REFERENCE.search(text):
            assert "index.md#the-reference" in text, f"{page_id(page)} says 'the reference'"
