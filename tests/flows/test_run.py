"""Flow files run end to end against lamina's sample services on a real local server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.flows import build_orchestrator, config_from_dict, flow_layers, load_flow
from lamina.layers import ConcurrencyLimitLayer, RetryLayer, TimeoutLayer
from lamina.testing import LocalServer, ManualClock, upstreams

FLOWS = Path(__file__).resolve().parents[2] / "examples" / "flows"


@pytest.fixture(scope="module")
def services() -> Iterator[LocalServer]:
    with upstreams.install(LocalServer(), down=["search"]) as server:
        yield server


@pytest.fixture
def base(services: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    services.reset()
    monkeypatch.setenv("LAMINA_BASE_URL", services.url)
    return services


async def test_user_enrichment_flow(base: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", "tok-from-env-123")
    config = load_flow(FLOWS / "user_enrichment.yaml")
    async with build_orchestrator(config) as orchestrator:
        report = await orchestrator.run({"user_id": 42})
        again = await orchestrator.run({"user_id": 42})
    assert report.value == {
        "user": {"id": "42", "name": "User 42"},
        "posts": ["post 1 of 42", "post 2 of 42"],
        "analytics": {"user_id": "42", "visits": 42},
    }
    assert again.endpoints["posts"].outcome == "cached"
    assert again.endpoints["user"].outcome == "cached"  # per caller: the key covers the token
    sent = base.requests("/users/42")
    assert len(sent) == 1
    headers = {k.lower(): v for k, v in sent[0].headers.items()}
    assert headers["authorization"] == "Bearer tok-from-env-123"


@pytest.mark.parametrize(
    ("amount", "risk", "fraud"), [(250, "low", "ok"), (20, "unchecked", "skipped")]
)
async def test_payment_pipeline_flow(base: LocalServer, amount: int, risk: str, fraud: str) -> None:
    config = load_flow(FLOWS / "payment_pipeline.toml")
    async with build_orchestrator(config) as orchestrator:
        report = await orchestrator.run({"amount": amount, "card_token": "tok_visa"})
    assert report.endpoints["fraud_check"].outcome == fraud
    assert report.value["process"] == {"amount": amount, "risk": risk}
    assert report.value["notify"] is True
    assert base.hits("/fraud/check") == (1 if fraud == "ok" else 0)


async def test_health_check_flow_uses_its_own_stack(base: LocalServer) -> None:
    config = load_flow(FLOWS / "health_check.yaml")
    async with build_orchestrator(config) as orchestrator:
        report = await orchestrator.run()
    assert report.value == {"auth": "ok", "billing": "ok", "search": "down"}
    assert report.endpoints["search"].outcome == "handled"
    # No retry layer in this flow's stack: the down service was asked once, not 4 times.
    assert base.hits("/services/search/health") == 1
    layers = flow_layers(config)
    assert layers is not None
    assert getattr(config, "layers", None) is layers  # what the CLI and orchestrator read
    stack = layers(config.endpoints[0], config)
    kinds = [type(layer).__name__ for layer in stack]
    assert kinds == [
        "CallTracingLayer",
        "MetricsLayer",
        "ParseLayer",
        "ConcurrencyLimitLayer",
        "CircuitBreakerLayer",
        "TimeoutLayer",
        "TracingLayer",
    ]
    assert isinstance(stack[3], ConcurrencyLimitLayer)
    # One bulkhead shared by every endpoint of the orchestrator, as the flow means.
    built = orchestrator._layers
    bulkhead = built[config.endpoints[0].name][3]
    assert isinstance(bulkhead, ConcurrencyLimitLayer)
    assert built[config.endpoints[2].name][3] is bulkhead
    async with build_orchestrator(config) as other:  # on the same config: its own bulkhead
        assert other._layers[config.endpoints[0].name][3] is not bulkhead


async def test_default_stack_is_used_without_layers(base: LocalServer) -> None:
    config = config_from_dict(
        {"endpoints": [{"name": "flaky", "url": f"{base.url}/flaky/f1?fail=2", "retry_delay": 0}]}
    )
    assert flow_layers(config) is None
    async with build_orchestrator(config) as orchestrator:
        report = await orchestrator.run()
    assert report.endpoints["flaky"].attempts == 3


async def test_reordered_stack_and_injected_clock(base: LocalServer) -> None:
    clock = ManualClock()
    config = config_from_dict(
        {
            "endpoints": [{"name": "a", "url": f"{base.url}/echo", "retry_count": 2}],
            "layers": ["parse", {"timeout": {"seconds": 5}}, "retry"],
        }
    )
    async with build_orchestrator(config, clock=clock) as orchestrator:
        report = await orchestrator.run()
        layers = orchestrator._layers["a"]
    assert report.ok
    assert [type(layer) for layer in layers][1:] == [TimeoutLayer, RetryLayer]
    timeout = layers[1]
    assert isinstance(timeout, TimeoutLayer)
    assert timeout.clock is clock  # the orchestrator's clock reached a layer built from options
    retry = layers[2]
    assert isinstance(retry, RetryLayer)
    assert retry.clock is clock  # the endpoint's own retry layer, as the defaults build it
    assert retry.attempts == 3


async def test_builtin_without_options_follows_the_endpoint(base: LocalServer) -> None:
    config = config_from_dict(
        {
            "endpoints": [
                {"name": "a", "url": f"{base.url}/status/503", "retry_count": 0},
                {"name": "b", "url": f"{base.url}/flaky/f2?fail=1", "retry_delay": 0},
            ],
            "layers": ["parse", "retry", "cache", "logging"],
            "fail_fast": False,
            "error_threshold": 1.0,
        }
    )
    layers = flow_layers(config)
    assert layers is not None
    assert [type(x).__name__ for x in layers(config.endpoints[0], config)] == ["ParseLayer"]
    assert [type(x).__name__ for x in layers(config.endpoints[1], config)] == [
        "ParseLayer",
        "RetryLayer",
    ]
    async with build_orchestrator(config) as orchestrator:
        report = await orchestrator.run()
    assert report.endpoints["a"].outcome == "failed"
    assert base.hits("/status/503") == 1
    assert report.endpoints["b"].outcome == "ok"
