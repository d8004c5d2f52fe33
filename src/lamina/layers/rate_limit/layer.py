"""Pace calls through one or more shared rate limits."""

from __future__ import annotations

from ... import _validate as check
from ..._clock import Clock
from ..._core import Request, Response, Service
from ..._errors import ConfigError
from ..._events import emit
from ...backends.base import Backend, resolve_backend
from .adapt import as_limiters
from .bucket import resolve_rate
from .limiter import BaseLimiter, check_limiters, in_memory, reserve
from .memory_store import take_now

__all__ = ["RateLimitLayer", "RateLimitService"]


class RateLimitLayer:
    """Let a call through only when every limit admits it; otherwise wait, fairly.

    ``RateLimitLayer(per_minute=10, burst=5)`` (the same as ``RateLimitLayer(10, 60,
    burst=5)``: ``rate`` calls per ``period`` seconds, and ``period`` defaults to 1
    second) builds one :class:`~lamina.layers.rate_limit.Limiter` (at most 5 at once,
    at most 10 in any 60 s, 10/min sustained) shared by every service this layer
    wraps. ``per_second=`` and ``per_hour=`` name their unit the same way; give one
    form only. ``APIEndpoint(rate_limit=10, burst_limit=5)`` is ``per_minute=10, burst=5``.

    ``RateLimitLayer(limiters=[endpoint, shared])`` uses existing limiters (lamina's,
    a :class:`~lamina.layers.rate_limit.RateLimiter`, or an ``aiolimiter.AsyncLimiter``),
    which other layers may share: list the most specific first, so a call waiting on
    its own limit does not hold up the shared queue. Capacity is taken from all limits
    at the same instant.

    ``max_wait`` (seconds): raise :class:`lamina.RateLimitExceeded` as soon as
    the wait is known to exceed it. A wait that would pass ``request.deadline``
    also raises ``RateLimitExceeded`` at once (``retry_after`` says when a slot
    opens). A call that waited emits ``ratelimit.wait`` with ``seconds``.

    ``backend`` (a :class:`lamina.backends.Backend`, ``"memory"`` or a
    ``redis://`` URL) decides where the limit built from ``rate`` lives; a
    shared backend needs a ``name`` (its key), and every process using the
    same backend, name and rate shares one limit. ``limiters=`` may also hold
    shared limiters (``RedisBackend.limiter(...)``), all from one backend.

    It wraps into a :class:`RateLimitService` (not ``RateLimit``: that name is the
    reference's rate spec, :class:`lamina.RateLimit`).
    """

    __slots__ = ("limiters", "max_wait")

    def __init__(
        self,
        rate: float | None = None,
        period: float | None = None,
        *,
        per_second: float | None = None,
        per_minute: float | None = None,
        per_hour: float | None = None,
        burst: int | None = None,
        max_wait: float | None = None,
        clock: Clock | None = None,
        limiters: object = None,
        backend: Backend | str | None = None,
        name: str | None = None,
    ) -> None:
        self.max_wait = (
            None if max_wait is None else check.seconds(max_wait, "max_wait", allow_zero=True)
        )
        spec = {
            "rate": rate,
            "period": period,
            "per_second": per_second,
            "per_minute": per_minute,
            "per_hour": per_hour,
            "burst": burst,
            "backend": backend,
            "name": name,
        }
        if limiters is not None:
            given = [field for field, value in spec.items() if value is not None]
            if given:
                raise ConfigError(
                    f"give either limiters= or a rate, not both ({', '.join(given)} "
                    "configure the limit built from a rate; limiters= bring their own)",
                    field="limiters",
                )
            found = as_limiters(limiters)
            own_clock = check_limiters(found)
            if clock is not None and clock is not own_clock:
                raise ConfigError("limiters already have their own clock", field="clock")
        else:
            if all(value is None for value in list(spec.values())[:5]):
                raise ConfigError(
                    "a rate is required: per_second=, per_minute=, per_hour=, "
                    "rate= (calls per period= seconds, default 1) or limiters=",
                    field="rate",
                )
            calls, seconds = resolve_rate(rate, period, per_second, per_minute, per_hour)
            limiter = resolve_backend(backend).limiter(
                calls, seconds, burst=burst, clock=clock, name=name
            )
            found = (limiter,)
        self.limiters: tuple[BaseLimiter, ...] = found

    @property
    def limiter(self) -> BaseLimiter:
        """The first (or only) limiter."""
        return self.limiters[0]

    def wrap(self, inner: Service) -> Service:
        return RateLimitService(inner, self.limiters, self.max_wait)

    def __repr__(self) -> str:
        limits = ", ".join(str(lim) for lim in self.limiters)
        wait = "None" if self.max_wait is None else f"{self.max_wait:g}s"
        return f"RateLimitLayer([{limits}], max_wait={wait})"


class RateLimitService:
    """Service made by :class:`RateLimitLayer`: one unit of every limit, then the call."""

    __slots__ = ("inner", "limiters", "local", "max_wait", "stores")

    def __init__(
        self, inner: Service, limiters: tuple[BaseLimiter, ...], max_wait: float | None
    ) -> None:
        self.inner = inner
        self.limiters = limiters
        self.max_wait = max_wait
        self.stores = tuple(limiter.store for limiter in limiters)
        self.local = in_memory(limiters)  # these take a free unit without an await

    async def __call__(self, request: Request) -> Response:
        local = self.local
        if local is None or not take_now(local, 1):
            waited = await reserve(
                self.limiters, self.stores, 1, self.max_wait, request.deadline, request
            )
            if waited > 0:
                emit(request, "ratelimit.wait", seconds=waited)
        return await self.inner(request)

    def __repr__(self) -> str:
        return f"<RateLimitService {self.limiters!r} -> {self.inner!r}>"
