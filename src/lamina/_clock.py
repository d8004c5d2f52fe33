"""One clock for every time-dependent layer, so tests can run in virtual time."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from threading import get_ident
from typing import Any, Protocol, runtime_checkable

__all__ = ["Clock", "LoopClock", "default_clock", "running_loop"]

if sys.version_info >= (3, 12):
    running_loop = asyncio.get_running_loop
else:
    _last_loop: Any = None  # the loop running_loop() last found (an asyncio BaseEventLoop)

    def running_loop() -> asyncio.AbstractEventLoop:
        """``asyncio.get_running_loop()`` without its ``getpid()`` system call (Python
        3.11 makes one per call to notice a fork; 3.12 no longer does): the loop last
        found is still the running one while it runs in this thread (asyncio runs one
        loop per thread at a time); a fork forgets it. Raises ``RuntimeError`` outside
        a running loop."""
        global _last_loop
        loop = _last_loop
        if loop is not None and loop._thread_id == get_ident():
            return loop  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        if hasattr(loop, "_thread_id"):  # asyncio's own loops say where they run
            _last_loop = loop
        return loop

    def _forget_loop() -> None:
        global _last_loop
        _last_loop = None

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_loop)


@runtime_checkable
class Clock(Protocol):
    """Monotonic time in seconds, and a way to wait."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running event loop's clock (``loop.time()`` and ``asyncio.sleep``).

    Because it reads the loop, tools that virtualise the loop's time (such as
    ``looptime``) make every lamina timer virtual too, timeouts included.
    """

    __slots__ = ()

    def now(self) -> float:
        try:
            return running_loop().time()
        except RuntimeError:
            return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "LoopClock()"


default_clock = LoopClock()
