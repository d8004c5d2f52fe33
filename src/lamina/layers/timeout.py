"""Per-attempt timeout that also respects the call's deadline."""

from __future__ import annotations

import asyncio

from .. import _validate as check
from .._clock import Clock, default_clock
from .._core import Request, Response, Service
from .._errors import (
    ConnectTimeout,
    TimeoutError,
    cancelled_before_sending,
    cancelled_while_connecting,
    connection_wait,
)
from .._expiry import ATTEMPT_EXPIRY

__all__ = ["TimeoutLayer", "TimeoutService"]


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
    """Service made by :class:`TimeoutLayer`."""

    __slots__ = ("clock", "inner", "seconds")

    def __init__(self, inner: Service, seconds: float | None, clock: Clock) -> None:
        self.inner = inner
        self.seconds = seconds
        self.clock = clock

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
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("TimeoutLayer needs to run inside an asyncio task")
        loop = task.get_loop()
        expiry = _Expiry(task)
        when = loop.time() + limit
        handle = loop.call_at(when, expiry.fire)
        token = ATTEMPT_EXPIRY.set(when)
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
            ATTEMPT_EXPIRY.reset(token)
            handle.cancel()
            if expiry.fired:  # fired, but the inner call finished or failed anyway
                task.uncancel()


class _Expiry:
    """The timer's callback: cancels the task once, remembering that it did."""

    __slots__ = ("cancelling", "fired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self.task.cancel()


Timeout = TimeoutService  # deprecated: the name before issue 15, kept for imports
