"""What the retry layer asks: "retry after N seconds, or stop?" — and its retry budget.

The :class:`~lamina.layers.retry.RetryLayer` owns the loop, the sleeps, the
attempt limit, the deadline and the budget; a :class:`RetryPolicy` only looks
at one :class:`RetryOutcome` and answers with a delay in seconds or ``None``.
"""

from __future__ import annotations

import math
import random as _random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol, runtime_checkable

from .. import _validate as check
from .._clock import Clock, default_clock
from .._core import Request, Response
from .._errors import ConnectError, HTTPStatusError, TimeoutError, TransportError

__all__ = [
    "DEFAULT_RETRY_ON",
    "IDEMPOTENT_METHODS",
    "RetryBudget",
    "RetryOutcome",
    "RetryPolicy",
    "StatusRetryPolicy",
    "is_idempotent",
    "parse_retry_after",
    "retry_after",
]

#: Statuses retried by default: rate limited, and the transient server errors.
DEFAULT_RETRY_ON = frozenset({429, 500, 502, 503, 504})
#: Methods that may be repeated without changing the outcome (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    """How one attempt ended: exactly one of ``response`` and ``error`` is set."""

    request: Request
    attempt: int
    response: Response | None = None
    error: Exception | None = None


@runtime_checkable
class RetryPolicy(Protocol):
    """Decides whether an attempt's outcome is worth another try."""

    def decide(self, outcome: RetryOutcome) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to stop here."""
        ...


def is_idempotent(request: Request) -> bool:
    """True when repeating ``request`` is safe: an idempotent method or an Idempotency-Key."""
    return request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers


def parse_retry_after(value: str, *, wall_now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    A date in the past gives ``0.0``; an unreadable value gives ``None``.
    ``wall_now`` is the current Unix time (default ``time.time()``).
    """
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        now = time.time() if wall_now is None else wall_now
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def retry_after(
    outcome: RetryOutcome, *, wall_clock: Callable[[], float] = time.time
) -> float | None:
    """The seconds the server asked to wait (``Retry-After``) in ``outcome``, or None.

    Read from the response, or from an :class:`lamina.HTTPStatusError`'s response
    (or its ``retry_after``) when the attempt raised one.
    """
    response, error = outcome.response, outcome.error
    if response is None and isinstance(error, HTTPStatusError):
        if error.response is None:
            return error.retry_after
        response = error.response
    if response is None:
        return None
    header = response.headers.get("retry-after")
    return None if header is None else parse_retry_after(header, wall_now=wall_clock())


class StatusRetryPolicy:
    """The default policy: retry transient statuses and transport failures, safely.

    * Responses whose status is in ``retry_on``; the delay is the response's
      ``Retry-After`` as the server gave it when it has one, else backoff. (The
      :class:`~lamina.layers.retry.RetryLayer` stops instead of waiting when that
      is longer than its ``max_delay`` or reaches the deadline.)
    * :class:`lamina.ConnectError`, and :class:`lamina.TimeoutError` with
      ``request_sent=False`` (nothing reached the server): always.
    * Other :class:`lamina.TransportError` and sent timeouts, and retryable
      statuses: only when :func:`is_idempotent` (the server may have acted).
    * Anything else — other 4xx, ``ParseError``, ``ConfigError``,
      ``CircuitOpenError``, ``RateLimitExceeded``, ``ConcurrencyLimitExceeded`` —
      stops at once.

    Backoff after attempt ``n`` is ``min(max_delay, backoff * 2**(n-1))``; with
    ``jitter=True`` ("full jitter") a uniform draw in ``[0, that]`` from ``random``.
    ``wall_clock`` (Unix time) turns an HTTP-date ``Retry-After`` into seconds.
    """

    __slots__ = ("backoff", "jitter", "max_delay", "random", "retry_on", "wall_clock")

    def __init__(
        self,
        *,
        retry_on: Iterable[int] = DEFAULT_RETRY_ON,
        backoff: float = 0.5,
        jitter: bool = True,
        max_delay: float = 10.0,
        random: _random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.retry_on = frozenset(check.status_codes(retry_on, "retry_on"))
        self.backoff = check.seconds(backoff, "backoff", allow_zero=True)
        self.jitter = bool(jitter)
        self.max_delay = check.seconds(max_delay, "max_delay", allow_zero=True)
        self.random = random if random is not None else _random.Random()
        self.wall_clock = wall_clock

    def decide(self, outcome: RetryOutcome) -> float | None:
        response, error = outcome.response, outcome.error
        if response is None and isinstance(error, HTTPStatusError):
            # a raise_for_status() inside the retry layer: judge it by its status
            if error.response is None:
                return self._for_status(error.status_code, outcome)
            response = error.response
        if response is not None:
            return self._for_status(response.status_code, outcome)
        if isinstance(error, ConnectError):
            return self.backoff_delay(outcome.attempt)
        if isinstance(error, TimeoutError | TransportError):
            if error.request_sent and not is_idempotent(outcome.request):
                return None
            return self.backoff_delay(outcome.attempt)
        return None

    def _for_status(self, status: int, outcome: RetryOutcome) -> float | None:
        if status not in self.retry_on or not is_idempotent(outcome.request):
            return None
        wait = retry_after(outcome, wall_clock=self.wall_clock)
        if wait is not None:
            return wait
        return self.backoff_delay(outcome.attempt)

    def backoff_delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.backoff * 2.0 ** min(attempt - 1, 64))
        return self.random.uniform(0.0, cap) if self.jitter else cap

    def __repr__(self) -> str:
        return (
            f"StatusRetryPolicy(retry_on={sorted(self.retry_on)}, backoff={self.backoff}, "
            f"jitter={self.jitter}, max_delay={self.max_delay})"
        )


