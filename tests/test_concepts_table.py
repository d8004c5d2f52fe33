"""Issue 14 item 5: docs/concepts.md maps every config field to its layer argument."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from lamina.orchestration.config import APIEndpoint, APIOrchestrationConfig

DOC = Path(__file__).parents[1] / "docs" / "concepts.md"


def section() -> str:
    text = DOC.read_text()
    start = text.index("## From config fields to layer arguments")
    return text[start : text.index("\n## ", start + 1)]


def test_every_field_of_both_classes_is_named_in_the_table_or_the_list_after_it() -> None:
    named = set(re.findall(r"`(?:[A-Za-z]+\.)?([a-z_]+)`", section()))
    for cls in (APIEndpoint, APIOrchestrationConfig):
        missing = [f.name for f in fields(cls) if f.name not in named and f.name != "endpoints"]
        assert not missing, f"{cls.__name__}: {missing} not in docs/concepts.md's table"


def test_the_table_says_the_units_a_user_misreads() -> None:
    text = section()
    assert "calls **per minute**" in text
    assert "RateLimitLayer(per_minute=rate_limit)" in text
    assert "`RateLimitLayer(rate)` alone is per **second**" in text
    assert "retries after the first attempt" in text
    assert "attempts=retry_count + 1" in text


DEFAULTS = {f.name: f.default for cls in (APIEndpoint, APIOrchestrationConfig) for f in fields(cls)}


def first_cells() -> list[str]:
    rows = [line for line in section().splitlines() if line.startswith("| `")]
    return [row.split("|")[1] for row in rows]


def notes(cell: str) -> list[tuple[str, str]]:
    """``(field, what the parenthesis after it says)`` for each field the cell names."""
    return re.findall(r"`(?:[A-Za-z]+\.)?([a-z_]+)`(?: \(([^)]*)\))?", cell)


def test_every_number_the_table_names_states_its_real_default() -> None:
    for cell in first_cells():
        for name, note in notes(cell):
            default = DEFAULTS.get(name)
            if isinstance(default, bool) or not isinstance(default, int | float):
                continue
            stated = re.search(r"default ([0-9.]+)", note)
            assert stated, f"{name}: the table does not say its default ({default})"
            assert float(stated.group(1)) == default, f"{name}: the table's default is wrong"


def test_unset_is_said_only_of_fields_that_default_to_none() -> None:
    for cell in first_cells():
        for name, note in notes(cell):
            if "unset" in note and name in DEFAULTS:
                assert DEFAULTS[name] is None, f"{name} defaults to {DEFAULTS[name]!r}, not unset"
    text = section()
    for name in re.findall(r"unset `([a-z_]+)`", text):
        assert DEFAULTS[name] is None, f"'unset {name}' but it defaults to {DEFAULTS[name]!r}"
