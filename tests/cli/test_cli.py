"""The ``lamina`` command through its real entry point, in a subprocess, on a real server."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lamina.cli import main
from lamina.testing import LocalServer

from .conftest import ROOT, Cli

WriteFlow = Callable[..., Path]


def hybrid_flow(base: str) -> str:
    return f"""
name: checkout
mode: hybrid
endpoints:
  - name: auth
    url: {base}/json?ms=30&step=auth
  - name: user
    url: {base}/json?ms=200&step=user
    depends_on: [auth]
  - name: flaky
    url: {base}/flaky/cli-flaky?fail=2
    retry_delay: 0.02
    depends_on: [auth]
"""


def test_run_shows_progress_results_and_waterfall(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    flow = write_flow(hybrid_flow(lamina_server.url))
    done = cli("run", str(flow))
    assert done.returncode == 0, done.stderr
    out, err = done.stdout, done.stderr
    # the results table
    assert "endpoint  outcome  status  attempts  latency  cached  note" in out
    table = out.split("\n\n")[0]
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    assert rows["flaky"][1:4] == ["ok", "200", "3"]
    assert rows["auth"][1:4] == ["ok", "200", "1"]
    # the waterfall: one bar per endpoint, failed attempts and retry waits drawn
    bars = {line.split()[0]: line for line in out.splitlines() if "|" in line}
    assert set(bars) == {"auth", "user", "flaky"}
    assert "x" in bars["flaky"].split("|")[1]
    assert "." in bars["flaky"].split("|")[1]
    assert "#" in bars["auth"].split("|")[1]
    assert "critical path auth -> user, ok" in out
    # live progress on stderr, never on stdout
    assert "waiting: auth, user, flaky" in err
    assert "auth: running" in err
    assert "auth: ok (200)" in err
    assert "flaky: retrying (attempt 2" in err
    assert "running" not in out
    assert lamina_server.hits("/flaky/cli-flaky") == 3


def test_failed_run_exits_1_and_json_is_the_only_stdout(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    flow = write_flow(
        f"""
mode: parallel
endpoints:
  - name: good
    url: {lamina_server.url}/json?step=good
  - name: broken
    url: {lamina_server.url}/status/503
    retry_count: 1
    retry_delay: 0.01
"""
    )
    done = cli("run", str(flow), "--json")
    assert done.returncode == 1
    data = json.loads(done.stdout)  # nothing but JSON on stdout
    assert data["ok"] is False
    assert data["mode"] == "parallel"
    by_name = {e["name"]: e for e in data["endpoints"]}
    assert by_name["good"]["outcome"] == "ok"
    assert by_name["broken"]["outcome"] == "failed"
    assert by_name["broken"]["attempts"] == 2
    assert by_name["broken"]["status_code"] == 503
    kinds = [s["kind"] for s in by_name["broken"]["timeline"]["segments"]]
    assert kinds == ["attempt", "retry-wait", "attempt"]
    assert data["value"]["good"]["query"]["step"] == "good"
    assert "broken: failed (HTTPStatusError)" in done.stderr
    assert lamina_server.hits("/status/503") == 2


def test_fail_fast_run_reports_what_stopped_it(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    flow = write_flow(
        f"""
mode: sequential
fail_fast: true
endpoints:
  - name: first
    url: {lamina_server.url}/status/500
    retry_count: 0
  - name: second
    url: {lamina_server.url}/json
"""
    )
    done = cli("run", str(flow), "-q")
    assert done.returncode == 1
    assert "error: run stopped: [first] failed: HTTPStatusError" in done.stderr
    assert "first     failed" in done.stdout
    assert "FAILED" in done.stdout
    assert done.stderr.count("running") == 0  # -q: no progress
    assert lamina_server.hits("/json") == 0


@pytest.mark.parametrize("how", ["inline", "file", "stdin"])
def test_input_as_json_file_or_stdin(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer, tmp_path: Path, how: str
) -> None:
    flow = write_flow(
        f"""
endpoints:
  - name: order
    url: {lamina_server.url}/flaky/{{order_id}}?fail=0
