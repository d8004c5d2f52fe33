"""Hedged requests: after a delay, send the request again; the first good answer wins."""

from __future__ import annotations

import asyncio
import math
import re
from collections import deque
from collections.abc import Iterable
from typing import Any

from .. import _validate as check
from .._clock import Clock, default_clock
from .._core import Request, Response, Service
from .._errors import ConfigError, HTTPStatusError, LaminaError
from .._events import emit
from .retry.layer import IDEMPOTENCY_KEY_HEADER
from .retry.policy import DEFAULT_RETRY_ON, IDEMPOTENT_METHODS

__all__ = ["HEDGE_KEY", "HedgeLayer", "HedgeService", "LatencyPercentile"]

#: ``request.extensions`` key holding the hedge number of an attempt (absent: the first).
HEDGE_KEY = "lamina.hedge"
#: The most hedges one call may send.
MAX_HEDGES = 10
#: The most endpoints whose latencies one layer learns apart (the oldest is dropped).
MAX_ENDPOINTS = 1000

_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d+)?)")

_Attempt = asyncio.Task[Response]


class LatencyPercentile:
    """A percentile of the latest ``window`` latencies, ``None`` until ``min_samples``.

    Memory is bounded by ``window``; the sorted copy is rebuilt after every
    twentieth of the window's new samples, not on every read.
    """

    __slots__ = ("_samples", "_since", "_value", "min_samples", "quantile")

    def __init__(self, quantile: float, *, window: int = 1000, min_samples: int = 20) -> None:
        self.quantile = quantile
        self.min_samples = min_samples
        self._samples: deque[float] = deque(maxlen=window)
        self._since = 0  # samples added since the value was computed
        self._value: float | None = None

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._since += 1

    @property
    def count(self) -> int:
        """Samples held (at most ``window``)."""
        return len(self._samples)

    def value(self) -> float | None:
        samples = self._samples
        if len(samples) < self.min_samples:
            return None
        if self._value is None or self._since * 20 >= len(samples):
            ordered = sorted(samples)
            rank = max(1, math.ceil(self.quantile * len(ordered)))  # nearest rank
            self._value = ordered[rank - 1]
            self._since = 0
        return self._value


