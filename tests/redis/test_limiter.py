"""The Redis rate limiter in one process, against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import redis
from lamina import HttpxTransport, RateLimitExceeded, Request, ServiceBuilder
from lamina._errors import ConfigError
from lamina.backends.redis import RedisBackend
from lamina.layers.rate_limit import (
    Limiter,
    RateLimit,
    RateLimiterConfig,
    RateLimitLayer,
    RedisLimiter,
    RedisLimitStore,
    RedisRateLimiter,
)
from lamina.layers.rate_limit.redis import _refunds
from lamina.testing import LocalServer, ManualClock

from .conftest import keys_under


class CountingBackend(RedisBackend):
    """Counts script round trips (to show that waiting does not poll)."""

    scripts = 0

    async def script(self, lua: str, keys: Any, args: Any, **options: Any) -> Any:
        self.scripts += 1
        return await super().script(lua, keys, args, **options)


async def test_burst_and_weights_match_the_in_memory_limiter(backend: RedisBackend) -> None:
    shared = backend.limiter(5, 60, burst=3, name="api")
    local = Limiter(5, 60, burst=3, clock=ManualClock())
    for weight in (2, 2, 1, 1):
        assert await shared.try_acquire(weight) == local.try_acquire(weight)
    status, expected = await shared.status(), local.status()
    assert status.available == expected.available == 0
    # one token every 12 s; the bucket was drained at once, so the next unit is ~12 s away
    assert status.retry_after == pytest.approx(expected.retry_after, abs=0.5)


async def test_window_rule_caps_any_period(backend: RedisBackend) -> None:
    # burst == rate: the window log allows 3 per 60 s even though GCRA refills
    shared = backend.limiter(3, 60, name="win")
    assert [await shared.try_acquire() for _ in range(4)] == [True, True, True, False]
    with pytest.raises(RateLimitExceeded) as info:
        await shared.acquire(max_wait=1.0)
    assert info.value.retry_after is not None
    assert 55 < info.value.retry_after <= 60


async def test_wait_is_one_round_trip_and_sleeps_until_the_reserved_slot(
    redis_url: str, prefix: str
) -> None:
    backend = CountingBackend(redis_url, prefix=prefix)
    shared = backend.limiter(4, 1, burst=1, name="paced")
    assert await shared.acquire() == 0.0
    waited = await shared.acquire()
    # the next slot, 1/4 s after the first, less the time between the two acquisitions
    # (a Redis round trip; with 1/20 s slots, 20 ms of a loaded machine failed this)
    assert 0.125 < waited <= 0.25
    assert backend.scripts == 2  # one script per acquisition: no polling
    await backend.aclose()


async def test_cancelled_waiter_gives_its_slot_back(backend: RedisBackend) -> None:
    shared = backend.limiter(1, 1, burst=1, name="refund")
    assert await shared.try_acquire()
    waiter = asyncio.create_task(shared.acquire())
    async with asyncio.timeout(10):  # a Redis round trip: not a fixed 50 ms on a busy machine
        while shared.waiting == 0:  # noqa: ASYNC110 - the waiter's reservation is in Redis
            await asyncio.sleep(0.005)
    assert shared.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.gather(*_refunds)  # the refund runs in the background: let it end
    with pytest.raises(RateLimitExceeded) as info:
        await shared.acquire(max_wait=0)
    # without the refund the next slot would be ~2 s away (behind the cancelled one)
    assert info.value.retry_after is not None
    assert info.value.retry_after < 1.0


async def test_weight_above_burst_and_missing_name_are_config_errors(
    backend: RedisBackend,
) -> None:
    with pytest.raises(ConfigError) as info:
        backend.limiter(5, 1)
    assert info.value.field == "name"
    shared = backend.limiter(5, 1, burst=2, name="w")
    with pytest.raises(ConfigError) as info:
        await shared.acquire(3)
    assert info.value.field == "weight"


async def test_rate_limiter_api_shape(backend: RedisBackend) -> None:
    config = RateLimiterConfig(
        default_rates=[RateLimit(limit=100, interval=60)],
        categories={"limited_api": [RateLimit(limit=2, interval=60), RateLimit(3, 3600)]},
    )
    limiter = RedisRateLimiter(config, backend=backend)
    assert await limiter.acquire("limited_api") == 0.0
    assert await limiter.try_acquire("limited_api")
    assert not await limiter.try_acquire("limited_api")  # 2/min spent
    status = await limiter.get_status("limited_api")
    assert [s.available for s in status.limits] == [0, 1]
    assert status.available == 0
    assert status.retry_after > 0
    # all rates were taken together: the refused call took nothing from the hourly rate
    await limiter.reset("limited_api")
    assert (await limiter.get_status("limited_api")).available == 2
    assert await limiter.try_acquire("other", 10)  # default rates, own state
    assert await limiter.acquire("limited_api", 2) == 0.0  # a weighted acquire
    with pytest.raises(RateLimitExceeded):
        await limiter.acquire("limited_api", 1, max_wait=0.01)


async def test_all_keys_are_versioned_prefixed_and_expire(
    backend: RedisBackend, sync_redis: redis.Redis, prefix: str
) -> None:
    limiter = backend.limiter(10, 1, name="ttl")
    for _ in range(3):
        await limiter.acquire()
    keys = keys_under(sync_redis, prefix)
    assert keys == [
        f"{prefix}:v1:ratelimit:{{ttl}}:10per1s-b10:log",
        f"{prefix}:v1:ratelimit:{{ttl}}:10per1s-b10:state",
    ]
    assert all(0 < sync_redis.pttl(k) <= 3000 for k in keys)


async def test_layer_with_redis_backend_paces_real_calls(
    backend: RedisBackend, lamina_server: LocalServer
) -> None:
    layer = RateLimitLayer(3, 60, backend=backend, name="server", max_wait=0.05)
    other = RateLimitLayer(3, 60, backend=backend, name="server")  # same limit, another stack
    async with HttpxTransport() as transport:
        first = ServiceBuilder([layer]).service(transport)
        second = ServiceBuilder([other]).service(transport)
        url = lamina_server.url_for("/json")
        for svc in (first, second, first):
            assert (await svc(Request("GET", url))).status_code == 200
        with pytest.raises(RateLimitExceeded):
            await first(Request("GET", url))
    assert lamina_server.hits("/json") == 3


async def test_layer_acquires_several_shared_limits_atomically(
    backend: RedisBackend, lamina_server: LocalServer
) -> None:
    wide = backend.limiter(2, 60, name="global")
    narrow = backend.limiter(1, 60, name="endpoint")
    layer = RateLimitLayer(limiters=[narrow, wide], max_wait=0)
    async with HttpxTransport() as transport:
        svc = ServiceBuilder([layer]).service(transport)
        await svc(Request("GET", lamina_server.url_for("/json")))
        with pytest.raises(RateLimitExceeded):
            await svc(Request("GET", lamina_server.url_for("/json")))
    # the refused call took nothing from the global limit
    assert (await wide.status()).available == 1
    assert lamina_server.hits("/json") == 1


def test_layer_rejects_mixed_limiters(backend: RedisBackend) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimitLayer(limiters=[backend.limiter(1, 1, name="a"), Limiter(1, 1)])
    assert info.value.field == "limiters"
    assert isinstance(RateLimitLayer(1, 1, backend=backend, name="x").limiter, RedisLimiter)
    assert isinstance(RateLimitLayer(1, 1, backend="memory").limiter, Limiter)


def test_layer_rejects_limiters_of_two_backends(
    backend: RedisBackend, redis_url: str, prefix: str
) -> None:
    other = RedisBackend(redis_url, prefix=prefix)
    with pytest.raises(ConfigError, match="one backend") as info:
        RateLimitLayer(limiters=[backend.limiter(1, 1, name="a"), other.limiter(1, 1, name="b")])
    assert info.value.field == "limiters"
    assert isinstance(backend.limiter(1, 1, name="a").store, RedisLimitStore)
