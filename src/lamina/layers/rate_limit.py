"""Pace calls through one or more shared rate limits."""

from __future__ import annotations

from collections.abc import Sequence

from .. import _validate as check
from .._clock import Clock
from .._core import Request, Response, Service
from .._errors import ConfigError
from .._events import emit
from ..backends.base import Backend, SharedLimiter, resolve_backend
from ..ratelimit._queue import wait_for_slot
from ..ratelimit.limiter import Limiter, check_clocks, take_now

__all__ = ["RateLimitLayer", "RateLimited", "SharedRateLimited"]


class RateLimitLayer:
    """Let a call through only when every limit admits it; otherwise wait, fairly.

    ``RateLimitLayer(10, 60, burst=5)`` builds one :class:`~lamina.ratelimit.Limiter`
    (at most 5 at once, at most 10 in any 60 s, 10/min sustained) shared by
    every service this layer wraps. ``RateLimitLayer(limiters=[endpoint, shared])``
    uses existing limiters, which other layers may share: list the most
    specific first, so a call waiting on its own limit does not hold up the
    shared queue. Capacity is taken from all limits at the same instant.

    ``max_wait`` (seconds): raise :class:`lamina.RateLimitExceeded` as soon as
    the wait is known to exceed it. A wait that would pass ``request.deadline``
    also raises ``RateLimitExceeded`` at once (``retry_after`` says when a slot
    opens). A call that waited emits ``ratelimit.wait`` with ``seconds``.

    ``backend`` (a :class:`lamina.backends.Backend`, ``"memory"`` or a
    ``redis://`` URL) decides where the limit built from ``rate`` lives; a
    shared backend needs a ``name`` (its key), and every process using the
    same backend, name and rate shares one limit. ``limiters=`` may also hold
    shared limiters (``RedisBackend.limiter(...)``), all from one backend.
    """

    __slots__ = ("limiters", "max_wait")

    def __init__(
        self,
        rate: float | None = None,
        period: float = 1.0,
        *,
        burst: int | None = None,
        max_wait: float | None = None,
        clock: Clock | None = None,
        limiters: Sequence[Limiter] | Sequence[SharedLimiter] | None = None,
        backend: Backend | str | None = None,
        name: str | None = None,
    ) -> None:
        if max_wait is not None:
            check.seconds(max_wait, "max_wait", allow_zero=True)
        found: tuple[Limiter, ...] | tuple[SharedLimiter, ...]
        if limiters is not None:
            if rate is not None or burst is not None or backend is not None:
                raise ConfigError(
                    "give either rate/period/burst/backend or limiters", field="limiters"
                )
            if isinstance(limiters, Limiter | SharedLimiter):
                limiters = (limiters,)  # type: ignore[assignment]
            found = tuple(limiters)  # type: ignore[assignment]
            if found and isinstance(found[0], SharedLimiter):
                found[0].check_group(found)
                if clock is not None and clock is not getattr(found[0], "clock", None):
                    raise ConfigError("limiters already have their own clock", field="clock")
            else:
                shared = check_clocks(found)  # type: ignore[arg-type]
                if clock is not None and clock is not shared:
                    raise ConfigError("limiters already have their own clock", field="clock")
        elif rate is None:
            raise ConfigError("a rate (or limiters=) is required", field="rate")
        elif backend is None:
            found = (Limiter(rate, period, burst=burst, clock=clock, name=name),)
        else:
            built = resolve_backend(backend).limiter(
                rate, period, burst=burst, clock=clock, name=name
            )
            found = (built,)  # type: ignore[assignment]
        self.limiters: tuple[Limiter, ...] | tuple[SharedLimiter, ...] = found
        self.max_wait = None if max_wait is None else float(max_wait)

    @property
    def limiter(self) -> Limiter | SharedLimiter:
        """The first (or only) limiter."""
        return self.limiters[0]

    def wrap(self, inner: Service) -> Service:
        limiters = self.limiters
        if limiters and isinstance(limiters[0], SharedLimiter):
            return SharedRateLimited(inner, limiters, self.max_wait)
        return RateLimited(inner, limiters, self.max_wait)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        limits = ", ".join(str(lim) for lim in self.limiters)
        return f"RateLimitLayer([{limits}], max_wait={self.max_wait})"


class RateLimited:
    """Service made by :class:`RateLimitLayer`."""

    __slots__ = ("inner", "limiters", "max_wait")

    def __init__(self, inner: Service, limiters: tuple[Limiter, ...], max_wait: float | None):
        self.inner = inner
        self.limiters = limiters
        self.max_wait = max_wait

    async def __call__(self, request: Request) -> Response:
        if not take_now(self.limiters, 1):
            waited = await wait_for_slot(
                self.limiters,
                1,
                max_wait=self.max_wait,
                deadline=request.deadline,
                request=request,
            )
            if waited > 0:
                emit(request, "ratelimit.wait", seconds=waited)
        return await self.inner(request)

    def __repr__(self) -> str:
        return f"<RateLimited {self.limiters!r} -> {self.inner!r}>"


class SharedRateLimited:
    """Service made by :class:`RateLimitLayer` over shared (e.g. Redis) limiters."""

    __slots__ = ("inner", "limiters", "max_wait")

    def __init__(
        self, inner: Service, limiters: tuple[SharedLimiter, ...], max_wait: float | None
    ) -> None:
        self.inner = inner
        self.limiters = limiters
        self.max_wait = max_wait

    async def __call__(self, request: Request) -> Response:
        waited = await self.limiters[0].acquire_group(
            self.limiters, 1, max_wait=self.max_wait, deadline=request.deadline, request=request
        )
        if waited > 0:
            emit(request, "ratelimit.wait", seconds=waited)
        return await self.inner(request)

    def __repr__(self) -> str:
        return f"<SharedRateLimited {self.limiters!r} -> {self.inner!r}>"
