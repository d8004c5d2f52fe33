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
