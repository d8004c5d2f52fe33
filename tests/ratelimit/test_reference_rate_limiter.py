"""Issue 14 item 10: dataknobs-fsm's ``RateLimiter(rate_limit, window)`` with
``await limiter.acquire()``, in virtual time (looptime moves the loop's clock)."""

from __future__ import annotations

import asyncio

import pytest

import lamina.ratelimit
from lamina import ConfigError, RateLimitExceeded, Request, Response, ServiceBuilder
from lamina.layers.rate_limit import (
    Limiter,
    RateLimiter,
    RateLimitLayer,
    acquire_all,
    try_acquire_all,
)
from lamina.testing import ManualClock


@pytest.mark.looptime(end=60)
@pytest.mark.timeout(10)
async def test_the_references_own_test_first_ten_at_once_the_eleventh_waits() -> None:
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(rate_limit=10, window=0.1)  # 10 requests per 0.1 second
    start = loop.time()
    for _ in range(10):
        await limiter.acquire()
    assert loop.time() - start == 0  # all ten at once
    start = loop.time()
    waited = await limiter.acquire()
    assert loop.time() - start == pytest.approx(0.1, abs=1e-3)  # until the window allows
    assert waited == pytest.approx(0.1, abs=1e-3)


@pytest.mark.looptime(end=600)
@pytest.mark.timeout(10)
async def test_no_window_ever_holds_more_than_rate_limit() -> None:
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(5, 1.0)
    stamps: list[float] = []

    async def worker() -> None:
        for _ in range(20):
            await limiter.acquire()
            stamps.append(loop.time())

    await asyncio.gather(*(worker() for _ in range(3)))
    assert len(stamps) == 60
    stamps.sort()
    for i, t in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s < t + 1.0 - 1e-6) <= 5
    assert stamps[-1] - stamps[0] == pytest.approx(11, abs=0.01)  # 60 calls at 5/s


def test_default_window_is_a_minute_and_fields_are_named() -> None:
    limiter = RateLimiter(30)
    assert (limiter.rate_limit, limiter.window) == (30, 60)
    assert repr(limiter) == "<RateLimiter rate_limit=30 window=60s (per minute) available=30>"
    with pytest.raises(ConfigError) as info:
        RateLimiter(rate_limit=0, window=0.1)
    assert info.value.field == "rate_limit"
    assert "per 0.1 s" in str(info.value)
    with pytest.raises(ConfigError) as info:
        RateLimiter(rate_limit=10, window=0)
    assert info.value.field == "window"


@pytest.mark.looptime(end=60)
async def test_max_wait_try_acquire_reset_and_async_with() -> None:
    limiter = RateLimiter(2, 10)
    async with limiter:
        pass
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.acquire(max_wait=1)
    assert info.value.retry_after == pytest.approx(10)
    assert limiter.status().available == 0
    limiter.reset()
    assert limiter.status().available == 2


@pytest.mark.looptime(end=60)
async def test_a_stack_shares_its_limit() -> None:
    async def ok(request: Request) -> Response:
        return Response(200, request=request)

    limiter = RateLimiter(1, 30)
    service = ServiceBuilder().layer(RateLimitLayer(limiters=[limiter], max_wait=0)).service(ok)
    await limiter.acquire()
    with pytest.raises(RateLimitExceeded):
        await service(Request("GET", "http://x/"))
    assert isinstance(limiter.limiter, Limiter)


def test_found_where_a_user_looks() -> None:
    assert lamina.ratelimit.RateLimiter is RateLimiter


async def test_acquire_all_and_try_acquire_all_take_a_rate_limiter(
    manual_clock: ManualClock,
) -> None:
    limiter = RateLimiter(rate_limit=2, window=1, clock=manual_clock)
    other = Limiter(5, 1, clock=manual_clock)
    assert try_acquire_all([limiter, other])
    assert await acquire_all([limiter]) == 0
    assert limiter.status().available == 0
    assert not try_acquire_all([limiter])


@pytest.mark.timeout(5)  # a NaN max_wait used to wait forever
@pytest.mark.parametrize("max_wait", [float("nan"), -1, True, "1", float("inf")])
async def test_a_bad_max_wait_is_a_config_error_naming_it(
    manual_clock: ManualClock, max_wait: object
) -> None:
    limiter = RateLimiter(rate_limit=1, window=1, clock=manual_clock)
    await limiter.acquire()
    for call in (
        lambda: limiter.acquire(max_wait=max_wait),  # type: ignore[arg-type]
        lambda: acquire_all([limiter], max_wait=max_wait),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigError, match="duration in seconds") as info:
            await call()
        assert info.value.field == "max_wait"
    assert limiter.status().waiters == 0


@pytest.mark.looptime(end=60)
@pytest.mark.timeout(10)
async def test_a_fractional_rate_limit_lets_as_many_at_once_as_the_reference() -> None:
    """The reference admits while fewer than ``rate_limit`` calls are in the window, so
    ``rate_limit=2.5`` lets 3 go at once and the 4th waits for the window."""
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(rate_limit=2.5, window=1)
    start = loop.time()
    for _ in range(3):
        await limiter.acquire()
    assert loop.time() - start == 0  # was 0.4: only 2 at once, the 3rd paced
    assert await limiter.acquire() == pytest.approx(1, abs=1e-3)
