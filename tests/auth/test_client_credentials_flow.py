"""ClientCredentialsLayer by name: from a flow file (Python) and from the ``lamina`` CLI,
against the local token server; the client secret never reaches any output."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from lamina import APIOrchestrator
from lamina.flows import config_from_dict, load_flow
from lamina.layers import ClientCredentialsLayer
from lamina.plugins import get_layer
from lamina.testing import LocalServer
from lamina.testing.oauth import OAuthUpstream

ROOT = Path(__file__).resolve().parents[2]
SECRET = "flow-secret-5c2e8a7d91"

FLOW = """\
mode: parallel
layers:
  - call_tracing
  - metrics
  - parse
  - retry
  - name: client_credentials
    options:
      token_url: {base}{prefix}/token
      client_id: reports
      client_secret: ${{REPORTS_CLIENT_SECRET}}
      scope: read
  - circuit_breaker
  - timeout
  - tracing
endpoints:
  - name: one
    url: {base}{prefix}/api/reports/1
  - name: two
    url: {base}{prefix}/api/reports/2
"""


def install(server: LocalServer) -> OAuthUpstream:
    prefix = f"/oauth-{uuid.uuid4().hex[:8]}"
    return OAuthUpstream.install(server, client_id="reports", client_secret=SECRET, prefix=prefix)


def test_the_layer_is_a_builtin_by_name() -> None:
    plugin = get_layer("client_credentials")
    assert plugin.builtin
    assert plugin.load() is ClientCredentialsLayer


async def test_a_flow_builds_one_shared_layer_for_every_endpoint(
    lamina_server: LocalServer, tmp_path: Path, monkeypatch: object
) -> None:
    oauth = install(lamina_server)
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW.format(base=lamina_server.url, prefix=oauth.prefix), encoding="utf-8")
    os.environ["REPORTS_CLIENT_SECRET"] = SECRET
    try:
        flow = load_flow(path)
    finally:
        del os.environ["REPORTS_CLIENT_SECRET"]
    async with APIOrchestrator(flow) as orchestrator:
        report = await orchestrator.run()
    assert {name: r.outcome for name, r in report.endpoints.items()} == {"one": "ok", "two": "ok"}
    assert oauth.issued == 1  # one layer, one token, two endpoints
    assert SECRET not in repr(flow)


def test_options_are_checked_when_the_flow_loads(lamina_server: LocalServer) -> None:
    import pytest

    from lamina import ConfigError

    data = {
        "endpoints": [{"name": "a", "url": "http://127.0.0.1:1/a"}],
        "layers": [
            {
                "name": "client_credentials",
                "options": {"token_url": "ftp://x", "client_id": "a", "client_secret": "b"},
            }
        ],
    }
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert caught.value.field == "layers[0].options.token_url"


def test_the_cli_runs_a_flow_with_client_credentials(
    lamina_server: LocalServer, tmp_path: Path
) -> None:
    oauth = install(lamina_server)
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW.format(base=lamina_server.url, prefix=oauth.prefix), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "run", str(path), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REPORTS_CLIENT_SECRET": SECRET},
    )
    assert done.returncode == 0, done.stderr
    assert '"one"' in done.stdout
    assert oauth.issued == 1
    for text in (done.stdout, done.stderr):
        assert SECRET not in text
    validate = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "validate", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REPORTS_CLIENT_SECRET": SECRET},
    )
    assert validate.returncode == 0, validate.stderr
    assert SECRET not in validate.stdout + validate.stderr
