"""With every duration at the largest value a config accepts (30 days), every key lamina
writes to Redis (breaker, rate limits, cache) still has a TTL, and it fits in PX."""

from __future__ import annotations

import pytest

import redis
from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, ConfigError
from lamina._validate import MAX_SECONDS
from lamina.backends.redis import RedisBackend
from lamina.testing import LocalServer


async def test_every_key_has_a_ttl_at_the_largest_values(
    lamina_server: LocalServer, redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    slowest = 60 / MAX_SECONDS  # calls per minute: one per 30 days
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(
                name="down",
                url=lamina_server.url_for("/status/500"),
                retry_count=0,
                timeout=MAX_SECONDS,
                rate_limit=slowest,
            ),
            APIEndpoint(
                name="user",
                url=lamina_server.url_for("/json?user=ttl"),
                retry_count=0,
                timeout=MAX_SECONDS,
            ),
        ],
        mode="parallel",
        total_timeout=MAX_SECONDS,
        global_rate_limit=10,
        rate_limit_window=MAX_SECONDS,
        circuit_breaker_threshold=1,
        circuit_breaker_timeout=MAX_SECONDS,
        cache_ttl=MAX_SECONDS,
        backend=RedisBackend(redis_url, prefix=prefix),
    )
    async with APIOrchestrator(config) as orchestrator:
        report = await orchestrator.run()
    assert report.endpoints["user"].outcome == "ok", report.endpoints["user"]
    assert report.endpoints["down"].outcome == "failed", report.endpoints["down"]

    keys = sorted(k.decode() for k in sync_redis.scan_iter(match=f"{prefix}:*", count=500))
    kinds = {key.split(":")[2] for key in keys}
    assert {"breaker", "ratelimit", "cache"} <= kinds, keys
    longest_ms = 4 * MAX_SECONDS * 1000  # breaker: 2 x (timeout + probe lease)
    for key in keys:
        ttl = sync_redis.pttl(key)
        assert 0 < ttl <= longest_ms, (key, ttl)


def test_values_past_the_bounds_never_reach_redis(redis_url: str) -> None:
    for field, value in [
        ("circuit_breaker_timeout", 1e308),
        ("cache_ttl", MAX_SECONDS * 2),
        ("rate_limit_window", 1e-320),
    ]:
        with pytest.raises(ConfigError) as err:
            APIOrchestrationConfig(
                endpoints=[APIEndpoint(name="a", url="http://127.0.0.1:9/")],
                backend=redis_url,
                **{field: value},  # type: ignore[arg-type]
            )
        assert err.value.field == field


@pytest.mark.parametrize("field", ["timeout", "retry_interval", "pool_timeout"])
@pytest.mark.parametrize("value", [1e-320, 5e-324, 1e-9, 0.0, float("nan"), 1e308])
def test_redis_backend_durations_refuse_denormal_and_absurd_values(
    redis_url: str, field: str, value: float
) -> None:
    """Issue 12 review, item 9: ``RedisBackend(timeout=1e-320)`` (and ``retry_interval``,
    ``pool_timeout``) was accepted, and every Redis call then timed out at once."""
    with pytest.raises(ConfigError) as err:
        RedisBackend(redis_url, **{field: value})  # type: ignore[arg-type]
    assert err.value.field == field
    assert "between 0.001 (1 ms) and 3600 (1 hour)" in err.value.message


async def test_redis_backend_at_its_smallest_durations_still_works(
    lamina_server: LocalServer, redis_url: str, prefix: str
) -> None:
    """The smallest accepted values (1 ms) build a backend that a run can use: a call
    either reaches Redis or falls back, and never fails because of the settings."""
    backend = RedisBackend(
        redis_url, prefix=prefix, timeout=0.001, retry_interval=0.001, pool_timeout=0.001
    )
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url=lamina_server.url_for("/json"))],
        backend=backend,
        global_rate_limit=1000,
    )
    async with APIOrchestrator(config) as orchestrator:
        report = await orchestrator.run()
    await backend.aclose()
    assert report.endpoints["a"].outcome == "ok", report.endpoints["a"]
