"""Rate limits on one storage seam, the way the circuit breaker is built.

* :class:`~lamina.layers.rate_limit.Bucket` is the arithmetic (pure, like ``BreakerMachine``);
* a :class:`~lamina.layers.rate_limit.LimitStore` keeps a limit's state and reserves slots
  (:class:`~lamina.layers.rate_limit.MemoryLimitStore` here, ``RedisLimitStore`` in Redis);
* :class:`BaseLimiter` ties a store to a clock and a name, checks weights and turns a
  refusal into :class:`lamina.RateLimitExceeded`. :func:`acquire_all` waits on several
  limits at once; with in-memory stores it takes a free unit without an await.

:class:`Limiter` is a limiter in this process, whose ``try_acquire``, ``status`` and
``reset`` answer at once; ``lamina.backends.RedisLimiter`` is the same limiter in
Redis, where they are coroutines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ... import _validate as check
from ..._clock import Clock, LoopClock, default_clock
from ..._errors import ConfigError, RateLimitExceeded
from .bucket import EPSILON, describe, limit_spec, resolve_rate
from .memory_store import MemoryLimitStore, take_now
from .store import LimitStatus, LimitStore, Refused

if TYPE_CHECKING:
    from ..._core import Request

__all__ = [
    "BaseLimiter",
    "LimitStatus",
    "Limiter",
    "acquire_all",
    "check_limiters",
    "in_memory",
    "reserve",
    "try_acquire_all",
]


class BaseLimiter:
    """``rate`` calls per ``period`` seconds (default 1: per second), at most ``burst`` at
    once (default ``rate``), with its state in the store that ``store(limiter)`` builds.
    ``per_second=``, ``per_minute=`` or ``per_hour=`` say the same with the unit in the
    name (``per_minute=10`` is ``rate=10, period=60``), instead of ``rate``/``period``.

    Guarantees (see :class:`~lamina.layers.rate_limit.bucket.Bucket`): any window of one
    ``period`` admits at most ``window = max(ceil(rate), burst)``; the long-run rate is
    ``rate / period``; waiters are served first come, first served. Share one limiter
    between stacks to share the limit. Hand it to
    :class:`~lamina.layers.rate_limit.RateLimitLayer` as ``limiters=[...]``.
    """

    __slots__ = ("burst", "clock", "name", "period", "rate", "store", "window")

    def __init__(
        self,
        rate: float | None = None,
        period: float | None = None,
        *,
        per_second: float | None = None,
        per_minute: float | None = None,
        per_hour: float | None = None,
        burst: int | None = None,
        clock: Clock | None = None,
        name: str | None = None,
        store: Callable[[BaseLimiter], LimitStore],
    ) -> None:
        rate, period = resolve_rate(rate, period, per_second, per_minute, per_hour)
        self.rate, self.period, self.burst, self.window = limit_spec(rate, period, burst)
        self.clock: Clock = clock if clock is not None else default_clock
        self.name = name
        self.store = store(self)

    async def acquire(self, weight: int = 1, *, max_wait: float | None = None) -> float:
        """Wait for ``weight`` units; return the seconds waited (see :func:`acquire_all`)."""
        return await _acquire_all((self,), weight, max_wait, None, None)

    def check_group(self, limiters: Sequence[object]) -> None:
        """Raise ``ConfigError`` unless ``limiters`` can be acquired together with this
        one: limiters whose stores are of one kind, on one clock."""
        for limiter in limiters:
            if not isinstance(limiter, BaseLimiter):
                raise ConfigError(f"{type(limiter).__name__} is not a Limiter", field="limiters")
            if type(limiter.store) is not type(self.store):
                raise ConfigError(
                    f"cannot mix {type(limiter).__name__} with {type(self).__name__}",
                    field="limiters",
                )
            same = limiter.clock is self.clock or (
                isinstance(limiter.clock, LoopClock) and isinstance(self.clock, LoopClock)
            )
            if not same:
                raise ConfigError("limiters waited on together must share a clock", field="clock")

    def __str__(self) -> str:
        name = f"{self.name!r} " if self.name else ""
        return f"{name}{describe(self.rate, self.period, self.burst)}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self} store={self.store!r}>"


class Limiter(BaseLimiter):
    """A :class:`BaseLimiter` in this process (a :class:`MemoryLimitStore`): the default.

    ``try_acquire``, ``status`` and ``reset`` answer at once, and an ``acquire`` that
    finds a unit free does not wait on the event loop.
    """

    __slots__ = ()
    store: MemoryLimitStore

    def __init__(
        self,
        rate: float | None = None,
        period: float | None = None,
        *,
        per_second: float | None = None,
        per_minute: float | None = None,
        per_hour: float | None = None,
        burst: int | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            rate,
            period,
            per_second=per_second,
            per_minute=per_minute,
            per_hour=per_hour,
            burst=burst,
            clock=clock,
            name=name,
            store=MemoryLimitStore,
        )

    def try_acquire(self, weight: int = 1) -> bool:
        """Take ``weight`` units now if they are free and nobody waits; never waits."""
        _check((self,), weight)
        return take_now((self.store,), weight)

    def status(self) -> LimitStatus:
        """Capacity left now and time to the next free unit."""
        return self.store.peek()

    def reset(self) -> None:
        """Forget past admissions (the limit is full again); waiters are re-examined."""
        self.store.clear()

    def __repr__(self) -> str:
        store, bucket = self.store, self.store.bucket
        return (
            f"<Limiter {self} available={bucket.available(store.clock.now())} "
            f"in_window={bucket.in_window}/{bucket.window} waiters={len(store.queue)}>"
        )


def check_limiters(limiters: Sequence[object]) -> Clock:
    """The clock of ``limiters``, to be waited on together (see :meth:`BaseLimiter.check_group`)."""
    if not limiters:
        raise ConfigError("at least one limiter is needed", field="limiters")
    first = limiters[0]
    if not isinstance(first, BaseLimiter):
        raise ConfigError(f"{type(first).__name__} is not a Limiter", field="limiters")
    first.check_group(limiters)
    return first.clock


def _check(limiters: Sequence[BaseLimiter], weight: int) -> None:
    if len(limiters) != 1:  # one limiter is a group by itself
        check_limiters(limiters)
    if weight == 1 and type(weight) is int:  # the common case fits every limit (burst >= 1)
        return
    check.count(weight, "weight")
    for limiter in limiters:
        if weight > limiter.burst:
            raise ConfigError(
                f"{weight} exceeds the capacity of limit {limiter} and could never be admitted",
                field="weight",
            )


def _limiters(limiters: Sequence[object]) -> Sequence[BaseLimiter]:
    """``limiters`` if all are lamina limiters, else ``ConfigError(field="limiters")``."""
    for item in limiters:
        if not isinstance(item, BaseLimiter):
            raise ConfigError(
                f"{type(item).__name__} is not a Limiter (lamina.layers.rate_limit."
                "acquire_all also takes a RateLimiter or an aiolimiter.AsyncLimiter)",
                field="limiters",
            )
    return limiters  # type: ignore[return-value]  # all checked above


def try_acquire_all(limiters: Sequence[Limiter], weight: int = 1) -> bool:
    """Take ``weight`` from every limiter now if all admit it and none has waiters.

    Only in-memory limiters (:class:`Limiter`, :class:`RateLimiter`) answer at once."""
    found = _limiters(limiters)
    _check(found, weight)
    local = in_memory(found)
    if local is None:
        raise ConfigError(
            "try_acquire_all answers at once only for in-memory limiters (Limiter, "
            "RateLimiter); await acquire_all(..., max_wait=0) for the others",
            field="limiters",
        )
    return take_now(local, weight)


async def acquire_all(
    limiters: Sequence[BaseLimiter],
    weight: int = 1,
    *,
    max_wait: float | None = None,
    deadline: float | None = None,
    request: Request | None = None,
) -> float:
    """Wait until every limiter admits ``weight``, take it from all at once; return seconds waited.

    ``limiters`` are lamina limiters; ``lamina.layers.rate_limit.acquire_all`` (see
    :mod:`~lamina.layers.rate_limit.adapt`) also takes a ``RateLimiter`` or an
    ``aiolimiter.AsyncLimiter``, as ``RateLimitLayer(limiters=...)`` does.
    Raises :class:`lamina.RateLimitExceeded` (with ``retry_after``) as soon as
    the wait is known to pass ``max_wait`` seconds or the ``deadline`` (a time
    on the limiters' clock), and at the latest when that moment comes. A
    cancelled waiter leaves the queue at once, and the ones behind move up.
    """
    return await _acquire_all(_limiters(limiters), weight, max_wait, deadline, request)


async def _acquire_all(
    limiters: Sequence[BaseLimiter],
    weight: int,
    max_wait: float | None,
    deadline: float | None,
    request: Request | None,
) -> float:
    _check(limiters, weight)
    if max_wait is not None:  # as RateLimitLayer(max_wait=) checks it
        max_wait = check.seconds(max_wait, "max_wait", allow_zero=True)
    local = in_memory(limiters)
    if local is not None and take_now(local, weight):
        return 0.0
    stores = [limiter.store for limiter in limiters]
    return await reserve(limiters, stores, weight, max_wait, deadline, request)


def in_memory(limiters: Sequence[BaseLimiter]) -> Sequence[MemoryLimitStore] | None:
    """The limiters' stores if all are in memory (they answer without an await), else None."""
    if len(limiters) == 1:
        store = limiters[0].store
        return (store,) if isinstance(store, MemoryLimitStore) else None
    local = [limiter.store for limiter in limiters if isinstance(limiter.store, MemoryLimitStore)]
    return local if len(local) == len(limiters) else None


async def reserve(
    limiters: Sequence[BaseLimiter],
    stores: Sequence[LimitStore],
    weight: int,
    max_wait: float | None,
    deadline: float | None,
    request: Request | None,
) -> float:
    """:func:`acquire_all` for callers that checked ``limiters`` and ``weight`` already
    (``stores`` are the limiters' stores)."""
    start = limiters[0].clock.now()
    try:
        return await stores[0].reserve(
            stores, weight, max_wait=max_wait, deadline=deadline, request=request
        )
    except Refused as refused:
        by_deadline = deadline is not None and (max_wait is None or deadline < start + max_wait)
        why = "past the call's deadline" if by_deadline else f"more than max_wait={max_wait}s"
        left = refused.retry_after
        waited = max(0.0, limiters[0].clock.now() - start)
        if waited > EPSILON:  # refused once waiting ran out: the delay is what it waited too
            delay = f"{waited + left:.3g}s in all ({waited:.3g}s waited, {left:.3g}s to go)"
        else:
            delay = f"{left:.3g}s"
        reason = refused.reason or f"would delay the call {delay}, {why}"
        raise RateLimitExceeded(
            f"rate limit {limiters[refused.index]} {reason}",
            retry_after=refused.retry_after,
            request=request,
        ) from None
