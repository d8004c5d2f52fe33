"""A flow with several mistakes reports every one at once, each with its place and a
suggestion (issue 14, item 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lamina import ConfigError
from lamina.flows import config_from_dict, load_flow

LONG = "orders[?status == 'open'].items[].details.pricing.breakdown.total > 100"

FLOW = f"""
name: four-passes
mode: hybrid
max_concurent: 4
endpoints:
  - name: user
    url: https://api.example.com/users/{{user_id}}
    timout: 5
  - name: orders
    url: ${{ORDERS_URL_NOT_SET}}
    method: FETCH
    depends_on: [usr]
  - name: big
    url: https://api.example.com/big
    condition: "amount > 100"
  - name: long
    url: https://api.example.com/long
    transform_output: "{LONG}"
"""


def _errors(exc: ConfigError) -> dict[str, str]:
    errors = getattr(exc, "errors", [exc])
    return {str(e.field): e.message for e in errors}


def test_load_flow_reports_every_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_flow(path, env={})
    found = _errors(caught.value)
    assert set(found) >= {
        "max_concurent",
        "endpoints[0].timout",
        "endpoints[1].url",
        "endpoints[1].method",
        "endpoints[2].condition",
        "endpoints[3].transform_output",
    }, found
    assert "did you mean 'max_concurrent'?" in found["max_concurent"]
    assert "did you mean 'timeout'?" in found["endpoints[0].timout"]
    assert "line 8" in found["endpoints[0].timout"]
    assert "ORDERS_URL_NOT_SET is not set" in found["endpoints[1].url"]
    # the JMESPath hint for the usual mistake: numbers are literals in backticks
    assert "amount > `100`" in found["endpoints[2].condition"]
    # the expression is never cut
    assert LONG in found["endpoints[3].transform_output"]
    # a missing variable gives one error for its field, not a second one about the URL
    assert list(found).count("endpoints[1].url") == 1


def test_one_error_is_raised_as_before() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"endpoints": [{"name": "a", "url": "https://x", "timout": 1}]})
    assert caught.value.field == "endpoints[0].timout"
    assert getattr(caught.value, "errors", [caught.value]) == [caught.value]


def test_dependency_on_a_broken_endpoint_is_not_called_unknown() -> None:
    data = {
        "endpoints": [
            {"name": "a", "url": "https://x", "method": "FETCH"},
            {"name": "b", "url": "https://x", "depends_on": ["a", "nope"]},
        ]
    }
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    found = _errors(caught.value)
    assert set(found) == {"endpoints[0].method", "endpoints[1].depends_on"}
    assert "'nope'" in found["endpoints[1].depends_on"]


def test_validate_prints_every_error(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) >= 6, done.stderr
    assert any(line.startswith("error: endpoints[0].timout:") for line in lines)
    assert any("amount > `100`" in line for line in lines)
    assert any(LONG in line for line in lines)


def test_every_bad_layer_and_a_duplicate_names_own_errors_are_reported() -> None:
    """A bad first layer hid the others; a duplicate name hid its endpoint's unknown
    dependency (its depends_on was dropped with the rename): a second pass found them."""
    data = {
        "layers": [{"retry": {"attempts": 0}}, "nosuchlayer", {"timeout": {"seconds": -1}}],
        "endpoints": [
            {"name": "a", "url": "https://x/a"},
            {"name": "a", "url": "https://x/b", "depends_on": ["zzz"]},
        ],
    }
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    found = _errors(caught.value)
    for index in range(3):
        assert any(f.startswith(f"layers[{index}]") for f in found), found
    assert "endpoints[1].name" in found
    assert "'zzz'" in found.get("endpoints[1].depends_on", ""), found


def test_more_errors_than_shown_are_counted_not_dropped_silently(tmp_path: Path) -> None:
    """A flow with hundreds of mistakes shows the first 50 and says how many it left out."""
    endpoints = "".join(
        f"  - name: e{i}\n    url: http://x/{i}\n    timeout: -1\n    bogus: 1\n" for i in range(60)
    )
    path = tmp_path / "flow.yaml"
    path.write_text(f"endpoints:\n{endpoints}", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_flow(path, env={})
    assert len(caught.value.errors) == 50  # type: ignore[attr-defined]
    assert caught.value.omitted == 70  # type: ignore[attr-defined]
    done = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "120 errors (the first 50 shown)"


def test_a_key_written_twice_is_an_error_on_the_line_of_the_one_kept(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys without a word: a flow whose second
    ``timeout`` was fine was valid with the first one ignored, and an error about the
    kept one pointed at the line of the other."""
    path = tmp_path / "flow.yaml"
    path.write_text(
        "endpoints:\n  - name: a\n    url: http://x/a\n    timeout: -1\n    timeout: 5\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_flow(path, env={})
    assert caught.value.field == "endpoints[0].timeout"
    assert "written twice" in str(caught.value)
    assert "lines 4 and 5" in str(caught.value)
    path.write_text(
        "endpoints:\n  - name: a\n    url: http://x/a\n    timeout: 5\n    timeout: -1\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_flow(path, env={})
    found = _errors(caught.value)
    assert "line 5" in found["endpoints[0].timeout"], found