class HedgeLayer:
    """Send another attempt of an idempotent call when the first is slow; keep the first
    good answer and cancel the others (httpx and aiohttp close their connections; a
    pyreqwest request ends by its own timeout, so keep a TimeoutLayer below this one).

    ``delay`` is a number of seconds, or a percentile of the upstream's latency that the
    layer learns (``"p95"``, the default, ``"p90"``, ``"p99.9"``), apart for each
    ``request.endpoint`` (a flow shares one layer between its endpoints): it keeps the
    latest ``window`` samples and, until it has ``min_samples``, does not hedge (warm-up). A
    sample is the latency of an attempt that answered well or, for a first attempt
    cancelled because a hedge won, the time it had run (it would have taken longer).
    To hedge a slow tail of x% of the calls, pick a percentile below 100 - x.

    At most ``max_hedges`` extra attempts per call (default 1), each ``delay`` after the
    previous one, and none within 1 ms of ``request.deadline``. An attempt that fails
    (an exception, or a status in ``hedge_on``, by default 429 and 5xx gateway errors)
    does not win: the next hedge is sent at once and the other attempts go on; when
    all have failed, the last failure is the call's outcome. Only idempotent methods
    are hedged (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) and a POST or PATCH carrying an
    ``Idempotency-Key`` header (once a hedge is out, a 409, the key in use by another
    attempt, does not win); any other call passes through untouched.

    Place it below the retry layer and the circuit breaker (one call to them) and above
    the timeout and tracing layers, so that every attempt has its own timeout and its
    own CLIENT span. Hedge attempts carry ``request.extensions["lamina.hedge"]`` (1, 2,
    ...). Events: ``hedge.sent`` (``hedge``, ``delay``, ``reason`` = ``"delay"`` or
    ``"failure"``) and ``hedge.won`` (``hedge``).
    """

    __slots__ = (
        "_latencies",
        "clock",
        "delay",
        "hedge_on",
        "max_hedges",
        "min_samples",
        "quantile",
        "window",
    )

    def __init__(
        self,
        delay: float | str = "p95",
        *,
        max_hedges: int = 1,
        min_samples: int = 20,
        window: int = 1000,
        hedge_on: Iterable[int] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.max_hedges = check.count(max_hedges, "max_hedges", high=MAX_HEDGES)
        self.min_samples = check.count(min_samples, "min_samples", high=100_000)
        self.window = check.count(window, "window", low=self.min_samples, high=100_000)
        #: the percentile learned (a fraction), None with a fixed delay
        self.quantile: float | None = None
        self._latencies: dict[str | None, LatencyPercentile] = {}
        if isinstance(delay, str):
            match = _PERCENTILE.fullmatch(delay.strip().lower())
            quantile = float(match.group(1)) if match else 0.0
            if not 0 < quantile < 100:
                raise ConfigError(
                    f"must be seconds or a percentile such as 'p95' (0 < p < 100), got {delay!r}",
                    field="delay",
                )
            self.quantile = quantile / 100
            self.delay: float | str = delay.strip().lower()
        else:
            self.delay = check.seconds(delay, "delay")
        self.hedge_on = frozenset(
            DEFAULT_RETRY_ON if hedge_on is None else check.status_codes(hedge_on, "hedge_on")
        )
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("must have now() and sleep()", field="clock")
        self.clock = clock or default_clock

    def current_delay(self, endpoint: str | None = None) -> float | None:
        """The delay before a hedge of ``endpoint``'s calls now (``None`` while a learned
        delay warms up)."""
        if self.quantile is None:
            assert isinstance(self.delay, float)
            return self.delay
        latency = self._latencies.get(endpoint)
        return None if latency is None else latency.value()

    def latency_for(self, endpoint: str | None) -> LatencyPercentile | None:
        """The latencies learned for ``endpoint`` (``None`` with a fixed delay)."""
        if self.quantile is None:
            return None
        latencies = self._latencies
        latency = latencies.get(endpoint)
        if latency is None:
            if len(latencies) >= MAX_ENDPOINTS:
                del latencies[next(iter(latencies))]
            latency = latencies[endpoint] = LatencyPercentile(
                self.quantile, window=self.window, min_samples=self.min_samples
            )
        return latency

    def wrap(self, inner: Service) -> Service:
        return HedgeService(inner, self)

    def __repr__(self) -> str:
        return f"HedgeLayer(delay={self.delay!r}, max_hedges={self.max_hedges})"


def hedgeable(request: Request) -> bool:
    """Whether sending ``request`` twice is safe (idempotent, or an idempotency key)."""
    return request.method in IDEMPOTENT_METHODS or IDEMPOTENCY_KEY_HEADER in request.headers


class HedgeService:
    """Service made by :class:`HedgeLayer`; shares the layer's learned latencies."""

    __slots__ = ("config", "inner")

    def __init__(self, inner: Service, config: HedgeLayer) -> None:
        self.inner = inner
        self.config = config

    async def __call__(self, request: Request) -> Response:
        config = self.config
        if not hedgeable(request):
            return await self.inner(request)
        latency = config.latency_for(request.endpoint)
        if latency is None:
            assert isinstance(config.delay, float)
            return await self._hedged(request, config.delay, None)
        delay = latency.value()
        if delay is None:
            started = config.clock.now()  # warming up: one attempt, timed
            response = await self.inner(request)
            if response.status_code not in config.hedge_on:
                latency.add(config.clock.now() - started)
            return response
        return await self._hedged(request, delay, latency)

    async def _hedged(
        self, request: Request, delay: float, latency: LatencyPercentile | None
    ) -> Response:
        config = self.config
        clock = config.clock
        started: dict[_Attempt, tuple[int, float]] = {}  # attempt -> (hedge number, start)

        def send(number: int) -> _Attempt:
            attempt = request
            if number:
                attempt = request.replace(extensions={**request.extensions, HEDGE_KEY: number})
            task = asyncio.ensure_future(self.inner(attempt))
            started[task] = (number, clock.now())
            return task

        deadline = request.deadline
        keyed = IDEMPOTENCY_KEY_HEADER in request.headers

        def may_hedge() -> bool:
            # a hedge sent once the call's deadline has passed (or but a millisecond
            # before: a loop runs a timer up to its resolution early) could not answer
            return sent <= config.max_hedges and (
                deadline is None or clock.now() + check.MIN_SECONDS < deadline
            )

        first = send(0)
        running: set[_Attempt] = {first}
        sent = 1  # attempts sent so far
        timer: asyncio.Task[None] | None = None
        failure: _Attempt | None = None
        failures: list[tuple[int, _Attempt]] = []  # (hedge number, attempt), as they failed
        try:
            while True:
                if timer is None and may_hedge():
                    timer = asyncio.ensure_future(clock.sleep(delay))
                waiting: set[asyncio.Future[Any]] = set(running)
                if timer is not None:
                    waiting.add(timer)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                failed = False
                for task in [t for t in running if t in done]:
                    running.discard(task)
                    number, start = started[task]
                    if self._good(task, keyed and sent > 1):
                        if latency is not None:
                            now = clock.now()
                            latency.add(now - start)
                            if first in running:  # it took at least this long
                                latency.add(now - started[first][1])
                        if number:
                            emit(request, "hedge.won", hedge=number)
                        return task.result()
                    failure, failed = task, True
                    failures.append((number, task))
                if failed and may_hedge():
                    if timer is not None:
                        timer.cancel()
                        timer = None
                    emit(request, "hedge.sent", hedge=sent, delay=0.0, reason="failure")
                    running.add(send(sent))
                    sent += 1
                elif timer is not None and timer.done():
                    timer = None
                    if may_hedge():
                        emit(request, "hedge.sent", hedge=sent, delay=delay, reason="delay")
                        running.add(send(sent))
                        sent += 1
                if not running:
                    assert failure is not None
                    if sent > 1 and not failure.cancelled():
                        error = failure.exception()
                        if error is not None:
                            _name_the_attempts(error, failures)
                    return failure.result()  # the last failure: its response or its error
        finally:
            await _cancel_all(running, timer)

    def _good(self, task: _Attempt, key_shared: bool) -> bool:
        if task.cancelled() or task.exception() is not None:
            return False
        status = task.result().status_code
        if status == 409 and key_shared:
            # the key is in use, by another attempt of this call that reached the server
            # first (the IETF Idempotency-Key draft's answer to a concurrent duplicate)
            return False
        return status not in self.config.hedge_on

    def __repr__(self) -> str:
        return f"<HedgeService {self.config!r} -> {self.inner!r}>"


def _name_the_attempts(error: BaseException, failures: list[tuple[int, _Attempt]]) -> None:
    """Say in ``error`` (the last failure, raised) that every attempt failed, and how:
    a :class:`lamina.LaminaError` gets it in its message, any other error as a note; both
    get ``hedge_attempts``."""
    if getattr(error, "hedge_attempts", None) is not None:
        return  # the same error object raised again: already named
    count = len(failures)
    how = ", ".join(_failure(task) for _, task in sorted(failures, key=lambda f: f[0]))
    summary = f"all {count} hedged attempts failed ({how})"
    error.hedge_attempts = count  # type: ignore[attr-defined]
    if isinstance(error, LaminaError):
        error.message = f"{error.message}; {summary}" if error.message else summary
        error.args = (error._render(),)
    else:
        error.add_note(summary)


def _failure(task: _Attempt) -> str:
    """How one attempt failed, in a few words (no header or body text)."""
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    if error is None:
        return f"HTTP {task.result().status_code}"
    if isinstance(error, HTTPStatusError):
        return f"HTTP {error.status_code}"
    return type(error).__name__


async def _cancel_all(running: set[_Attempt], timer: asyncio.Task[None] | None) -> None:
    """Cancel the losing attempts and wait until they have let go of their connections.

    Cancelled again meanwhile (an outer timeout, then a task group), it passes the
    cancellation on and still waits for them, as a task group does, then raises it."""
    attempts = [*running]
    pending: list[asyncio.Future[Any]] = [*attempts]
    if timer is not None:
        pending.append(timer)
    interrupted = False
    while pending:
        for future in pending:
            future.cancel()
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            interrupted = True
        pending = [future for future in pending if not future.done()]
    for task in attempts:  # collect what they raised (CancelledError, or a late error)
        if not task.cancelled():
            task.exception()
    if interrupted:
        raise asyncio.CancelledError