SLICES = 10
"""Slices a :class:`RetryBudget`'s window is counted in."""


class RetryBudget:
    """Retries may not exceed ``percent`` of the calls made in the last ``ttl`` seconds,
    plus a floor of ``min_per_second`` retries per second (Finagle/Tower style).

    One budget is shared by every call through the layer that holds it, so a
    struggling server sees at most ``(1 + percent)`` times its normal load.

    Calls and retries are counted in :data:`SLICES` slices of ``ttl / SLICES`` seconds
    each (as Finagle's windowed adder does), so memory is fixed whatever the call rate;
    a call or retry is forgotten between ``0.9 * ttl`` and ``ttl`` after it was made.
    """

    __slots__ = (
        "_call_slices",
        "_calls",
        "_retries",
        "_retry_slices",
        "_slice",
        "_width",
        "clock",
        "min_per_second",
        "percent",
        "ttl",
    )

    def __init__(
        self,
        *,
        ttl: float = 10.0,
        min_per_second: float = 10.0,
        percent: float = 0.2,
        clock: Clock | None = None,
    ) -> None:
        self.ttl = check.seconds(ttl, "ttl")
        self.min_per_second = check.number(
            min_per_second,
            "min_per_second",
            low=0,
            high=check.MAX_RATE,
            what="a number of retries per second",
        )
        self.percent = check.fraction(percent, "percent", high=1000)
        self.clock = clock or default_clock
        self._width = self.ttl / SLICES
        self._call_slices = [0] * SLICES
        self._retry_slices = [0] * SLICES
        self._calls = 0  # sums over the slices in the window
        self._retries = 0
        self._slice: int | None = None  # index of the newest slice

    def deposit(self) -> None:
        """Record one call (its first attempt)."""
        at = self._advance(self.clock.now())
        self._call_slices[at] += 1
        self._calls += 1

    def withdraw(self) -> bool:
        """Take one retry from the budget; False (and nothing taken) when it is spent."""
        at = self._advance(self.clock.now())
        if self._balance() < 1.0:
            return False
        self._retry_slices[at] += 1
        self._retries += 1
        return True

    @property
    def remaining(self) -> int:
        """How many retries the budget would allow right now."""
        self._advance(self.clock.now())
        return max(0, math.floor(self._balance()))

    def _balance(self) -> float:
        floor = self.min_per_second * self.ttl
        return floor + self.percent * self._calls - self._retries

    def _advance(self, now: float) -> int:
        """Move the window to ``now`` (emptying the slices it leaves); the ring index of
        the current slice."""
        current = math.floor(now / self._width)
        last = self._slice
        if last is None or current - last >= SLICES:
            if self._calls or self._retries:
                self._call_slices = [0] * SLICES
                self._retry_slices = [0] * SLICES
                self._calls = self._retries = 0
        elif current > last:
            for index in range(last + 1, current + 1):
                ring = index % SLICES
                self._calls -= self._call_slices[ring]
                self._retries -= self._retry_slices[ring]
                self._call_slices[ring] = self._retry_slices[ring] = 0
        else:  # the same slice, or a clock that stepped back: count it in the newest
            return last % SLICES
        self._slice = current
        return current % SLICES

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ttl={self.ttl}, min_per_second={self.min_per_second}, "
            f"percent={self.percent}, calls={self._calls}, retries={self._retries})"
        )