"""
    )
    text = '{"order_id": "A-17"}'
    (tmp_path / "input.json").write_text(text)
    option = {"inline": text, "file": f"@{tmp_path / 'input.json'}", "stdin": "@-"}[how]
    done = cli("run", str(flow), "--input", option, "--json", stdin=text)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["value"]["order"] == {"attempt": 1, "ok": True}
    assert lamina_server.hits("/flaky/A-17") == 1


def test_bad_invocations_exit_2_with_a_clear_message(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    flow = write_flow(f"endpoints:\n  - name: a\n    url: {lamina_server.url}/json\n")
    nothing = cli()
    assert nothing.returncode == 2
    assert "usage: lamina" in nothing.stderr
    unknown = cli("frobnicate")
    assert unknown.returncode == 2
    assert "invalid choice: 'frobnicate'" in unknown.stderr
    no_flow = cli("run")
    assert no_flow.returncode == 2
    assert "the following arguments are required: FLOW" in no_flow.stderr
    missing = cli("validate", "no/such/flow.yaml")
    assert missing.returncode == 2
    assert "lamina validate: error: FLOW: no such file: no/such/flow.yaml" in missing.stderr
    bad_input = cli("run", str(flow), "--input", "{not json")
    assert bad_input.returncode == 2
    assert "error: --input: not valid JSON" in bad_input.stderr
    bad_format = cli("graph", str(flow), "--format", "png")
    assert bad_format.returncode == 2
    assert "invalid choice: 'png'" in bad_format.stderr
    assert lamina_server.hits() == 0


def test_invalid_flow_prints_field_and_message(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    flow = write_flow(
        f"""
mode: hybrid
endpoints:
  - name: user
    url: {lamina_server.url}/json
  - name: posts
    url: {lamina_server.url}/json
    depends_on: [auth]
"""
    )
    for command in ("run", "validate", "graph"):
        done = cli(command, str(flow))
        assert done.returncode == 2, command
        assert done.stderr.startswith("error: endpoints[1].depends_on: unknown endpoint 'auth'"), (
            done.stderr
        )
        assert done.stdout == ""
    timeout = write_flow(
        f"endpoints:\n  - name: a\n    url: {lamina_server.url}/json\n    timeout: 0\n", "t.yaml"
    )
    done = cli("validate", str(timeout))
    assert done.returncode == 2
    assert done.stderr.startswith("error: endpoints[0].timeout: must be")
    assert lamina_server.hits() == 0


@pytest.mark.parametrize("command", [[], ["run"], ["validate"], ["graph"], ["layers"], ["demo"]])
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lamina {' '.join(command)}".rstrip())
    if command == ["run"]:
        for option in ("--input", "--otlp-endpoint", "--report", "--json"):
            assert option in out


SECRET_FLOW = """
name: secrets
endpoints:
  - name: echo
    url: {base}/echo?api_key=${{API_KEY}}&page=1
    method: POST
    headers:
      Authorization: Bearer ${{API_TOKEN}}
      X-Tenant: ${{TENANT_SECRET}}
    body: {{"note": "hello"}}
"""
SECRETS = {
    "API_KEY": "key-4f1b2c9d",
    "API_TOKEN": "tok-9a8b7c6d5e",
    "TENANT_SECRET": "tenant-77x1",
}


def test_secrets_never_printed(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer, tmp_path: Path
) -> None:
    flow = write_flow(SECRET_FLOW.format(base=lamina_server.url))
    report = tmp_path / "run.html"
    outputs = []
    validate = cli("validate", str(flow), env=SECRETS)
    assert validate.returncode == 0, validate.stderr
    assert "Authorization=[REDACTED]" in validate.stdout
    assert "api_key=%5BREDACTED%5D" in validate.stdout or "api_key=[REDACTED]" in validate.stdout
    for args in (["graph"], ["run", "--report", str(report)], ["run", "--json"]):
        done = cli(args[0], str(flow), *args[1:], env=SECRETS)
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    outputs += [validate.stdout, validate.stderr, report.read_text()]
    # the echo upstream really received them...
    sent = lamina_server.requests("/echo")[-1]
    assert sent.headers["authorization"] == "Bearer tok-9a8b7c6d5e"
    # ...and none of them reached any output, even the echoed body in --json
    for text in outputs:
        for secret in SECRETS.values():
            assert secret not in text
    assert "[REDACTED]" in outputs[2 * 2]  # the --json stdout holds the scrubbed echo


def test_graph_as_text_and_mermaid(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    base = lamina_server.url
    flow = write_flow(
        f"""
mode: hybrid
endpoints:
  - {{name: auth, url: "{base}/json"}}
  - {{name: user, url: "{base}/json", depends_on: [auth]}}
  - {{name: stock, url: "{base}/json", depends_on: [auth]}}
  - {{name: order, url: "{base}/json", method: POST, depends_on: [user, stock]}}
