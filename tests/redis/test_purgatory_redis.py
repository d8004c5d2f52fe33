"""Issue 14 item 9: purgatory's Redis unit of work as the breakers' store, on real Redis
and the real local server: two factories (two processes' worth) share one breaker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import redis
from lamina import CircuitOpenError, Request, ServiceBuilder
from lamina.layers.circuit_breaker import CircuitBreakerLayer, CircuitState
from lamina.testing import LocalServer
from lamina.transports import HttpxTransport

purgatory = pytest.importorskip("purgatory")


@pytest.fixture
def breaker_name(sync_redis: redis.Redis, prefix: str) -> Iterator[str]:
    yield prefix
    keys = list(sync_redis.scan_iter(match=f"cbr::{prefix}*", count=100))  # purgatory's keys
    if keys:
        sync_redis.delete(*keys)


async def test_two_factories_on_one_redis_share_a_breaker(
    redis_url: str, breaker_name: str, lamina_server: LocalServer
) -> None:
    layers, factories = [], []
    for _ in range(2):
        made = purgatory.AsyncCircuitBreakerFactory(
            default_threshold=2, default_ttl=30, uow=purgatory.AsyncRedisUnitOfWork(redis_url)
        )
        await made.initialize()
        factories.append(made)
        layers.append(CircuitBreakerLayer(backend=made, name=breaker_name))
    url = lamina_server.url_for("/status/502")
    async with HttpxTransport() as transport:
        first, second = (ServiceBuilder().layer(layer).service(transport) for layer in layers)
        for _ in range(2):
            assert (await first(Request("GET", url))).status_code == 502
        hits = lamina_server.hits("/status/502")
        with pytest.raises(CircuitOpenError) as info:
            await second(Request("GET", url))  # the other "process" sees it open
    assert lamina_server.hits("/status/502") == hits
    assert 29 < info.value.retry_after <= 30
    assert layers[1].breaker(breaker_name).state is CircuitState.OPEN
    await layers[0].breaker(breaker_name).reset()
    async with HttpxTransport() as transport:
        second = ServiceBuilder().layer(layers[1]).service(transport)
        ok = await second(Request("GET", lamina_server.url_for("/status/200")))
    assert ok.status_code == 200
    for made in factories:
        await made.uow.contexts.redis.aclose()
