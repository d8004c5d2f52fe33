"""``fallback`` and ``chaos`` by name: in ``lamina.layers``, listed by ``lamina layers``,
in a flow's ``layers:`` (a fallback value as data, a fallback function only through an
allowed import), and from the CLI. Needs the registration (plugins.BUILTIN_LAYERS, the
entry points, lamina.layers.__init__)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import lamina.layers
from lamina import APIOrchestrator, ConfigError, HTTPStatusError
from lamina.flows import load_flow
from lamina.layers.chaos import ENV_VAR, ChaosLayer
from lamina.layers.fallback import FallbackLayer
from lamina.plugins import available_layers, make_layer
from lamina.testing import LocalServer

ROOT = Path(__file__).resolve().parents[2]
TRANSPORTS = ["httpx", "aiohttp", "pyreqwest"]


@pytest.fixture(autouse=True)
def no_env_chaos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_both_are_in_lamina_layers_and_registered_by_name() -> None:
    assert lamina.layers.FallbackLayer is FallbackLayer
    assert lamina.layers.ChaosLayer is ChaosLayer
    layers = available_layers()
    assert layers["fallback"].builtin
    assert layers["chaos"].builtin
    assert isinstance(make_layer("fallback", fallback=0, errors=["TimeoutError"]), FallbackLayer)
    assert isinstance(make_layer("chaos", fault_rate=0.1, seed=1), ChaosLayer)


def flow_text(base: str, hook_module: str | None = None) -> str:
    fallback = (
        f'{{import: "{hook_module}:degraded"}}' if hook_module else "{prices: [], stale: true}"
    )
    return textwrap.dedent(
        f"""
        name: resilience
        mode: parallel
        circuit_breaker_threshold: 100
        layers:
          - call_tracing
          - metrics
          - fallback: {{fallback: {fallback}, statuses: [503], errors: [CircuitOpenError]}}
          - parse
          - retry
          - circuit_breaker
          - timeout
          - tracing
          - chaos: {{fault_rate: 0.3, seed: 4}}
        endpoints:
          - name: prices
            url: {base}/status/503
            retry_count: 2
            retry_delay: 0.001
          - name: catalog
            url: {base}/json
            retry_count: 6
            retry_delay: 0.001
        """
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_flow_with_a_fallback_value_and_chaos(
    lamina_server: LocalServer, tmp_path: Path, transport: str
) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(flow_text(lamina_server.url), encoding="utf-8")
    config = load_flow(path)
    async with APIOrchestrator(config, transport=transport) as orch:
        report = await orch.run()
    prices, catalog = report.endpoints["prices"], report.endpoints["catalog"]
    assert prices.outcome == "fallback"
    assert prices.result == {"prices": [], "stale": True}
    assert isinstance(prices.error, HTTPStatusError)
    assert catalog.outcome == "ok"
    assert report.chaos == {
        "prices": "fault=connect@0.3 seed=4",
        "catalog": "fault=connect@0.3 seed=4",
    }
    assert "CHAOS" in report.summary()


def test_a_fallback_function_only_through_an_allowed_import(
    lamina_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "resilience_hooks.py").write_text(
        "def degraded(error, request):\n"
        "    return {'endpoint': request.endpoint, 'because': type(error).__name__}\n"
        "def by_error(error):\n"
        "    return type(error).__name__\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "flow.yaml"
    path.write_text(flow_text(lamina_server.url, "resilience_hooks"), encoding="utf-8")
    with pytest.raises(ConfigError, match="import of 'resilience_hooks:degraded' refused"):
        load_flow(path)
    config = load_flow(path, allow_imports=["resilience_hooks"])
    report = APIOrchestrator(config).execute_sync()
    assert report["prices"] == {"endpoint": "prices", "because": "HTTPStatusError"}
    one_argument = path.read_text(encoding="utf-8").replace(":degraded", ":by_error")
    path.write_text(one_argument, encoding="utf-8")
    config = load_flow(path, allow_imports=["resilience_hooks"])
    assert APIOrchestrator(config).execute_sync()["prices"] == "HTTPStatusError"


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("{fallback: {fallback: 1, errors: [CircuitOpen]}}", "layers[0].options.errors"),
        ("{fallback: {fallback: 1, statuses: [999]}}", "layers[0].options.statuses"),
        ("{chaos: {fault_rate: 2}}", "layers[0].options.fault_rate"),
        ("{chaos: {status: 503}}", "layers[0].options.status_rate"),
        ("chaos", "layers[0].options.fault_rate"),
    ],
)
def test_bad_options_in_a_flow_name_the_field(tmp_path: Path, entry: str, field: str) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        f"name: bad\nlayers:\n  - {entry}\nendpoints:\n  - name: a\n    url: http://u.test/a\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_flow(path)
    assert info.value.field == field


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_lamina_layers_lists_both() -> None:
    done = run_cli("layers", "--json")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "lamina.layers.fallback:FallbackLayer" in text
    assert "lamina.layers.chaos:ChaosLayer" in text


def test_lamina_run_with_a_fallback_flow_and_lamina_chaos(
    lamina_server: LocalServer, tmp_path: Path
) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            name: cli
            mode: parallel
            layers:
              - call_tracing
              - metrics
              - fallback: {{fallback: "n/a", statuses: [503]}}
              - defaults
            endpoints:
              - name: prices
                url: {lamina_server.url}/status/503
                retry_count: 0
              - name: catalog
                url: {lamina_server.url}/json
                retry_count: 8
                retry_delay: 0.001
            """
        ),
        encoding="utf-8",
    )
    env = {ENV_VAR: "fault_rate=0.4,seed=9"}
    done = run_cli("run", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("CHAOS: fault injection was ON for prices, catalog")
    assert "lamina chaos is ON" in done.stderr  # the WARNING, once per stack
    table = done.stdout.split("\n\n")[1]
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    assert rows["prices"][1] == "fallback"
    as_json = run_cli("run", str(path), "--json", env=env)
    data: dict[str, Any] = json.loads(as_json.stdout)
    assert data["chaos"]["catalog"] == "fault=connect@0.4 seed=9 from LAMINA_CHAOS"
    by_name = {e["name"]: e for e in data["endpoints"]}
    assert by_name["prices"]["outcome"] == "fallback"
    assert by_name["prices"]["error"].startswith("HTTPStatusError")
    bad = run_cli("run", str(path), env={ENV_VAR: "fault_rate=often"})
    assert bad.returncode == 2
    assert "LAMINA_CHAOS.fault_rate" in bad.stderr
