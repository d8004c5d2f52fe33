import asyncio
import dataclasses

import pytest

from lamina import ConfigError, RateLimitExceeded
from lamina.layers.rate_limit import InMemoryRateLimiter, RateLimit, RateLimiterConfig
from lamina.testing import ManualClock


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0, "interval": 60}, "limit"),
        ({"limit": 1.5, "interval": 60}, "limit"),
        ({"limit": 10, "interval": 0}, "interval"),
        ({"limit": 10, "interval": -1}, "interval"),
        ({"limit": 10, "interval": 60, "burst": 0}, "burst"),
    ],
)
def test_rate_limit_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimit(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_rate_limit_is_frozen_and_config_validates() -> None:
    rate = RateLimit(limit=10, interval=60)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rate.limit = 5  # type: ignore[misc]
    with pytest.raises(ConfigError) as info:
        RateLimiterConfig(default_rates=[{"limit": 1, "interval": 1}])  # type: ignore[list-item]
    assert info.value.field == "default_rates"
    config = RateLimiterConfig(categories={"a": rate})  # a single rate is accepted
    assert config.rates_for("a") == (rate,)
    assert config.rates_for("other") == ()


async def test_categories_and_defaults(manual_clock: ManualClock) -> None:
    config = RateLimiterConfig(
        default_rates=[RateLimit(limit=100, interval=60)],
        categories={"limited_api": [RateLimit(limit=2, interval=60)]},
    )
    limiter = InMemoryRateLimiter(config, clock=manual_clock)
    assert limiter.try_acquire("limited_api", weight=2)
    assert not limiter.try_acquire("limited_api")
    # unknown categories each get their own limits built from the defaults
    assert limiter.try_acquire("a", weight=100)
    assert limiter.try_acquire("b", weight=100)
    assert not limiter.try_acquire("a")
    assert limiter.limiters("a") is limiter.limiters("a")
    assert limiter.limiters("a")[0] is not limiter.limiters("b")[0]


async def test_acquire_waits_for_every_rate_of_the_category(manual_clock: ManualClock) -> None:
    config = RateLimiterConfig(categories={"x": [RateLimit(2, 1), RateLimit(3, 10)]})
    limiter = InMemoryRateLimiter(config, clock=manual_clock)
    done: list[float] = []

    async def call() -> None:
        await limiter.acquire("x")
        done.append(manual_clock.now())

    tasks = [asyncio.create_task(call()) for _ in range(4)]
    await settle()
    assert done == [0.0, 0.0]
    for _ in range(10):
        manual_clock.advance(1.0)
        await settle()
    await asyncio.gather(*tasks)
    assert done == [0.0, 0.0, 1.0, 10.0]  # 2 per second, and 3 per 10 s


async def test_status_reset_and_weights(manual_clock: ManualClock) -> None:
    config = RateLimiterConfig(default_rates=[RateLimit(10, 60, burst=5)])
    limiter = InMemoryRateLimiter(config, clock=manual_clock)
    assert await limiter.acquire("api", weight=3) == 0.0
    status = limiter.get_status("api")
    assert status.category == "api"
    assert status.available == 2
    assert status.retry_after == 0.0
    assert (status.limits[0].rate, status.limits[0].period) == (10, 60)
    assert limiter.try_acquire("api", weight=2)
    assert limiter.get_status("api").retry_after == pytest.approx(6)
    with pytest.raises(ConfigError, match="capacity"):
        await limiter.acquire("api", weight=6)
    with pytest.raises(RateLimitExceeded):
        await limiter.acquire("api", max_wait=1)
    limiter.reset()
    assert limiter.get_status("api").available == 5
    assert "categories=1" in repr(limiter)


async def test_unlimited_category() -> None:
    limiter = InMemoryRateLimiter(RateLimiterConfig())
    assert await limiter.acquire("anything", weight=1000) == 0.0
    assert limiter.try_acquire("anything")
    assert limiter.get_status("anything").available is None
