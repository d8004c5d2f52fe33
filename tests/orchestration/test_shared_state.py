"""Each orchestrator owns its breakers, cache, limiters and metrics, even on a shared config."""

from __future__ import annotations

import httpx

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CircuitOpenError,
    HTTPStatusError,
)
from lamina.layers import CircuitBreakerLayer


def upstream() -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down":
            return httpx.Response(503)
        return httpx.Response(200, json={"path": request.url.path})

    return httpx.MockTransport(handler)


def shared_config() -> APIOrchestrationConfig:
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="down", url="http://api.test/down", retry_count=0),
            APIEndpoint(name="item", url="http://api.test/item"),
        ],
        circuit_breaker_threshold=1,
        cache_ttl=60,
        global_rate_limit=1000,
        error_threshold=1.0,
    )


async def test_two_orchestrators_on_one_config_share_nothing() -> None:
    config = shared_config()
    async with (
        APIOrchestrator(config, transport=upstream()) as first,
        APIOrchestrator(config, transport=upstream()) as second,
    ):
        await first.run()  # opens first's breaker on "down", caches "item"
        again = await first.run()
        assert isinstance(again.endpoints["down"].error, CircuitOpenError)
        assert again.endpoints["item"].outcome == "cached"

        report = await second.run()
        assert isinstance(report.endpoints["down"].error, HTTPStatusError)  # its breaker: closed
        assert report.endpoints["item"].outcome == "ok"  # its cache: empty
        assert first.get_metrics() is not second.get_metrics()
        assert first.get_metrics().endpoint("item").total_requests == 2
        assert second.get_metrics().endpoint("item").total_requests == 1
        assert second.clear_all_cache() == 1
        assert (await first.run()).endpoints["item"].outcome == "cached"


async def test_default_layers_in_a_layers_callable_use_the_orchestrators_state() -> None:
    config = shared_config()
    orchestrator = APIOrchestrator(
        config,
        transport=upstream(),
        layers=lambda ep, cfg: list(APIOrchestrator.default_layers(ep, cfg)),
    )
    async with orchestrator:
        await orchestrator.run()
        again = await orchestrator.run()
    assert isinstance(again.endpoints["down"].error, CircuitOpenError)
    assert again.endpoints["item"].outcome == "cached"
    assert orchestrator.get_metrics().endpoint("item").total_requests == 2
    breakers = {
        id(layer.pool)
        for layers in orchestrator._layers.values()
        for layer in layers
        if isinstance(layer, CircuitBreakerLayer)
    }
    assert len(breakers) == 1  # one set of breakers for every endpoint
    # outside a layers= callable the defaults get state of their own
    alone = APIOrchestrator.default_layers(config.endpoints[0], config)
    assert not any(id(layer) in breakers for layer in alone)
