"""``Backend.limiter()`` speaks the same units as ``Limiter``: ``per_second=``,
``per_minute=``, ``per_hour=`` beside ``rate=``/``period=``, on both backends."""

from __future__ import annotations

import pytest

from lamina._errors import ConfigError
from lamina.backends.memory import InMemoryBackend
from lamina.backends.redis import RedisBackend
from lamina.testing import ManualClock


@pytest.mark.parametrize(
    ("units", "rate", "period", "shown"),
    [
        ({"per_minute": 30}, 30.0, 60.0, "30/min"),
        ({"per_hour": 100}, 100.0, 3600.0, "100/h"),
        ({"per_second": 5}, 5.0, 1.0, "5/s"),
        ({"rate": 7, "period": 10}, 7.0, 10.0, "7 per 10 s"),
    ],
)
async def test_both_backends_take_the_rate_in_named_units(
    backend: RedisBackend, units: dict[str, float], rate: float, period: float, shown: str
) -> None:
    for made in (InMemoryBackend().limiter(**units), backend.limiter(**units, name="u")):
        assert (made.rate, made.period) == (rate, period)
        assert shown in str(made)


async def test_a_per_minute_redis_limit_is_shared_and_spaced(backend: RedisBackend) -> None:
    clock = ManualClock()
    one = backend.limiter(per_minute=2, burst=2, name="shared", clock=clock)
    other = backend.limiter(per_minute=2, burst=2, name="shared", clock=clock)
    assert await one.try_acquire()
    assert await other.try_acquire()
    assert not await one.try_acquire()  # both processes drew on one per-minute budget
    status = await other.status()
    # the window is a minute: the next unit frees when the first one taken is a minute old
    assert 59.0 <= status.retry_after <= 60.0


def test_two_forms_at_once_or_none_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="per_minute"):
        InMemoryBackend().limiter(10, per_minute=10)
    with pytest.raises(ConfigError, match="rate"):
        InMemoryBackend().limiter()
