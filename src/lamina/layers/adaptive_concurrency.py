"""Adaptive concurrency: an in-flight limit that follows the upstream's latency.

The gradient controller of Envoy's adaptive concurrency filter (itself after
Netflix's concurrency-limits): the limit is multiplied by
``gradient = min_rtt * (1 + buffer) / sample_rtt`` (clamped to [0.5, 2]), given a
headroom of its square root and kept a whole number, once per ``interval``; ``min_rtt``
is measured at the start, and again every ``min_rtt_interval``, with the limit pinned low.
"""

from __future__ import annotations

import asyncio
import builtins
import math
from random import Random

from .. import _validate as check
from .._clock import Clock, default_clock
from .._core import Request, Response, Service
from .._errors import ConcurrencyLimitExceeded, ConfigError
from .._events import emit
from ._waiters import Waiters

__all__ = ["AdaptiveConcurrencyLayer", "AdaptiveConcurrencyService"]

#: The most endpoints a ``per_endpoint`` layer keeps a limiter for (an idle one is dropped).
MAX_ENDPOINTS = 1000

#: Which of the probe's latencies is ``min_rtt``: the low end (a scheduling hiccup or a
#: new connection only ever adds latency), not the very lowest (one lucky answer).
MIN_RTT_QUANTILE = 0.1


