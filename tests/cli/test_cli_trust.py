"""Review of issue 12, items 5/6 and minor points, through the real ``lamina`` command.

``--json`` and the HTML report scrub the flow's ``${ENV}`` values from the data before
it is serialized or escaped (scrubbing the text broke JSON and markup when a value was
``true``, ``null``, ``1234`` or ``span``); a header value with a control character is
refused by ``validate`` and ``run`` before any call; ``validate``'s import-refusal line
is scrubbed; ``--report ""`` is a usage error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.cli.report_html import page_data
from lamina.redact import scrub
from lamina.testing import LocalServer, RecordedRequest

from .conftest import Cli

WriteFlow = Callable[..., Path]

# A quote, '&', '<', '>' and a backslash: JSON, HTML and repr encode each differently.
TOKEN = "tk-O'Brien&M<b>\\9Z"


def answer(request: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
    """JSON that echoes the query and holds JSON literals and a number."""
    return 200, {"count": 1234, "on": True, "off": False, "none": None, "query": request.query}, {}


@pytest.fixture
def trust_server(lamina_server: LocalServer) -> LocalServer:
    lamina_server.route("/trust-json", answer)
    return lamina_server


FLOW = """
name: trust
endpoints:
  - name: a
    url: {base}/trust-json
    params: {{verbose: "${{VERBOSE}}", token: "${{TOKEN}}"}}
"""


def strings(value: Any) -> Iterator[str]:
    """Every string in parsed JSON, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


@pytest.mark.parametrize("verbose", ["true", "null", "false", "1234", "span"])
def test_json_and_report_stay_valid_and_hold_no_env_value(
    cli: Cli, write_flow: WriteFlow, trust_server: LocalServer, tmp_path: Path, verbose: str
) -> None:
    flow = write_flow(FLOW.format(base=trust_server.url))
    report = tmp_path / "run.html"
    env = {"VERBOSE": verbose, "TOKEN": TOKEN}
    done = cli("run", str(flow), "--json", "-q", "--report", str(report), env=env)
    assert done.returncode == 0, done.stderr
    sent = trust_server.requests("/trust-json")[-1]
    assert sent.query == {"verbose": verbose, "token": TOKEN}  # the values went out
    data = json.loads(done.stdout)  # valid JSON whatever the values
    assert data["ok"] is True
    assert data["endpoints"][0]["error"] is None
    value = data["value"]["a"]
    assert (value["on"], value["off"], value["none"]) == (True, False, None)  # literals kept
    assert value["query"] == {"verbose": "[REDACTED]", "token": "[REDACTED]"}
    assert value["count"] == ("[REDACTED]" if verbose == "1234" else 1234)
    for text in strings(data):
        assert verbose not in text
        assert TOKEN not in text
    assert scrub(done.stdout, [TOKEN]) == done.stdout  # not in any encoding either
    page = report.read_text(encoding="utf-8")
    embedded = page_data(page)  # the report's JSON is valid too
    assert embedded["ok"] is True
    assert '<span class="pill c-ok">ok</span>' in page  # and its markup intact
    assert scrub(page, [TOKEN]) == page


def test_validate_refusal_line_is_scrubbed(cli: Cli, write_flow: WriteFlow) -> None:
    flow = write_flow(
        "endpoints:\n  - name: a\n    url: http://127.0.0.1:9/json\n"
        '    transform_output: "${HOOK_MODULE}:shout"\n'
    )
    done = cli("validate", str(flow), env={"HOOK_MODULE": "acme_private_hooks"})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: endpoints[0].transform_output: import of ")
    assert "[REDACTED]:shout" in done.stderr
    assert "acme_private_hooks" not in done.stdout + done.stderr


def test_empty_report_path_is_a_usage_error(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    flow = write_flow(f"endpoints:\n  - name: a\n    url: {lamina_server.url}/json\n")
    for args in (["run", str(flow)], ["demo"]):
        for empty in ("", "  "):
            done = cli(*args, "--report", empty)
            assert done.returncode == 2, (args, empty)
            assert done.stderr == (
                f"lamina {args[0]}: error: --report: needs a file name, got an empty one\n"
            )
            assert done.stdout == ""
    assert lamina_server.hits() == 0


@pytest.mark.parametrize("command", ["validate", "run"])
def test_header_with_a_newline_is_refused_before_any_call(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer, command: str
) -> None:
    flow = write_flow(
        f"endpoints:\n  - name: billing\n    url: {lamina_server.url}/json\n"
        '    headers: {Authorization: "Bearer ${TOKEN}"}\n'
    )
    done = cli(command, str(flow), env={"TOKEN": "tok-from-file-77\n"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(
        "error: endpoints[0].headers.Authorization: header value holds a line feed (LF)"
    )
    assert "tok-from-file-77" not in done.stdout + done.stderr
    assert lamina_server.hits() == 0
