"""The FIFO queue of callers waiting for a slot, shared by the concurrency layers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

__all__ = ["Waiters"]


class Waiters:
    """Callers waiting, in arrival order, to be handed a slot.

    The owner keeps the slot count: :meth:`wake_one` hands a slot to the first
    caller still waiting (the owner counts it taken), :meth:`wait` waits to be
    handed one. One event loop at a time.
    """

    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._futures)

    async def wait(self, seconds: float | None, release: Callable[[], None]) -> None:
        """Wait (at most ``seconds``, ``None``: no bound) to be handed a slot.

        Raises the builtin ``TimeoutError`` when ``seconds`` pass first, and whatever
        interrupted the wait (cancellation); either way this caller leaves the queue,
        and a slot it was handed as it was interrupted goes back through ``release()``.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.append(future)
        try:
            async with asyncio.timeout(seconds):
                await future
        except BaseException:
            if future.done() and not future.cancelled():
                release()  # handed a slot as we were interrupted: pass it on
            else:
                future.cancel()
                with contextlib.suppress(ValueError):
                    self._futures.remove(future)
            raise

    def wake_one(self) -> bool:
        """Hand a slot to the first caller still waiting; False if nobody waits."""
        futures = self._futures
        while futures:
            future = futures.popleft()
            if not future.done():
                future.set_result(None)
                return True
        return False
