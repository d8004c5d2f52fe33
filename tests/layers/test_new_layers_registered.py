"""``hedge`` and ``adaptive_concurrency`` by name: in ``lamina.layers``, listed by
``lamina layers``, in a flow's ``layers:``, from the orchestrator's ``layers=`` and from
the CLI, on every transport. Needs the registration (plugins.BUILTIN_LAYERS, the entry
points, lamina.layers.__init__)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import lamina.layers
from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    ConcurrencyLimitExceeded,
    ConfigError,
    Request,
    ServiceBuilder,
)
from lamina.flows import load_flow
from lamina.layers.adaptive_concurrency import AdaptiveConcurrencyLayer
from lamina.layers.hedge import HedgeLayer
from lamina.layers.metrics import MetricsLayer
from lamina.metrics import IOMetrics
from lamina.plugins import available_layers, make_layer
from lamina.testing import LocalServer
from lamina.testing.clock import ManualClock

from .test_adaptive_concurrency import Gate
from .test_hedge import URL, Upstream, settle

ROOT = Path(__file__).resolve().parents[2]
TRANSPORTS = ["httpx", "aiohttp", "pyreqwest"]


def test_both_are_in_lamina_layers_and_registered_by_name() -> None:
    assert lamina.layers.HedgeLayer is HedgeLayer
    assert lamina.layers.AdaptiveConcurrencyLayer is AdaptiveConcurrencyLayer
    layers = available_layers()
    assert layers["hedge"].builtin
    assert layers["adaptive_concurrency"].builtin
    hedge = make_layer("hedge", delay="p90", max_hedges=2)
    assert isinstance(hedge, HedgeLayer)
    assert (hedge.delay, hedge.max_hedges) == ("p90", 2)
    assert isinstance(make_layer("adaptive_concurrency"), AdaptiveConcurrencyLayer)


def flow_text(base: str, key: str) -> str:
    return textwrap.dedent(
        f"""
        name: hedged
        mode: parallel
        layers:
          - call_tracing
          - metrics
          - parse
          - retry
          - adaptive_concurrency: {{}}
          - hedge: {{delay: 0.05}}
          - timeout
          - tracing
        endpoints:
          - name: slow_first
            url: {base}/slow-some/{key}?first=1&slow_ms=3000
            timeout: 1
          - name: plain
            url: {base}/json
        """
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_flow_hedges_the_slow_call(
    lamina_server: LocalServer, tmp_path: Path, transport: str
) -> None:
    key = f"flow-{transport}"
    path = tmp_path / "flow.yaml"
    path.write_text(flow_text(lamina_server.url, key), encoding="utf-8")
    config = load_flow(path)
    async with APIOrchestrator(config, transport=transport) as orch:
        report = await orch.run()
    slow = report.endpoints["slow_first"]
    assert slow.outcome == "ok"
    assert slow.result == {"arrival": 2, "slow": False}  # the hedge answered
    assert report.endpoints["plain"].outcome == "ok"
    assert lamina_server.hits(f"/slow-some/{key}") == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_orchestrators_layers_option(lamina_server: LocalServer, transport: str) -> None:
    key = f"orch-{transport}"
    hedge = HedgeLayer(0.05)
    limiter = AdaptiveConcurrencyLayer()
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(
                name="slow_first",
                url=lamina_server.url_for(f"/slow-some/{key}?first=1&slow_ms=3000"),
            )
        ],
    )

    def layers(endpoint: APIEndpoint, cfg: APIOrchestrationConfig) -> list[Any]:
        defaults = APIOrchestrator.default_layers(endpoint, cfg)
        return [limiter, *defaults[:-2], hedge, *defaults[-2:]]  # above timeout and tracing

    async with APIOrchestrator(config, layers=layers, transport=transport) as orch:
        report = await orch.run()
    assert report.endpoints["slow_first"].result == {"arrival": 2, "slow": False}
    assert limiter.in_flight == 0


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("{hedge: {delay: fast}}", "layers[0].options.delay"),
        ("{hedge: {max_hedges: 0}}", "layers[0].options.max_hedges"),
        ("{adaptive_concurrency: {min_limit: 0}}", "layers[0].options.min_limit"),
        ("{adaptive_concurrency: {max_wait: -1}}", "layers[0].options.max_wait"),
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


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_lamina_layers_lists_both() -> None:
    done = run_cli("layers", "--json")
    assert done.returncode == 0, done.stderr
    assert "lamina.layers.hedge:HedgeLayer" in done.stdout
    assert "lamina.layers.adaptive_concurrency:AdaptiveConcurrencyLayer" in done.stdout


def test_lamina_run_with_a_hedged_flow(lamina_server: LocalServer, tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(flow_text(lamina_server.url, "cli"), encoding="utf-8")
    done = run_cli("run", str(path), "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    by_name = {e["name"]: e for e in data["endpoints"]}
    assert by_name["slow_first"]["outcome"] == "ok"
    assert lamina_server.hits("/slow-some/cli") == 2


# -- counted by MetricsLayer (needs metrics.EVENT_KINDS: hedge.sent, adaptive.rejected) ---


async def test_hedges_are_counted_by_the_metrics_layer() -> None:
    clock = ManualClock()
    upstream = Upstream()
    metrics = IOMetrics()
    service = (
        ServiceBuilder()
        .layer(MetricsLayer(metrics))
        .layer(HedgeLayer(0.1, clock=clock))
        .service(upstream)
    )
    call = asyncio.create_task(service(Request("GET", URL, endpoint="users")))
    await settle()
    clock.advance(0.1)
    await settle()
    upstream.answer(1)
    await call
    assert metrics.endpoint("users").events["hedges"] == 1


async def test_shed_calls_are_counted_by_the_metrics_layer() -> None:
    gate = Gate()
    metrics = IOMetrics()
    layer = AdaptiveConcurrencyLayer(clock=ManualClock())
    service = ServiceBuilder().layer(MetricsLayer(metrics)).layer(layer).service(gate)
    calls = [asyncio.create_task(service(Request("GET", URL, endpoint="e"))) for _ in range(3)]
    await settle()
    with pytest.raises(ConcurrencyLimitExceeded):
        await service(Request("GET", URL, endpoint="e"))
    assert metrics.endpoint("e").events["adaptive_rejections"] == 1
    for future in gate.waiting:
        future.set_result(None)
    await asyncio.gather(*calls)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("options", ["{}", "{per_endpoint: true}"])
async def test_a_flow_shares_one_adaptive_limit_unless_per_endpoint(
    lamina_server: LocalServer, tmp_path: Path, options: str, transport: str
) -> None:
    # four endpoints called at once, each answering in 300 ms; the limit starts at 3
    key = f"apart-{len(options)}-{transport}"
    endpoints = "".join(
        f"\n  - name: e{i}\n    url: {lamina_server.url}/capacity/{key}-{i}?service_ms=300"
        for i in range(4)
    )
    path = tmp_path / "flow.yaml"
    path.write_text(
        f"name: apart\nmode: parallel\nlayers:\n  - adaptive_concurrency: {options}\n"
        f"  - timeout\nendpoints:{endpoints}\n",
        encoding="utf-8",
    )
    async with APIOrchestrator(load_flow(path), transport=transport) as orch:
        report = await orch.run()
    outcomes = sorted(r.outcome for r in report.endpoints.values())
    if options == "{}":  # one limiter for the flow: the fourth call is shed
        assert outcomes == ["failed", "ok", "ok", "ok"]
    else:
        assert outcomes == ["ok"] * 4
