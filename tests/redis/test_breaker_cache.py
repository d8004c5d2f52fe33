"""The Redis breaker storage and cache store in one process, against a real Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest

import redis
from lamina import CircuitOpenError, HttpxTransport, Request, ServiceBuilder, TimeoutError
from lamina.backends.redis import RedisBackend
from lamina.layers.cache import CacheLayer, RedisCacheStore
from lamina.layers.circuit_breaker import (
    CircuitBreaker,
    CircuitBreakerLayer,
    CircuitState,
    RedisBreakerStore,
)
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer

from .conftest import keys_under


async def test_two_breakers_on_one_record_share_state(
    backend: RedisBackend, sync_redis: redis.Redis, prefix: str
) -> None:
    # two CircuitBreaker objects with separate backends = two processes' view
    a = CircuitBreaker(2, 30, name="dep", backend=RedisBreakerStore(backend))
    b = CircuitBreaker(2, 30, name="dep", backend=backend.breaker_backend())
    changes: list[Any] = []
    b.on_state_change(changes.append)

    async def boom() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await a.call(boom)
    with pytest.raises(ConnectionError):
        await b.call(boom)  # the second failure, counted in Redis, opens it
    assert [(c.old, c.new) for c in changes] == [(CircuitState.CLOSED, CircuitState.OPEN)]
    with pytest.raises(CircuitOpenError) as info:
        await a.call(boom)
    assert 29 < info.value.retry_after <= 30
    assert a.state is CircuitState.OPEN
    assert a.failure_count == 2
    key = f"{prefix}:v1:breaker:{{dep}}"
    assert keys_under(sync_redis, prefix) == [key]
    assert 86_000_000 < sync_redis.pttl(key) <= 86_400_000
    await a.reset()
    assert sync_redis.exists(key) == 0
    assert await b.call(lambda: 7) == 7


async def test_success_resets_the_shared_failure_count(backend: RedisBackend) -> None:
    brk = CircuitBreaker(3, 30, name="flappy", backend=backend.breaker_backend())

    class Boom(Exception):
        pass

    async def boom() -> None:
        raise Boom

    for _ in range(2):
        with pytest.raises(Boom):
            await brk.call(boom)
    assert brk.failure_count == 2
    await brk.call(lambda: None)
    assert brk.failure_count == 0
    assert brk.state is CircuitState.CLOSED


async def test_layer_with_redis_backend_protects_the_real_server(
    backend: RedisBackend, lamina_server: LocalServer
) -> None:
    async with HttpxTransport() as transport:
        one = ServiceBuilder([CircuitBreakerLayer(2, 30, backend=backend)]).service(transport)
        two = ServiceBuilder([CircuitBreakerLayer(2, 30, backend=backend)]).service(transport)
        url = lamina_server.url_for("/status/503")
        for _ in range(2):
            assert (await one(Request("GET", url, endpoint="pay"))).status_code == 503
        with pytest.raises(CircuitOpenError):
            await two(Request("GET", url, endpoint="pay"))
        # another endpoint name has its own record
        assert (await two(Request("GET", url, endpoint="other"))).status_code == 503
    assert lamina_server.hits("/status/503") == 3


def cache_keys(client: redis.Redis, prefix: str) -> list[str]:
    """The cache entries under ``prefix`` (not the shared key secret)."""
    return [k for k in keys_under(client, prefix) if k.startswith(f"{prefix}:v1:cache:")]


def cache_stack(store: Any, transport: HttpxTransport, **options: Any) -> Any:
    return ServiceBuilder([CacheLayer(store=store, **options), ParseLayer()]).service(transport)


async def test_cache_hit_across_layers_and_values_are_plain_json(
    backend: RedisBackend, sync_redis: redis.Redis, prefix: str, lamina_server: LocalServer
) -> None:
    url = lamina_server.url_for("/echo?q=1")
    secret = "Bearer sk-live-0123456789abcdef"
    headers = {"Authorization": secret}
    async with HttpxTransport() as transport:
        a = cache_stack(backend, transport, ttl=30, cache_authorized=True)
        b = cache_stack(RedisCacheStore(backend), transport, ttl=30, cache_authorized=True)
        first = await a(Request("GET", url, endpoint="echo", headers=headers))
        second = await b(Request("GET", url, endpoint="echo", headers=headers))
        other = await b(Request("GET", url, endpoint="echo", headers={"Authorization": "x"}))
    assert not first.from_cache
    assert second.from_cache
    assert not other.from_cache
    assert second.value == first.value
    assert second.value["query"] == {"q": "1"}
    assert lamina_server.hits("/echo") == 2  # a different credential is a different entry
    keys = cache_keys(sync_redis, prefix)
    assert len(keys) == 2
    assert all(k.startswith(f"{prefix}:v1:cache:{{echo}}:") for k in keys)
    for key in keys:
        raw = sync_redis.hget(key, "d")
        assert raw is not None
        entry = json.loads(raw)  # JSON, not pickle
        assert entry["v"] == 1
        assert entry["status"] == 200
        assert 0 < sync_redis.pttl(key) <= 30_000
        # the echoed body holds the header, but no key and no stored header does
        assert secret not in key
        assert "sk-live" not in json.dumps(entry["headers"])


async def test_entry_age_survives_the_round_trip(backend: RedisBackend) -> None:
    from lamina._headers import Headers
    from lamina.layers.cache import CacheEntry

    store = RedisCacheStore(backend)
    now = store.clock.now()
    entry = CacheEntry(
        status_code=200,
        headers=Headers([("content-type", "application/json"), ("set-cookie", "sid=secret")]),
        content=b'{"a": [1, 2]}',
        value={"a": [1, 2]},
        namespace="ns",
        stored_at=now - 5.0,
        fresh_for=10.0,
        stale_for=2.0,
        vary=("accept",),
        vary_digest="abc",
    )
    await store.set("ns|GET http://x/|body:-|cred:-", entry, 7.0)
    got = await store.get("ns|GET http://x/|body:-|cred:-")
    assert got is not None
    assert got.age(store.clock.now()) == pytest.approx(5.0, abs=0.5)
    assert got.value == {"a": [1, 2]}
    assert got.vary == ("accept",)
    assert got.stale_for == 2.0
    assert "set-cookie" not in got.headers  # secret response headers are never stored
    assert await store.get("ns|GET http://y/|body:-|cred:-") is None


async def test_too_large_or_non_json_values_are_not_stored(
    backend: RedisBackend, sync_redis: redis.Redis, prefix: str, lamina_server: LocalServer
) -> None:
    store = RedisCacheStore(backend, max_value_bytes=2_000)
    async with HttpxTransport() as transport:
        svc = cache_stack(store, transport, ttl=30)
        await svc(Request("GET", lamina_server.url_for("/large?bytes=5000"), endpoint="big"))
        tupled = ServiceBuilder(
            [CacheLayer(store=store, ttl=30), ParseLayer(transform_output=tuple)]
        ).service(transport)
        await tupled(Request("GET", lamina_server.url_for("/json"), endpoint="tuple"))
        await tupled(Request("GET", lamina_server.url_for("/json"), endpoint="tuple"))
    assert store.skipped == 3  # big once; a tuple would come back a list: twice
    assert cache_keys(sync_redis, prefix) == []
    assert lamina_server.hits("/json") == 2


async def test_clear_drops_one_namespace_or_all(
    backend: RedisBackend, sync_redis: redis.Redis, prefix: str, lamina_server: LocalServer
) -> None:
    async with HttpxTransport() as transport:
        layer = CacheLayer(store=backend, ttl=30)
        svc = ServiceBuilder([layer, ParseLayer()]).service(transport)
        for endpoint in ("a", "b", "b"):
            await svc(
                Request("GET", lamina_server.url_for(f"/json?e={endpoint}"), endpoint=endpoint)
            )
        assert len(cache_keys(sync_redis, prefix)) == 2
        await layer.ainvalidate("b")
        assert [k.split(":")[3] for k in cache_keys(sync_redis, prefix)] == ["{a}"]
        await layer.aclear()
        assert cache_keys(sync_redis, prefix) == []
        # clearing the cache keeps the shared key secret: other workers still use it
        assert keys_under(sync_redis, prefix) == [f"{prefix}:v1:cache-secret:{{hmac}}"]


async def test_weak_failures_extend_a_shared_run_but_never_start_one(
    backend: RedisBackend, sync_redis: redis.Redis, prefix: str
) -> None:
    """The Redis script applies the same rule as the in-memory breaker (issue 12 review,
    item 11): a timeout mostly spent waiting for a connection counts only while failures
    are being counted, in Redis, by any process."""
    a = CircuitBreaker(3, 30, name="dep", backend=RedisBreakerStore(backend))
    b = CircuitBreaker(3, 30, name="dep", backend=backend.breaker_backend())
    short = TimeoutError("late", timeout=1.0, waited=0.8)

    async def raises(error: Exception) -> None:
        raise error

    for brk in (a, b, a, b):
        with pytest.raises(TimeoutError):
            await brk.call(raises, short)
    assert sync_redis.hget(f"{prefix}:v1:breaker:{{dep}}", "failures") in (None, b"0")
    with pytest.raises(ConnectionError):
        await a.call(raises, ConnectionError("down"))  # a real failure starts the run
    with pytest.raises(TimeoutError):
        await b.call(raises, short)  # another process extends it
    assert sync_redis.hget(f"{prefix}:v1:breaker:{{dep}}", "failures") == b"2"
    with pytest.raises(TimeoutError):
        await a.call(raises, short)
    assert a.state is CircuitState.OPEN
    assert sync_redis.hget(f"{prefix}:v1:breaker:{{dep}}", "state") == b"open"
    await a.reset()
