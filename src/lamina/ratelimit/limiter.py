"""A rate limit with a fair waiting queue (see :mod:`lamina.ratelimit._queue`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._clock import Clock, LoopClock, default_clock
from .._errors import ConfigError
from ._queue import run, wait_for_slot
from .bucket import Bucket

if TYPE_CHECKING:
    from .._core import Request
    from ._queue import _Waiter

__all__ = [
    "LimitStatus",
    "Limiter",
    "acquire_all",
    "check_clocks",
    "take_now",
    "try_acquire_all",
]


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """A snapshot of one limit: ``available`` weight now, ``retry_after``
    seconds until one more unit fits (0 if ``available``), queued ``waiters``."""

    rate: float
    period: float
    burst: int
    available: int
    retry_after: float
    waiters: int


class Limiter:
    """``rate`` calls per ``period`` seconds, at most ``burst`` at once (default ``rate``).

    Guarantees (see :class:`~lamina.ratelimit.bucket.Bucket`): any window of
    one ``period`` admits at most ``max(ceil(rate), burst)``; the long-run rate
    is ``rate / period``; waiters are served first come, first served. Share
    one ``Limiter`` between stacks to share the limit.
    """

    __slots__ = ("_bucket", "_queue", "_queued", "clock", "name")

    def __init__(
        self,
        rate: float,
        period: float = 1.0,
        *,
        burst: int | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        self._bucket = Bucket(rate, period, burst=burst)
        self.clock: Clock = clock if clock is not None else default_clock
        self.name = name
        self._queue: list[_Waiter] = []  # sorted by ticket: first come, first served
        self._queued = 0

    @property
    def rate(self) -> float:
        """Admissions per period."""
        return self._bucket.rate

    @property
    def period(self) -> float:
        """The period, in seconds."""
        return self._bucket.period

    @property
    def burst(self) -> int:
        """Most admitted at one instant."""
        return self._bucket.burst

    @property
    def window(self) -> int:
        """Most admitted in any window of one period."""
        return self._bucket.window

    async def acquire(self, weight: int = 1, *, max_wait: float | None = None) -> float:
        """Wait for ``weight`` units; return the seconds waited (see :func:`acquire_all`)."""
        return await acquire_all((self,), weight, max_wait=max_wait)

    def try_acquire(self, weight: int = 1) -> bool:
        """Take ``weight`` units now if they are free and nobody waits; never waits."""
        return try_acquire_all((self,), weight)

    def status(self) -> LimitStatus:
        """Capacity left now and time to the next free unit."""
        bucket, now = self._bucket, self.clock.now()
        available = bucket.available(now)
        retry = 0.0 if available else max(0.0, bucket.earliest(1, now) - now)
        return LimitStatus(
            bucket.rate, bucket.period, bucket.burst, available, retry, len(self._queue)
        )

    def reset(self) -> None:
        """Forget past admissions (the limit is full again); waiters are re-examined."""
        self._bucket.clear()
        if self._queue:
            run([self._queue[0]])

    def __str__(self) -> str:
        name = f"{self.name!r} " if self.name else ""
        return f"{name}{self._bucket.describe()}"

    def __repr__(self) -> str:
        bucket, now = self._bucket, self.clock.now()
        return (
            f"<Limiter {self} available={bucket.available(now)} "
            f"in_window={bucket._log_sum}/{bucket.window} waiters={len(self._queue)}>"
        )


def _check(limiters: Sequence[Limiter], weight: int) -> None:
    if not limiters:
        raise ConfigError("at least one limiter is needed", field="limiters")
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise ConfigError(f"must be an int >= 1, got {weight!r}", field="weight")
    for limiter in limiters:
        if weight > limiter.burst:
            raise ConfigError(
                f"{weight} exceeds the capacity of limit {limiter} and could never be admitted",
                field="weight",
            )


def check_clocks(limiters: Sequence[Limiter]) -> Clock:
    """The clock shared by ``limiters`` (all must use the same one)."""
    if not limiters:
        raise ConfigError("at least one limiter is needed", field="limiters")
    for limiter in limiters:
        if not isinstance(limiter, Limiter):
            raise ConfigError(f"{type(limiter).__name__} is not a Limiter", field="limiters")
    clock = limiters[0].clock
    for limiter in limiters:
        same = limiter.clock is clock or (
            isinstance(limiter.clock, LoopClock) and isinstance(clock, LoopClock)
        )
        if not same:
            raise ConfigError("limiters waited on together must share a clock", field="clock")
    return clock


def try_acquire_all(limiters: Sequence[Limiter], weight: int = 1) -> bool:
    """Take ``weight`` from every limiter now if all admit it and none has waiters."""
    _check(limiters, weight)
    if len(limiters) > 1:
        check_clocks(limiters)
    return take_now(limiters, weight)


def take_now(limiters: Sequence[Limiter], weight: int) -> bool:
    """:func:`try_acquire_all` without validation (for callers that validated already)."""
    now = limiters[0].clock.now()
    if len(limiters) == 1:
        limiter = limiters[0]
        if limiter._queue or not limiter._bucket.fits(weight, now):
            return False
        limiter._bucket.consume(weight, now)
        return True
    for limiter in limiters:
        if limiter._queue or not limiter._bucket.fits(weight, now):
            return False
    for limiter in limiters:
        limiter._bucket.consume(weight, now)
    return True


async def acquire_all(
    limiters: Sequence[Limiter],
    weight: int = 1,
    *,
    max_wait: float | None = None,
    deadline: float | None = None,
    request: Request | None = None,
) -> float:
    """Wait until every limiter admits ``weight``, take it from all at once; return seconds waited.

    Raises :class:`lamina.RateLimitExceeded` (with ``retry_after``) as soon as
    the wait is known to pass ``max_wait`` seconds or the ``deadline`` (a time
    on the limiters' clock), and at the latest when that moment comes. A
    cancelled waiter leaves the queue at once, and the ones behind move up.
    """
    if try_acquire_all(limiters, weight):
        return 0.0
    return await wait_for_slot(
        limiters, weight, max_wait=max_wait, deadline=deadline, request=request
    )
