"""Single-flight: concurrent identical calls share one execution (per event loop)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["SingleFlight"]

T = TypeVar("T")

_HANDOVER: Any = object()  # the leader left without a result: a follower takes over


class SingleFlight(Generic[T]):
    """Run at most one call per key at a time on each event loop.

    The first caller for a key (the leader) runs its own ``fn`` in its own
    task, so context variables such as the current span stay the leader's.
    Callers arriving meanwhile (followers) wait and receive the leader's
    result, or the leader's exception: a failure is shared, not retried by
    every follower, so a failing upstream sees one call instead of a
    stampede. If the leader is cancelled (or leaves with a
    ``BaseException``), the first follower to wake runs its own ``fn`` and
    leads the rest. A cancelled follower only stops waiting.
    """

    __slots__ = ("_loops",)

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Future[Any]]
        ] = weakref.WeakKeyDictionary()

    def _flights(self) -> dict[str, asyncio.Future[Any]]:
        loop = asyncio.get_running_loop()
        flights = self._loops.get(loop)
        if flights is None:
            flights = self._loops[loop] = {}
        return flights

    def in_flight(self) -> int:
        """Keys with a call in progress on the running loop."""
        return len(self._flights())

    async def do(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Return ``(result, shared)``; ``shared`` is True for a follower."""
        flights = self._flights()
        while True:
            future = flights.get(key)
            if future is None:
                return await self._lead(flights, key, fn), False
            outcome = await asyncio.shield(future)
            if outcome is _HANDOVER:
                continue
            ok, value = outcome
            if ok:
                return value, True
            raise value

    async def _lead(
        self, flights: dict[str, asyncio.Future[Any]], key: str, fn: Callable[[], Awaitable[T]]
    ) -> T:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        flights[key] = future
        outcome: Any = _HANDOVER
        try:
            result = await fn()
            outcome = (True, result)
            return result
        except Exception as exc:
            outcome = (False, exc)
            raise
        finally:
            # CancelledError and other BaseExceptions leave _HANDOVER in place.
            if flights.get(key) is future:
                del flights[key]
            if not future.done():
                future.set_result(outcome)

    def __repr__(self) -> str:
        try:
            return f"SingleFlight(in_flight={self.in_flight()})"
        except RuntimeError:
            return "SingleFlight()"
