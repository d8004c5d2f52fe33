"""The storage seam of rate limits: :class:`LimitStore`, what it answers, how it refuses.

A store holds the state of one limit (``rate`` per ``period``, ``burst`` at once)
and is built for it by its limiter (:class:`~lamina.layers.rate_limit.BaseLimiter`), like a
:class:`lamina.layers.circuit_breaker.BreakerStore` keeps a breaker's record. The arithmetic is
:class:`~lamina.layers.rate_limit.Bucket`'s; where the state lives is the store's:
:class:`~lamina.layers.rate_limit.MemoryLimitStore` in this process,
``lamina.layers.rate_limit.RedisLimitStore`` in Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self

from .bucket import describe

if TYPE_CHECKING:
    from ..._core import Request

__all__ = ["LimitStatus", "LimitStore", "Refused"]


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

    def __repr__(self) -> str:
        return (
            f"LimitStatus({describe(self.rate, self.period, self.burst)}, "
            f"available={self.available}, retry_after={self.retry_after:.3g}s, "
            f"waiters={self.waiters})"
        )


class Refused(Exception):
    """A store's answer when the slot of ``group[index]`` is ``retry_after`` seconds away,
    further than the call may wait; ``reason`` replaces "would delay the call ..." when
    the store refused for another reason. The limiter turns it into
    :class:`lamina.RateLimitExceeded` naming that limit."""

    def __init__(self, index: int, retry_after: float, reason: str | None = None) -> None:
        super().__init__(index, retry_after, reason)
        self.index = index
        self.retry_after = retry_after
        self.reason = reason


class LimitStore(Protocol):
    """Where one limit's state lives. Async, so that a shared store can do I/O.

    ``reserve`` is a reservation: take ``weight`` from every store of ``group`` (all
    of this store's kind, ``self`` first; their limiters passed
    :meth:`~lamina.layers.rate_limit.BaseLimiter.check_group`) at the earliest slot all of
    them admit it, wait until that slot and return the seconds waited. A memory
    store queues the call fairly; a shared store can reserve the slot in one
    atomic step (a Redis script) and sleep. If the slot is more than ``max_wait``
    seconds away or after ``deadline`` (a time on the limiters' clock), raise
    :class:`Refused` instead, at once when known. A caller cancelled while waiting
    gives back what it reserved. ``request`` (may be None) is the call being paced,
    for events. The limiter has checked ``weight`` (an int from 1 to every burst).
    """

    async def reserve(
        self,
        group: Sequence[Self],
        weight: int,
        *,
        max_wait: float | None,
        deadline: float | None,
        request: Request | None,
    ) -> float: ...

    async def status(self) -> LimitStatus: ...

    async def reset(self) -> None: ...