"""
    )
    done = cli("graph", str(flow))
    assert done.returncode == 0, done.stderr
    text, mermaid = done.stdout.split("\n\n")
    assert "step 1: auth" in text
    assert "step 2: user, stock" in text
    assert "step 3: order" in text
    assert "  user --> order" in text
    assert mermaid.splitlines()[0] == "flowchart LR"
    assert '    n3["order<br/>POST"]' in mermaid
    for edge in ("n0 --> n1", "n0 --> n2", "n1 --> n3", "n2 --> n3"):
        assert f"    {edge}" in mermaid
    only = cli("graph", str(flow), "--format", "mermaid")
    assert only.stdout.startswith("flowchart LR")
    assert "step" not in only.stdout
    assert lamina_server.hits() == 0  # drawing a graph calls nothing


PLUGIN_MODULE = '''
class StampLayer:
    """Adds a header."""

    def __init__(self, header: str = "X-Stamp", value: str = "1") -> None:
        self.header, self.value = header, value

    def wrap(self, inner):
        return inner
'''


def test_layers_lists_builtins_and_plugins(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "stampplug.py").write_text(PLUGIN_MODULE)
    dist = tmp_path / "stampplug-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: stampplug\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(
        "[lamina.layers]\nstamp = stampplug:StampLayer\nghost = no_such_module:Layer\n"
    )
    done = cli("layers", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    builtins, plugins = out.split("plugin layers:")
    for name in ("retry", "timeout", "circuit_breaker", "rate_limit", "cache", "parse"):
        assert f"  {name}  (lamina.layers." in builtins
    assert "stamp  (stampplug:StampLayer)  [stampplug 0.3]" in plugins
    assert "options: header: str = 'X-Stamp', value: str = '1'" in plugins
    assert "ghost" in plugins
    assert "from package stampplug 0.3 failed to import" in plugins
    assert "1 layer(s) cannot be used: ghost" in done.stderr
    as_json = cli("layers", "--json", env={"PYTHONPATH": str(tmp_path)})
    rows = {r["name"]: r for r in json.loads(as_json.stdout)}
    assert rows["timeout"]["builtin"] is True
    assert rows["stamp"]["builtin"] is False


class Receiver:
    """A tiny OTLP/HTTP receiver that keeps every POST body."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.bodies.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_otlp_endpoint_exports_the_run(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer, receiver: Receiver
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    flow = write_flow(hybrid_flow(lamina_server.url))
    done = cli("run", str(flow), "--otlp-endpoint", receiver.url, "-q")
    assert done.returncode == 0, done.stderr
    names, services = [], set()
    for path, body in receiver.bodies:
        assert path == "/v1/traces"
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for rs in message.resource_spans:
            services |= {
                a.value.string_value for a in rs.resource.attributes if a.key == "service.name"
            }
            names += [s.name for ss in rs.scope_spans for s in ss.spans]
    assert services == {"lamina-cli"}
    assert "lamina.run hybrid" in names
    assert sum(name.startswith("GET") for name in names) >= 5  # 3 calls, 5 attempts


