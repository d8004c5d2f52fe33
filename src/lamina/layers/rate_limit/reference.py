"""The reference's sliding-window limiter by its own name: ``RateLimiter(rate_limit, window)``.

Users moving from dataknobs-fsm (the reference implementation lamina re-implements)
wrote ``RateLimiter(rate_limit=10, window=0.1)`` and ``await limiter.acquire()``. This
is that class, a thin front to a :class:`~lamina.layers.rate_limit.Limiter` of
``rate_limit`` calls per ``window`` seconds with every call of a window allowed at once.
"""

from __future__ import annotations

import math
from types import TracebackType

from ... import _validate as check
from ..._clock import Clock
from .bucket import unit_of
from .limiter import Limiter
from .store import LimitStatus

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``rate_limit`` calls in any ``window`` seconds (default 60: per minute).

    As in the reference, the first ``rate_limit`` calls (rounded up) go at once and
    the next one waits until the window lets it: with ``RateLimiter(rate_limit=10, window=0.1)``
    ten ``await limiter.acquire()`` return at once and the eleventh returns 0.1 s
    after the first. Waiters are served first come, first served. ``acquire``
    returns the seconds waited (the reference returned None).

    :attr:`limiter` is the :class:`~lamina.layers.rate_limit.Limiter` underneath;
    ``RateLimitLayer(limiters=[rate_limiter])`` shares it with a stack.
    """

    __slots__ = ("limiter",)

    def __init__(
        self,
        rate_limit: float,
        window: float = 60.0,
        *,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        window = check.seconds(window, "window")
        rate_limit = check.rate(rate_limit, "rate_limit", period=window, unit=unit_of(window))
        # the reference admits while fewer than rate_limit calls are in the window: a
        # fractional 2.5 lets 3 go at once (Limiter's default burst, int(rate), lets 2)
        burst = min(max(1, math.ceil(rate_limit)), check.MAX_COUNT)
        self.limiter = Limiter(rate_limit, window, burst=burst, clock=clock, name=name)
        """The lamina limiter this class fronts."""

    @property
    def rate_limit(self) -> float:
        """Calls allowed per window."""
        return self.limiter.rate

    @property
    def window(self) -> float:
        """The window, in seconds."""
        return self.limiter.period

    async def acquire(self, weight: int = 1, *, max_wait: float | None = None) -> float:
        """Wait until the window admits ``weight`` calls; return the seconds waited.

        With ``max_wait`` (seconds) raise :class:`lamina.RateLimitExceeded` as soon as
        the wait is known to be longer.
        """
        return await self.limiter.acquire(weight, max_wait=max_wait)

    def try_acquire(self, weight: int = 1) -> bool:
        """Take ``weight`` now if the window admits it and nobody waits; never waits."""
        return self.limiter.try_acquire(weight)

    def status(self) -> LimitStatus:
        """Calls left now and seconds until the next one fits."""
        return self.limiter.status()

    def reset(self) -> None:
        """Forget past calls: the window is empty again."""
        self.limiter.reset()

    async def __aenter__(self) -> RateLimiter:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        window = self.window
        shown = int(window) if window.is_integer() else window
        return (
            f"<RateLimiter rate_limit={self.rate_limit:g} window={shown}s "
            f"({unit_of(window)}) available={self.status().available}>"
        )
