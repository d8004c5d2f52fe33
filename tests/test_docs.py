"""Every ```python block in docs/ runs, unless marked ``<!-- illustrative -->``.

The blocks of one page run in order in one namespace, so a later block may use what
an earlier one defined; top-level ``await`` is allowed. A ```yaml or ```toml block
preceded by ``<!-- flow -->`` must load as a valid flow. Put the marker on the line
right above the fence (blank lines in between are fine).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    name = f"{page_id(block.page)}:{block.line}"
    code = compile(block.code, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # the docs' own code, as a reader would run it
    if inspect.iscoroutine(result):
        asyncio.run(result)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem}"}
    for block in blocks(page):
        if block.lang in ("python", "py") and block.marker != "illustrative":
            try:
                run_block(block, namespace)
            except Exception as exc:
                pytest.fail(
                    f"{page_id(page)} line {block.line}: {type(exc).__name__}: {exc}\n"
                    "Fix the block, or mark it <!-- illustrative --> if it cannot run offline."
                )


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
