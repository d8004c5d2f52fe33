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
