"""What the retry layer asks: "retry after N seconds, or stop?"

The :class:`~lamina.layers.retry.RetryLayer` owns the loop, the sleeps, the
attempt limit, the deadline and the budget; a :class:`RetryPolicy` only looks
at one :class:`RetryOutcome` and answers with a delay in seconds or ``None``.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ... import _validate as check
from ..._core import Request, Response
from ..._errors import (
    ConfigError,
    ConnectError,
    HTTPStatusError,
    TimeoutError,
    TransportError,
    parse_retry_after,
)

__all__ = [
    "DEFAULT_RETRY_ON",
    "IDEMPOTENT_METHODS",
    "JITTER_LOW",
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
#: With jitter on, a wait is its step times a uniform draw in ``[JITTER_LOW, 1]``.
JITTER_LOW = 0.5
#: The jitter source of every policy given none: a ``Random`` holds 2.5 KB of state,
#: too much to keep per endpoint of a 10,000-endpoint run.
_SHARED_RANDOM = _random.Random()


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

    Backoff after attempt ``n`` is ``min(max_delay, backoff * 2**(n-1))``: ``backoff``
    is the wait before the first retry, doubling after. With ``jitter=True`` each wait
    is that step times a uniform draw in ``[0.5, 1]`` from ``random`` ("equal jitter":
    spread out, yet never much sooner than asked, so ``backoff=1`` never retries after
    3 ms).
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
        codes = frozenset(check.status_codes(retry_on, "retry_on"))
        self.retry_on = DEFAULT_RETRY_ON if codes == DEFAULT_RETRY_ON else codes  # shared
        self.backoff = check.seconds(backoff, "backoff", allow_zero=True)
        self.jitter = check.flag(jitter, "jitter")
        self.max_delay = check.seconds(max_delay, "max_delay", allow_zero=True)
        if random is not None and not callable(getattr(random, "uniform", None)):
            raise ConfigError(
                "must be a random.Random (with uniform(a, b)) or None", field="random"
            )
        self.random = random if random is not None else _SHARED_RANDOM
        if not callable(wall_clock):
            raise ConfigError("must be a function returning Unix time", field="wall_clock")
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
        return cap * self.random.uniform(JITTER_LOW, 1.0) if self.jitter else cap

    def __repr__(self) -> str:
        return (
            f"StatusRetryPolicy(retry_on={sorted(self.retry_on)}, backoff={self.backoff}, "
            f"jitter={self.jitter}, max_delay={self.max_delay})"
        )
