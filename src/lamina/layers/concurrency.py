"""A bulkhead: at most N calls in flight, a bounded FIFO queue for the rest."""

from __future__ import annotations

import builtins

from .. import _validate as check
from .._clock import Clock, default_clock
from .._core import Request, Response, Service
from .._errors import ConcurrencyLimitExceeded, TimeoutError
from ._waiters import Waiters

__all__ = ["ConcurrencyLimitLayer", "ConcurrencyLimitService"]


class ConcurrencyLimitLayer:
    """Let at most ``max_concurrent`` calls run at once through this layer.

    The layer instance *is* the pool: wrap several endpoints' stacks with the
    same instance to give them one shared bulkhead. Extra calls wait in FIFO
    order; when ``max_waiting`` calls already wait, a new one fails at once
    with :class:`lamina.ConcurrencyLimitExceeded` (``None``: no bound,
    ``0``: never wait). A queued call whose ``request.deadline`` passes raises
    :class:`lamina.TimeoutError` (``request_sent=False``). Slots are released on
    success, error and cancellation, including cancellation while queued.
    """

    __slots__ = ("_in_flight", "_waiters", "clock", "max_concurrent", "max_waiting")

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_waiting: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.max_concurrent = check.count(max_concurrent, "max_concurrent")
        self.max_waiting = (
            None if max_waiting is None else check.count(max_waiting, "max_waiting", low=0)
        )
        self.clock = clock or default_clock
        self._in_flight = 0
        self._waiters = Waiters()

    @property
    def in_flight(self) -> int:
        """Slots held right now (running calls, and waiters just handed a slot)."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Calls queued for a slot."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued ahead."""
        if self._in_flight < self.max_concurrent and not self._waiters:
            self._in_flight += 1
            return True
        return False

    async def acquire(self, request: Request | None = None) -> None:
        """Take a slot, queueing (FIFO) if none is free; pair with :meth:`release`."""
        if self.try_acquire():
            return
        if self.max_waiting is not None and len(self._waiters) >= self.max_waiting:
            raise ConcurrencyLimitExceeded(
                f"{self.max_concurrent} calls in flight and {len(self._waiters)} waiting "
                f"(max_waiting={self.max_waiting})",
                request=request,
            )
        deadline = request.deadline if request is not None else None
        timeout = None if deadline is None else deadline - self.clock.now()
        if timeout is not None and timeout <= 0:
            raise _deadline_error(request)
        try:
            await self._waiters.wait(timeout, self.release)
        except builtins.TimeoutError as exc:
            raise _deadline_error(request) from exc

    def release(self) -> None:
        """Give a slot back: to the first waiter still waiting, else to the pool."""
        if not self._waiters.wake_one():  # else the slot changes hands: in_flight unchanged
            self._in_flight -= 1

    def wrap(self, inner: Service) -> Service:
        return ConcurrencyLimitService(inner, self)

    def __repr__(self) -> str:
        return (
            f"ConcurrencyLimitLayer(max_concurrent={self.max_concurrent}, "
            f"max_waiting={self.max_waiting}, in_flight={self._in_flight}, "
            f"waiting={len(self._waiters)})"
        )


def _deadline_error(request: Request | None) -> TimeoutError:
    return TimeoutError(
        "deadline passed while waiting for a concurrency slot",
        request=request,
        timeout=0.0,
        request_sent=False,
    )


class ConcurrencyLimitService:
    """Service made by :class:`ConcurrencyLimitLayer`; shares the layer's slots."""

    __slots__ = ("inner", "pool")

    def __init__(self, inner: Service, pool: ConcurrencyLimitLayer) -> None:
        self.inner = inner
        self.pool = pool

    async def __call__(self, request: Request) -> Response:
        pool = self.pool
        if not pool.try_acquire():
            await pool.acquire(request)
        try:
            return await self.inner(request)
        finally:
            pool.release()

    def __repr__(self) -> str:
        return f"<ConcurrencyLimitService {self.pool!r} -> {self.inner!r}>"


ConcurrencyLimit = ConcurrencyLimitService  # deprecated: the name before issue 15, kept for imports
