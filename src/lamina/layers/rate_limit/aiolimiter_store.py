"""An ``aiolimiter.AsyncLimiter`` as a lamina limit (the ``lamina[aiolimiter]`` extra).

``RateLimitLayer(limiters=[AsyncLimiter(10, 1)])`` wraps the AsyncLimiter in an
:class:`AiolimiterLimiter`, whose :class:`AiolimiterStore` waits in the AsyncLimiter
itself: the AsyncLimiter keeps the count and decides who goes, lamina adds ``max_wait``,
the call's deadline, :class:`lamina.RateLimitExceeded` and the ``ratelimit.wait`` event.
What aiolimiter does not do stays undone (docs/layers/rate-limit.md, "Bringing
aiolimiter"): a window may see ``2 x max_rate``, waiters are served smallest weight
first, time is the event loop's, and several AsyncLimiters are taken one after another.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ... import _validate as check
from ..._clock import default_clock
from ..._errors import ConfigError
from .bucket import EPSILON, describe, unit_of
from .limiter import BaseLimiter
from .store import LimitStatus, Refused

if TYPE_CHECKING:
    from ..._core import Request

__all__ = ["AiolimiterLimiter", "AiolimiterStore", "is_async_limiter"]


def is_async_limiter(value: object) -> bool:
    """Whether ``value`` is an ``aiolimiter.AsyncLimiter`` (without importing aiolimiter)."""
    return type(value).__module__.partition(".")[0] == "aiolimiter" and hasattr(value, "acquire")


def _check_loop(async_limiter: Any) -> None:
    """``ConfigError`` if ``async_limiter`` belongs to another event loop that is still
    open: aiolimiter binds a limiter to the first loop that uses it, and a wait from
    another loop fails with "Future attached to a different loop" (or never wakes)."""
    bound = getattr(async_limiter, "_event_loop", None)
    if bound is not None and not bound.is_closed() and bound is not asyncio.get_running_loop():
        raise ConfigError(
            "this AsyncLimiter belongs to another event loop, still open, and aiolimiter "
            "cannot wait across loops: give each event loop its own AsyncLimiter, or share "
            "a lamina Limiter (one loop) or RedisLimiter (any loop, any process)",
            field="limiters",
        )


class AiolimiterStore:
    """The :class:`~lamina.layers.rate_limit.LimitStore` of an :class:`AiolimiterLimiter`:
    its AsyncLimiter holds the state and the queue."""

    __slots__ = ("async_limiter", "limiter")

    def __init__(self, async_limiter: Any, limiter: BaseLimiter) -> None:
        self.async_limiter = async_limiter
        self.limiter = limiter

    def shortfall(self, weight: int) -> float:
        """Seconds until the bucket alone could admit ``weight`` (0 if it can now): a lower
        bound, since waiters may be ahead."""
        lim = self.async_limiter
        if lim.has_capacity(weight):  # also drains the bucket up to now
            return 0.0
        level = getattr(lim, "_level", None)  # aiolimiter keeps no public level
        if not isinstance(level, int | float):
            return 0.0
        rate, period = float(lim.max_rate), float(lim.time_period)
        return max(0.0, (float(level) + weight - rate) * period / rate)

    async def reserve(
        self,
        group: Sequence[AiolimiterStore],
        weight: int,
        *,
        max_wait: float | None,
        deadline: float | None,
        request: Request | None,
    ) -> float:
        clock = self.limiter.clock
        start = clock.now()
        give_up = math.inf if max_wait is None else start + max_wait
        if deadline is not None:
            give_up = min(give_up, deadline)
        waited = False  # an AsyncLimiter with capacity admits without yielding: no wait
        # aiolimiter cannot wait for several limits at once: each is taken in turn
        for index, store in enumerate(group):
            short = store.shortfall(weight)
            if clock.now() + short > give_up + EPSILON:
                raise Refused(index, short)
            if short > 0:
                waited = True
                _check_loop(store.async_limiter)
            if give_up == math.inf:
                await store.async_limiter.acquire(weight)
                continue
            try:
                async with asyncio.timeout(max(0.0, give_up - clock.now())):
                    await store.async_limiter.acquire(weight)
            except TimeoutError:
                raise Refused(index, max(store.shortfall(weight), EPSILON)) from None
        # the clock runs while the call is admitted at once (loop.time() is not cached):
        # that is no wait, and must not be reported as a ratelimit.wait
        return max(0.0, clock.now() - start) if waited else 0.0

    async def status(self) -> LimitStatus:
        lim, limiter = self.async_limiter, self.limiter
        short = self.shortfall(1)
        level = getattr(lim, "_level", 0.0)
        available = max(0, math.floor(lim.max_rate - level + 1e-9)) if not short else 0
        waiters = len(getattr(lim, "_waiters", ()))
        return LimitStatus(limiter.rate, limiter.period, limiter.burst, available, short, waiters)

    async def reset(self) -> None:
        """Empty the AsyncLimiter's bucket (aiolimiter has no reset of its own)."""
        lim = self.async_limiter
        if not hasattr(lim, "_level"):
            raise ConfigError("this aiolimiter version cannot be reset", field="limiters")
        lim._level = 0.0
        wake = getattr(lim, "_wake_next", None)
        if wake is not None and getattr(lim, "_waiters", None):
            wake()

    def __repr__(self) -> str:
        return f"AiolimiterStore({self.async_limiter!r})"


class AiolimiterLimiter(BaseLimiter):
    """An ``aiolimiter.AsyncLimiter(max_rate, time_period)`` as a lamina limiter:
    ``max_rate`` calls per ``time_period`` seconds, a bucket of ``max_rate``.

    ``RateLimitLayer(limiters=[...])`` builds one for each AsyncLimiter it is given;
    build it yourself to give it a ``name``. Its clock is the event loop's (aiolimiter
    reads ``loop.time()``), so ``looptime`` virtualises it and a ``ManualClock`` cannot.
    """

    __slots__ = ("async_limiter",)
    store: AiolimiterStore

    def __init__(self, async_limiter: Any, *, name: str | None = None) -> None:
        if not is_async_limiter(async_limiter):
            raise ConfigError(
                f"{type(async_limiter).__name__} is not an aiolimiter.AsyncLimiter",
                field="limiters",
            )
        rate, period = async_limiter.max_rate, async_limiter.time_period
        given = f"AsyncLimiter max_rate={rate!r}, time_period={period!r}"
        try:  # the checks of lamina's own limits, worded for the argument given
            period = check.seconds(period, "time_period")
            rate = check.rate(rate, "max_rate", period=period, unit=unit_of(period))
        except ConfigError as exc:
            raise ConfigError(f"{given}: {exc.message}", field="limiters") from None
        if rate < 1:
            raise ConfigError(
                f"{given} can never admit one call "
                "(aiolimiter needs max_rate >= the weight of a call)",
                field="limiters",
            )
        self.async_limiter = async_limiter
        super().__init__(
            rate,
            period,
            burst=int(rate),
            clock=default_clock,
            name=name,
            store=lambda limiter: AiolimiterStore(async_limiter, limiter),
        )

    def __str__(self) -> str:
        name = f"{self.name!r} " if self.name else ""
        return f"{name}aiolimiter {describe(self.rate, self.period, self.burst)}"
