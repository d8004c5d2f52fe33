"""Per-attempt timeout that also respects the call's deadline."""

from __future__ import annotations

import asyncio
import sys
from collections import deque

from .. import _validate as check
from .._clock import Clock, default_clock, running_loop
from .._core import Request, Response, Service, stack_repr
from .._errors import (
    ConnectTimeout,
    TimeoutError,
    cancelled_before_sending,
    cancelled_while_connecting,
    connection_wait,
)
from .._expiry import ATTEMPT_EXPIRY

__all__ = ["TimeoutLayer", "TimeoutService"]

if sys.version_info >= (3, 12):
    _current_task = asyncio.current_task
else:  # asyncio.current_task(loop) is a Python function on 3.11: its dict, directly
    _current_task = asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]


class TimeoutLayer:
    """Bound each attempt by ``seconds`` or by ``request.deadline``, whichever is sooner.

    ``seconds=None`` applies only the deadline. Raises :class:`lamina.TimeoutError`.
    """

    __slots__ = ("clock", "seconds")

    def __init__(self, seconds: float | None, *, clock: Clock | None = None) -> None:
        self.seconds = None if seconds is None else check.seconds(seconds, "timeout")
        self.clock = clock or default_clock

    def wrap(self, inner: Service) -> Service:
        return TimeoutService(inner, self.seconds, self.clock)

    def __repr__(self) -> str:
        return f"TimeoutLayer(seconds={self.seconds})"


class TimeoutService:
    """Service made by :class:`TimeoutLayer`.

    Attempts bounded by ``seconds`` expire in the order they started, so they share one
    loop timer, armed for the oldest attempt still running (a loop timer per attempt,
    created and cancelled, cost more than the rest of the layer). An attempt bounded by
    its deadline has a timer of its own.
    """

    __slots__ = ("_loop", "_pending", "_timer", "clock", "inner", "seconds")

    def __repr__(self) -> str:
        return stack_repr(self)

    def __init__(self, inner: Service, seconds: float | None, clock: Clock) -> None:
        self.inner = inner
        self.seconds = seconds
        self.clock = clock
        # attempts under ``seconds``, oldest first; made when one starts and dropped when
        # none is left, so that 10,000 idle endpoints hold no deque (about 0.6 KB each)
        self._pending: deque[_Expiry] | None = None
        self._timer: asyncio.TimerHandle | None = None  # the shared timer, when armed
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it is armed on

    async def __call__(self, request: Request) -> Response:
        limit = self.seconds
        cause = "attempt timeout"
        if request.deadline is not None:
            remaining = request.deadline - self.clock.now()
            if remaining <= 0:
                raise TimeoutError(
                    "deadline passed before the attempt started",
                    request=request,
                    timeout=0.0,
                    request_sent=False,
                )
            if limit is None or remaining < limit:
                limit, cause = remaining, "deadline"
        if limit is None:
            return await self.inner(request)
        # What asyncio.timeout does, without its general machinery (about half the cost):
        # one loop timer that cancels this task; our own cancellation becomes TimeoutError.
        loop = running_loop()  # RuntimeError outside a running loop
        task = _current_task(loop)
        if task is None:
            raise RuntimeError("TimeoutLayer needs to run inside an asyncio task")
        when = loop.time() + limit
        expiry = _Expiry(task, when)
        handle = None
        pending = self._pending
        if (
            cause != "deadline"
            and loop is self._loop
            and self._timer is not None
            and pending is not None
            and len(pending) < _MAX_PENDING
        ):
            pending.append(expiry)  # the shared timer is armed on this loop: join it
        elif cause == "deadline" or not self._queue(expiry, loop):
            handle = loop.call_at(when, expiry.fire)
        # only a transport that reads it pays for the context variable (a token and a new
        # context mapping per attempt: objects the collector walks while calls are in flight)
        token = ATTEMPT_EXPIRY.set(when) if _EXPIRY_READER in sys.modules else None
        try:
            return await self.inner(request)
        except asyncio.CancelledError as exc:
            if expiry.fired:
                expiry.fired = False  # consumed here: the finally must not uncancel again
                if task.uncancel() <= expiry.cancelling:  # nobody else cancelled the task
                    waited = connection_wait(exc)
                    sent = not cancelled_before_sending(exc)
                    if waited:
                        cause = f"{cause}; waited {waited:.3g}s for a connection"
                    if cancelled_while_connecting(exc):  # the upstream's: it counts
                        raise ConnectTimeout(
                            f"timed out after {limit:.3g}s while connecting ({cause})",
                            request=request,
                            timeout=limit,
                            waited=waited,
                        ) from exc
                    raise TimeoutError(
                        f"timed out after {limit:.3g}s ({cause})",
                        request=request,
                        timeout=limit,
                        request_sent=sent,
                        waited=waited,
                    ) from exc
            raise
        finally:
            if token is not None:
                ATTEMPT_EXPIRY.reset(token)
            if handle is None:
                expiry.task = None  # done: drop the finished attempts at the head
                pending = self._pending
                if pending is not None:
                    while pending and pending[0].task is None:
                        pending.popleft()
                    if not pending:
                        self._pending = None  # the timer, if armed, finds nothing to do
            else:
                handle.cancel()
            if expiry.fired:  # fired, but the inner call finished or failed anyway
                task.uncancel()

    def _queue(self, expiry: _Expiry, loop: asyncio.AbstractEventLoop) -> bool:
        """Put the attempt under the shared timer; False when it needs a timer of its own."""
        pending = self._pending
        if loop is not self._loop:
            if pending:  # attempts on another loop are running
                return False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._loop = loop
        elif pending is not None and len(pending) >= _MAX_PENDING:
            return False  # a hung attempt holds many finished ones back
        if pending is None:
            pending = self._pending = deque()
        pending.append(expiry)
        if self._timer is None:
            self._timer = loop.call_at(expiry.when, self._expire, loop)
        return True

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """The shared timer: cancel the attempts due by now, then wait for the next one."""
        if loop is not self._loop:
            return
        self._timer = None
        pending = self._pending
        if pending is None:
            return
        now = loop.time()
        while pending and (pending[0].task is None or pending[0].when <= now):
            expiry = pending.popleft()
            if expiry.task is not None:
                expiry.fire()
        if pending:
            self._timer = loop.call_at(pending[0].when, self._expire, loop)
        else:
            self._pending = None


#: The module of the one transport that reads :data:`ATTEMPT_EXPIRY` (pyreqwest's client
#: goes on after its task is cancelled): until it is imported, no attempt sets it.
_EXPIRY_READER = "lamina.transports.pyreqwest"

_MAX_PENDING = 10_000
"""Attempts waiting under one shared timer (beyond it, an attempt gets its own timer)."""


class _Expiry:
    """One attempt's expiry: cancels its task once, remembering that it did."""

    __slots__ = ("cancelling", "fired", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task: asyncio.Task[object] | None = task  # None once the attempt is over
        self.when = when
        self.cancelling = task.cancelling()
        self.fired = False

    def fire(self) -> None:
        if self.task is not None:
            self.fired = True
            self.task.cancel()


Timeout = TimeoutService  # deprecated: the name before issue 15, kept for imports