def test_lamina_executable(cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer) -> None:
    exe = shutil.which("lamina")
    if exe is None:
        pytest.skip("the `lamina` script is not installed (pip install -e . adds it)")
    flow = write_flow(hybrid_flow(lamina_server.url))
    done = subprocess.run(
        [exe, "run", str(flow), "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["critical_path"] == ["auth", "user"]
    assert subprocess.run([exe, "--help"], capture_output=True, text=True).stdout.startswith(
        "usage: lamina"
    )


def test_demo_runs_every_mode_and_writes_a_report(cli: Cli, tmp_path: Path) -> None:
    report = tmp_path / "demo.html"
    done = cli("demo", "--report", str(report), timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for mode in ("PARALLEL", "PIPELINE", "HYBRID", "SEQUENTIAL", "CONDITIONAL"):
        assert f"== {mode}" in out
    assert "Rate limit: 8 calls" in out  # the FANOUT run
    assert "CircuitOpenError" in out
    sequential = out.split("== SEQUENTIAL")[1].split("\n== ")[0]
    assert "slow_search   failed           2" in sequential
    assert "billing_down  handled          3" in sequential  # the down service
    assert "ConnectError" in sequential
    assert "TimeoutError" in sequential
    conditional = out.split("== CONDITIONAL")[1]
    assert "gold_offers  skipped" in conditional  # silver tier
    assert "quota        ok       200     2" in conditional  # 429 + Retry-After, then ok
    assert "account      cached   200     0" in conditional  # the second run
    assert "~" in [line for line in conditional.splitlines() if line.startswith("limited")][-1]
    assert f"HTML report of this run: {report}" in out
    assert 'class="bar' not in report.read_text()  # bars are drawn by the page's script
    assert "billing_down" in report.read_text()


# -- flows are data, not code (issue 12, items 8 and 9) ----------------------------------


def hooks_module(tmp_path: Path) -> tuple[str, Path]:
    """A module in ``tmp_path`` whose import touches a marker file; returns (name, marker)."""
    marker = tmp_path / "imported"
    (tmp_path / "cli_hooks.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "def shout(value):\n    return str(value).upper()\n",
        encoding="utf-8",
    )
    return "cli_hooks", marker


def test_validate_imports_nothing_and_lists_what_run_would_import(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer, tmp_path: Path
) -> None:
    name, marker = hooks_module(tmp_path)
    flow = write_flow(
        f"""
endpoints:
  - name: a
    url: {lamina_server.url}/json?who=cli
    transform_output: "{name}:shout"
  - name: b
    url: {lamina_server.url}/json
    condition: "this:s"
"""
    )
    env = {"PYTHONPATH": str(tmp_path)}
    refused = cli("validate", str(flow), env=env)
    assert refused.returncode == 2
    assert "imports (not imported by validate; imports are not allowed):" in refused.stdout
    assert f"endpoints[0].transform_output: {name}:shout (flows may not import" in refused.stdout
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(
        f"error: endpoints[0].transform_output: import of '{name}:shout' refused:"
    )
    allowed = cli("validate", "--allow-imports-from", f"{name},this", str(flow), env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert f"endpoints[0].transform_output: {name}:shout (allowed)" in allowed.stdout
    assert "endpoints[1].condition: this:s (allowed)" in allowed.stdout
    graph = cli("graph", str(flow), env=env)
    assert graph.returncode == 0, graph.stderr
    # nothing was imported: no marker, and `this` printed no Zen of Python
    for done in (refused, allowed, graph):
        assert "Beautiful is better than ugly" not in done.stdout + done.stderr
    assert not marker.exists()
    assert lamina_server.hits() == 0


def test_run_imports_only_when_allowed(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer, tmp_path: Path
) -> None:
    name, marker = hooks_module(tmp_path)
    flow = write_flow(
        f"endpoints:\n  - name: a\n    url: {lamina_server.url}/json?who=cli\n"
        f'    transform_output: "{name}:shout"\n'
    )
    env = {"PYTHONPATH": str(tmp_path)}
    refused = cli("run", str(flow), "--json", env=env)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert "Traceback" not in refused.stderr
    assert "--allow-imports-from cli_hooks" in refused.stderr
    assert not marker.exists()
    assert lamina_server.hits() == 0
    blanket = cli("run", str(flow), "--json", "--allow-imports", env=env)
    assert blanket.returncode == 2  # a blanket allow is refused: name the modules
    assert "--allow-imports is refused" in blanket.stderr
    assert "--allow-imports-from PREFIX" in blanket.stderr
    assert not marker.exists()
    done = cli("run", str(flow), "--json", "--allow-imports-from", name, env=env)
    assert done.returncode == 0, done.stderr
    assert "'WHO': 'CLI'" in json.loads(done.stdout)["value"]["a"]
    assert marker.exists()
    bad = cli("run", str(flow), "--allow-imports-from", "os;rm", env=env)
    assert bad.returncode == 2
    assert "lamina run: error: --allow-imports-from: must hold module names" in bad.stderr


def test_run_refuses_builtins_eval_with_a_jmespath_literal(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    flow = write_flow(
        f"""
endpoints:
  - name: a
    url: {lamina_server.url}/json
    response_parser: "`\\"__import__('pathlib').Path(r'{marker}').touch()\\"`"
    transform_output: "builtins:eval"
"""
    )
    for option in ([], ["--allow-imports-from", "json"], ["--allow-imports-from", "json,os"]):
        done = cli("run", str(flow), *option)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(
            "error: endpoints[0].transform_output: import of 'builtins:eval' refused"
        )
        assert done.stderr.count("\n") == 1
    assert not marker.exists()
    assert lamina_server.hits() == 0


HOSTILE_FILES: dict[str, str | bytes] = {
    "deep.yaml": "endpoints:\n  " + "- " * 50_000 + "x\n",
    "deep.json": '{"endpoints": ' + "[" * 50_000 + "]" * 50_000 + "}",
    "deep.toml": "endpoints = " + "[" * 50_000 + "]" * 50_000 + "\n",
    "latin1.yaml": "name: café\n".encode("latin-1"),
}


@pytest.mark.parametrize("name", [*HOSTILE_FILES, "huge.yaml"])
def test_hostile_flow_files_exit_2_with_one_line(
    cli: Cli, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    if name == "huge.yaml":
        with path.open("wb") as stream:
            stream.truncate(50 * 1024 * 1024)  # sparse: refused on its size
    else:
        data = HOSTILE_FILES[name]
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    expected = {
        "huge.yaml": "huge.yaml: 52428800 bytes is more than a flow may hold",
        "latin1.yaml": "latin1.yaml: not UTF-8 text: byte 0xe9 at offset 9 (line 1)",
    }.get(name, f"{name}: nesting deeper than 64 levels")
    for command in ("validate", "run", "graph"):
        assert main([command, str(path)]) == 2
        out, err = capsys.readouterr()
        assert err.startswith(f"error: {expected}"), err
        assert err.count("\n") == 1, err
        assert out == ""
    if name == "latin1.yaml":  # the real entry point printed a UnicodeDecodeError traceback
        done = cli("run", str(path))
        assert done.returncode == 2
        assert done.stderr.startswith(f"error: {expected}")
        assert done.stderr.count("\n") == 1