class AdaptiveConcurrencyLayer:
    """Let at most ``limit`` calls run at once, ``limit`` following measured latency.

    Without configuration it behaves like Envoy's adaptive concurrency filter:

    * it first measures ``min_rtt``, the unloaded latency: the low end (10th
      percentile) of ``min_rtt_samples`` calls (25) made with the limit pinned to
      ``min_limit`` (3); it measures again every ``min_rtt_interval`` seconds (60,
      with 10% jitter), and lowers it to any ``sample_rtt`` below it;
    * then, every ``interval`` (0.1 s) with at least one answer, it takes
      ``sample_rtt``, the ``percentile`` (median) of the latencies seen in that interval,
      and sets ``limit = floor(limit * gradient + sqrt(limit * gradient))`` with
      ``gradient = min_rtt * (1 + buffer) / sample_rtt`` clamped to [0.5, 2]
      (``buffer`` 0.25), the whole kept between ``min_limit`` and ``max_limit`` (1000).

    Latency here is the time a call spends inside the layer once admitted, errors
    included (a timeout is a long latency); cancelled calls are not measured.

    A call beyond the limit is shed at once with :class:`lamina.ConcurrencyLimitExceeded`
    (Envoy answers 503, Netflix's ``SimpleLimiter`` refuses): queueing behind an
    overloaded upstream is what the limit is there to avoid. ``max_wait`` (seconds)
    lets a call wait that long, in FIFO order, for a slot instead (Netflix's
    ``BlockingLimiter``); ``request.deadline`` bounds the wait too.

    The layer instance is the limiter: wrap several stacks with it to share one limit.
    ``per_endpoint=True`` keeps one limiter (same options) per ``request.endpoint``
    instead, :meth:`for_endpoint` returns it: what a flow needs, which builds one layer
    for all its endpoints. One event loop at a time: it is not thread-safe.
    Events: ``adaptive.rejected`` (``limit``, ``in_flight``) when a call is shed, and
    ``adaptive.limit`` (``old``, ``new``, ``sample_rtt``, ``min_rtt``) on the call
    whose answer changed the limit.
    """

    __slots__ = (
        "_endpoints",
        "_interval_end",
        "_min_rtt_due",
        "_next_limit",
        "_peak",
        "_probe",
        "_probe_started",
        "_samples",
        "_waiters",
        "buffer",
        "clock",
        "in_flight",
        "interval",
        "limit",
        "max_limit",
        "max_wait",
        "min_limit",
        "min_rtt",
        "min_rtt_interval",
        "min_rtt_samples",
        "per_endpoint",
        "percentile",
        "random",
    )

    def __init__(
        self,
        *,
        min_limit: int = 3,
        max_limit: int = 1000,
        interval: float = 0.1,
        percentile: float = 0.5,
        buffer: float = 0.25,
        min_rtt_interval: float = 60.0,
        min_rtt_samples: int = 25,
        max_wait: float | None = None,
        per_endpoint: bool = False,
        clock: Clock | None = None,
        random: Random | None = None,
    ) -> None:
        self.min_limit = check.count(min_limit, "min_limit", high=100_000)
        self.max_limit = check.count(max_limit, "max_limit", low=self.min_limit, high=100_000)
        self.interval = check.seconds(interval, "interval")
        self.percentile = check.number(
            percentile, "percentile", low=0.01, high=1.0, what="a fraction"
        )
        self.buffer = check.number(buffer, "buffer", low=0.0, high=10.0, what="a fraction")
        self.min_rtt_interval = check.seconds(min_rtt_interval, "min_rtt_interval")
        self.min_rtt_samples = check.count(min_rtt_samples, "min_rtt_samples", high=100_000)
        self.max_wait = (
            None if max_wait is None else check.seconds(max_wait, "max_wait", allow_zero=True)
        )
        self.per_endpoint = check.flag(per_endpoint, "per_endpoint")
        self._endpoints: dict[str | None, AdaptiveConcurrencyLayer] = {}
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("must have now() and sleep()", field="clock")
        self.clock = clock or default_clock
        if random is not None and not callable(getattr(random, "uniform", None)):
            raise ConfigError(
                f"must be a random.Random (for the jitter), got {random!r}", field="random"
            )
        self.random = random or Random()
        self.limit = float(self.min_limit)  # the limit in force (its floor is what's used)
        self.min_rtt: float | None = None
        self.in_flight = 0
        self._next_limit = float(self.min_limit)  # the limit to restore after a probe
        self._probe: list[float] | None = []  # latencies of the min_rtt probe, when on
        self._probe_started = -math.inf  # calls admitted before it do not count in it
        self._peak = 0  # most calls in flight during the current interval
        self._samples: list[float] = []  # latencies of the current interval
        self._interval_end = 0.0
        self._min_rtt_due = math.inf
        self._waiters = Waiters()

    @property
    def current_limit(self) -> int:
        """Calls admitted at once right now."""
        return max(self.min_limit, int(self.limit))

    @property
    def waiting(self) -> int:
        """Calls queued for a slot (only with ``max_wait``)."""
        return len(self._waiters)

    def for_endpoint(self, endpoint: str | None) -> AdaptiveConcurrencyLayer:
        """The limiter of ``endpoint``'s calls: this layer, or with ``per_endpoint`` one
        of its own (made on first use)."""
        if not self.per_endpoint:
            return self
        limiters = self._endpoints
        limiter = limiters.get(endpoint)
        if limiter is None:
            if len(limiters) >= MAX_ENDPOINTS:
                idle = [k for k, v in limiters.items() if not v.in_flight and not v._waiters]
                del limiters[idle[0] if idle else next(iter(limiters))]
            limiter = limiters[endpoint] = AdaptiveConcurrencyLayer(
                min_limit=self.min_limit,
                max_limit=self.max_limit,
                interval=self.interval,
                percentile=self.percentile,
                buffer=self.buffer,
                min_rtt_interval=self.min_rtt_interval,
                min_rtt_samples=self.min_rtt_samples,
                max_wait=self.max_wait,
                clock=self.clock,
                random=self.random,
            )
        return limiter

    # -- admission ---------------------------------------------------------
    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued ahead."""
        if self.in_flight < self.current_limit and not self._waiters:
            self.in_flight += 1
            if self.in_flight > self._peak:
                self._peak = self.in_flight
            return True
        return False

    async def acquire(self, request: Request) -> None:
        """Take a slot, waiting up to ``max_wait`` when configured, else shedding."""
        if self.try_acquire():
            return
        wait = self.max_wait
        if wait and request.deadline is not None:
            wait = min(wait, request.deadline - self.clock.now())
        if not wait or wait <= 0:
            raise self._rejected(request)
        try:
            await self._waiters.wait(wait, self.release)
        except builtins.TimeoutError:
            raise self._rejected(request, waited=wait) from None

    def _rejected(self, request: Request, waited: float = 0.0) -> ConcurrencyLimitExceeded:
        emit(request, "adaptive.rejected", limit=self.current_limit, in_flight=self.in_flight)
        after = f" after waiting {waited:.3g}s" if waited else ""
        return ConcurrencyLimitExceeded(
            f"adaptive concurrency limit {self.current_limit} reached "
            f"({self.in_flight} in flight){after}",
            request=request,
        )

    def release(self) -> None:
        """Give a slot back: to the first waiter while under the limit, else to the pool."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self.in_flight < self.current_limit and self._waiters.wake_one():
            self.in_flight += 1
            self._peak = max(self._peak, self.in_flight)

    # -- the controller ----------------------------------------------------
    def observe(self, started: float, request: Request | None = None) -> None:
        """Feed the controller the latency of a call admitted at ``started`` (clock time)
        that has just finished."""
        now = self.clock.now()
        rtt = now - started
        probe = self._probe
        if probe is not None:
            if started < self._probe_started:
                return  # admitted under the old limit: not an unloaded latency
            probe.append(rtt)
            if len(probe) >= self.min_rtt_samples:
                self.min_rtt = _quantile(probe, MIN_RTT_QUANTILE)
                self._probe = None
                self._set_limit(self._next_limit, request, None)
                self._samples.clear()
                self._interval_end = now + self.interval
                jitter = 1.0 + self.random.uniform(-0.1, 0.1)
                self._min_rtt_due = now + self.min_rtt_interval * jitter
            return
        self._samples.append(rtt)
        if now < self._interval_end:
            return
        self._interval_end = now + self.interval
        sample_rtt = _quantile(self._samples, self.percentile)
        self._samples.clear()
        min_rtt = self.min_rtt
        assert min_rtt is not None
        if sample_rtt < min_rtt:  # measured in a slow moment: the upstream is quicker than that
            min_rtt = self.min_rtt = sample_rtt
        gradient = min(2.0, max(0.5, min_rtt * (1.0 + self.buffer) / max(sample_rtt, 1e-9)))
        scaled = self.limit * gradient
        # whole calls, as Envoy's controller keeps them: a fraction carried from one look
        # to the next let the limit creep a call past its fixed point
        new = float(math.floor(scaled + math.sqrt(scaled)))
        new = min(float(self.max_limit), max(float(self.min_limit), new))
        if new > self.limit and self._peak * 2 < self.current_limit:
            new = self.limit  # the callers did not use half the limit: no evidence to grow
        self._peak = self.in_flight
        if now >= self._min_rtt_due:  # time to measure min_rtt again: pin the limit low
            self._next_limit = new
            self._probe = []
            self._probe_started = now
            new = float(self.min_limit)
        self._set_limit(new, request, sample_rtt)

    def _set_limit(self, new: float, request: Request | None, sample_rtt: float | None) -> None:
        old = self.current_limit
        self.limit = new
        if request is not None and self.current_limit != old:
            emit(
                request,
                "adaptive.limit",
                old=old,
                new=self.current_limit,
                sample_rtt=sample_rtt,
                min_rtt=self.min_rtt,
            )
        self._wake()

    def wrap(self, inner: Service) -> Service:
        return AdaptiveConcurrencyService(inner, self)

    def __repr__(self) -> str:
        if self.per_endpoint:
            limits = {name: limiter.current_limit for name, limiter in self._endpoints.items()}
            return f"AdaptiveConcurrencyLayer(per_endpoint=True, limits={limits})"
        return (
            f"AdaptiveConcurrencyLayer(limit={self.current_limit}, min_rtt={self.min_rtt}, "
            f"in_flight={self.in_flight}, waiting={len(self._waiters)})"
        )


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


class AdaptiveConcurrencyService:
    """Service made by :class:`AdaptiveConcurrencyLayer`; shares the layer's limit."""

    __slots__ = ("inner", "limiter")

    def __init__(self, inner: Service, limiter: AdaptiveConcurrencyLayer) -> None:
        self.inner = inner
        self.limiter = limiter

    async def __call__(self, request: Request) -> Response:
        limiter = self.limiter
        if limiter.per_endpoint:
            limiter = limiter.for_endpoint(request.endpoint)
        if not limiter.try_acquire():
            await limiter.acquire(request)
        started = limiter.clock.now()
        try:
            response = await self.inner(request)
        except asyncio.CancelledError:
            limiter.release()
            raise
        except BaseException:
            limiter.release()
            limiter.observe(started, request)
            raise
        limiter.release()
        limiter.observe(started, request)
        return response

    def __repr__(self) -> str:
        return f"<AdaptiveConcurrencyService {self.limiter!r} -> {self.inner!r}>"
