"""``lamina run`` says what went wrong and what the flow returned (issue 14, item 2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from lamina.testing import LocalServer

from .conftest import Cli

WriteFlow = Callable[..., Path]

FLOW = """
mode: parallel
endpoints:
  - name: user
    url: {base}/json?id={{user_id}}&who=${{WHO_TOKEN}}
    retry_count: 0
  - name: broken
    url: {base}/status/500?page=1
    retry_count: 0
  - name: good
    url: {base}/json?step=good-{long}
"""


def _rows(out: str) -> dict[str, str]:
    table = out.split("\n\n")[0]
    return {line.split()[0]: line for line in table.splitlines()[1:]}


def test_run_table_notes_the_error_message_and_prints_the_value(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    flow = write_flow(FLOW.format(base=lamina_server.url, long="x" * 300))
    done = cli("run", str(flow), env={"WHO_TOKEN": "tok-secret-123"})
    assert done.returncode == 1
    rows = _rows(done.stdout)
    # the note holds the message, not only the class, shortened to one table cell
    assert "ConfigError: url: placeholder {user_id} has no value" in rows["user"]
    assert "HTTPStatusError: HTTP 500 server error" in rows["broken"]
    assert all(len(row) < 220 for row in rows.values())
    # the flow's value follows the table, as JSON, scrubbed
    assert "\nvalue:\n" in done.stdout
    head, _, rest = done.stdout.partition("\nvalue:\n")
    assert "endpoint  outcome" in head
    value = json.loads(rest.split("\n\n")[0])
    assert value["user"] is None
    assert value["broken"] is None
    assert value["good"]["query"]["step"].startswith("good-xxx")
    assert "tok-secret-123" not in done.stdout + done.stderr


def test_quiet_drops_the_value(cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer) -> None:
    flow = write_flow(f"endpoints:\n  - name: good\n    url: {lamina_server.url}/json\n")
    done = cli("run", str(flow), "-q")
    assert done.returncode == 0, done.stderr
    assert "value:" not in done.stdout
    assert "good      ok" in done.stdout or "good  ok" in done.stdout


def test_the_value_hides_what_the_requests_sent_as_secrets(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    """A secret header or query value written in the flow itself (no ${ENV}) that the
    upstream answers back (an echo, an API quoting the key) is not printed with the value,
    neither after the table nor in --json: the run's requests name them secret."""
    flow = write_flow(
        f"""
endpoints:
  - name: a
    url: {lamina_server.url}/echo?api_key=literal-qk-123&page=7
    headers:
      X-Api-Key: literal-key-123456
"""
    )
    for args in ((), ("--json",)):
        done = cli("run", str(flow), *args)
        assert done.returncode == 0, done.stderr
        assert '"page": "7"' in done.stdout  # the rest of the value is there
        for secret in ("literal-key-123456", "literal-qk-123"):
            assert secret not in done.stdout + done.stderr


def test_a_note_cut_short_never_keeps_the_start_of_a_hidden_value(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    """The note was cut to its cell before the flow's ${ENV} values were scrubbed from
    the output: a hidden value straddling the cut lost its end, and its start (no longer
    the whole value) was printed."""
    token = "tokABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef"
    flow = write_flow(
        f"endpoints:\n  - name: a\n    url: {lamina_server.url}/status/500?q=${{API_TOKEN}}\n"
        "    retry_count: 0\n"
    )
    done = cli("run", str(flow), "-q", env={"API_TOKEN": token})
    assert done.returncode == 1
    assert "HTTPStatusError: HTTP 500" in done.stdout
    assert token[:8] not in done.stdout + done.stderr
