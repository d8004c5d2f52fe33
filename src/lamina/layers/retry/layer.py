"""Retry failed attempts with backoff, safely, within the call's deadline and a budget."""

from __future__ import annotations

import math
import os
import random as _random
import time
from collections.abc import Iterable

from ... import _validate as check
from ..._clock import Clock, default_clock
from ..._core import Request, Response, Service
from ..._errors import ConfigError, LaminaError
from ..._events import emit
from .budget import RetryBudget
from .policy import DEFAULT_RETRY_ON, RetryOutcome, RetryPolicy, StatusRetryPolicy, retry_after

__all__ = [
    "DEFAULT_ATTEMPTS",
    "IDEMPOTENCY_KEY_HEADER",
    "RetryLayer",
    "RetryService",
    "new_idempotency_key",
]

DEFAULT_ATTEMPTS = 3
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"


class RetryLayer:
    """Call the inner service again when an attempt fails transiently.

    ``attempts`` counts every try, the first one included (default 3);
    ``retries`` counts the extra ones after the first (``retries=2`` is
    ``attempts=3``, and is what ``APIEndpoint.retry_count`` means). Give one of
    the two; the layer keeps ``attempts`` and shows both in its repr. Which
    outcomes are retried and after how long is the ``policy``'s answer — by
    default a :class:`StatusRetryPolicy` built from ``retry_on``, ``backoff``,
    ``jitter``, ``max_delay`` and ``random``.
    The layer itself caps every delay at ``max_delay``, never sleeps past the
    request's deadline (or ``total_timeout`` after the call started), and
    spends one retry of the shared ``budget`` (a :class:`RetryBudget`) per retry.

    A ``Retry-After`` is the server's word: the layer never retries sooner, and
    when it is longer than ``max_delay`` or would reach the deadline the call
    ends at once with the last answer (whose :class:`lamina.HTTPStatusError`
    carries ``retry_after``) instead of sleeping.

    With ``idempotency_key=True`` a call without an ``Idempotency-Key`` header
    gets one (a UUID4), the same on every attempt — which also makes a POST
    safe to retry. Each attempt's request has ``attempt`` set; the returned
    response has ``attempts``, and a raised :class:`lamina.LaminaError` gets an
    ``attempts`` attribute. Before each sleep the layer emits
    ``retry.scheduled`` (``attempt`` = the attempt about to be made, ``delay``,
    ``reason`` = the status or the error's class name); when it stops early it
    emits ``retry.budget_exhausted`` (``attempt``) or ``retry.retry_after_exceeded``
    (``attempt``, ``retry_after``, ``limit`` = ``"max_delay"`` or ``"deadline"``).
    """

    __slots__ = (
        "attempts",
        "budget",
        "clock",
        "idempotency_key",
        "max_delay",
        "policy",
        "total_timeout",
    )

    def __init__(
        self,
        *,
        attempts: int | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        jitter: bool | None = None,
        max_delay: float = 10.0,
        retry_on: Iterable[int] | None = None,
        clock: Clock | None = None,
        policy: RetryPolicy | None = None,
        idempotency_key: bool = False,
        budget: RetryBudget | None = None,
        total_timeout: float | None = None,
        deadline: float | None = None,
        random: _random.Random | None = None,
    ) -> None:
        self.attempts = _total_attempts(attempts, retries)
        self.max_delay = check.seconds(max_delay, "max_delay", allow_zero=True)
        if policy is None:
            policy = StatusRetryPolicy(
                retry_on=DEFAULT_RETRY_ON if retry_on is None else retry_on,
                backoff=0.5 if backoff is None else backoff,
                jitter=True if jitter is None else jitter,
                max_delay=self.max_delay,
                random=random,
            )
        else:
            given = [
                name
                for name, value in (
                    ("backoff", backoff),
                    ("jitter", jitter),
                    ("retry_on", retry_on),
                    ("random", random),
                )
                if value is not None
            ]
            if given:
                raise ConfigError(
                    f"{', '.join(given)} configure the default policy; "
                    "set them on your policy instead",
                    field="policy",
                )
            if not callable(getattr(policy, "decide", None)):
                raise ConfigError("must have a decide(outcome) method", field="policy")
        self.policy: RetryPolicy = policy
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ConfigError("must be a RetryBudget or None", field="budget")
        self.budget = budget
        if total_timeout is not None and deadline is not None:
            raise ConfigError(
                "give total_timeout or deadline (an alias), not both", field="deadline"
            )
        if deadline is not None:
            total_timeout = check.seconds(deadline, "deadline")
        elif total_timeout is not None:
            total_timeout = check.seconds(total_timeout, "total_timeout")
        self.total_timeout = total_timeout
        self.idempotency_key = check.flag(idempotency_key, "idempotency_key")
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("must have now() and sleep()", field="clock")
        self.clock = clock or default_clock

    def wrap(self, inner: Service) -> Service:
        return RetryService(inner, self)

    def __repr__(self) -> str:
        extra = f", total_timeout={self.total_timeout}" if self.total_timeout else ""
        extra += ", idempotency_key=True" if self.idempotency_key else ""
        extra += f", budget={self.budget!r}" if self.budget else ""
        return (
            f"RetryLayer(attempts={self.attempts} ({ATTEMPTS_MEANING}; "
            f"retries={self.attempts - 1}), policy={self.policy!r}{extra})"
        )

    @property
    def retries(self) -> int:
        """Extra tries after the first one (``attempts - 1``)."""
        return self.attempts - 1


ATTEMPTS_MEANING = "tries in all, the first one included"
RETRIES_MEANING = "extra tries after the first one"


def _total_attempts(attempts: int | None, retries: int | None) -> int:
    if retries is not None and attempts is None:
        what = f"a number of retries ({RETRIES_MEANING})"
        return check.integer(retries, "retries", low=0, high=check.MAX_RETRIES, what=what) + 1
    if attempts is None:
        return DEFAULT_ATTEMPTS
    what = f"a number of attempts ({ATTEMPTS_MEANING})"
    total = check.integer(attempts, "attempts", low=1, high=check.MAX_RETRIES + 1, what=what)
    if retries is not None:
        raise ConfigError(
            f"give attempts ({ATTEMPTS_MEANING}) or retries ({RETRIES_MEANING}), not both: "
            f"attempts={total} is retries={total - 1}",
            field="retries",
        )
    return total


def new_idempotency_key() -> str:
    """A random (version 4) UUID string, made without building a ``uuid.UUID``."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class RetryService:
    """Service made by :class:`RetryLayer`."""

    __slots__ = ("_final", "_wall_clock", "config", "inner")

    def __init__(self, inner: Service, config: RetryLayer) -> None:
        self.inner = inner
        self.config = config
        # Fast path: statuses the default policy would never retry skip building an outcome.
        policy = config.policy
        self._final = policy.retry_on if type(policy) is StatusRetryPolicy else None
        # what turns an HTTP-date Retry-After into seconds
        self._wall_clock = getattr(policy, "wall_clock", None) or time.time

    async def __call__(self, request: Request) -> Response:
        config = self.config
        deadline = request.deadline
        if config.total_timeout is not None:
            end = config.clock.now() + config.total_timeout
            if deadline is None or end < deadline:
                deadline = end
                request = request.replace(deadline=end)
        if config.idempotency_key and IDEMPOTENCY_KEY_HEADER not in request.headers:
            request = request.replace(
                headers=request.headers.copy_with({IDEMPOTENCY_KEY_HEADER: new_idempotency_key()})
            )
        if config.budget is not None:
            config.budget.deposit()
        attempt = 1
        while True:
            current = request if request.attempt == attempt else request.replace(attempt=attempt)
            try:
                response = await self.inner(current)
            except Exception as exc:
                delay = self._delay(RetryOutcome(current, attempt, error=exc), deadline)
                if delay is None:
                    if isinstance(exc, LaminaError):
                        exc.attempts = attempt
                    raise
                reason = type(exc).__name__
            else:
                if self._final is not None and response.status_code not in self._final:
                    response.attempts = attempt
                    return response
                delay = self._delay(RetryOutcome(current, attempt, response=response), deadline)
                if delay is None:
                    response.attempts = attempt
                    return response
                reason = str(response.status_code)
            attempt += 1
            emit(current, "retry.scheduled", attempt=attempt, delay=delay, reason=reason)
            await config.clock.sleep(delay)

    def _delay(self, outcome: RetryOutcome, deadline: float | None) -> float | None:
        """The policy's delay, bounded by the attempts, max_delay, Retry-After, deadline
        and budget; None to stop."""
        config = self.config
        if outcome.attempt >= config.attempts:
            return None
        delay = config.policy.decide(outcome)
        if delay is None or math.isnan(delay):
            return None
        delay = min(max(0.0, float(delay)), config.max_delay)
        now = config.clock.now()
        wait = retry_after(outcome, wall_clock=self._wall_clock)
        if wait is not None:
            limit = None
            if wait > config.max_delay:
                limit = "max_delay"
            elif deadline is not None and now + wait >= deadline:
                limit = "deadline"
            if limit is not None:  # the server asks for longer than this call may wait
                emit(
                    outcome.request,
                    "retry.retry_after_exceeded",
                    attempt=outcome.attempt,
                    retry_after=wait,
                    limit=limit,
                )
                return None
            delay = max(delay, wait)
        if deadline is not None and now + delay >= deadline:
            return None
        if config.budget is not None and not config.budget.withdraw():
            emit(outcome.request, "retry.budget_exhausted", attempt=outcome.attempt)
            return None
        return delay

    def __repr__(self) -> str:
        attempts = self.config.attempts
        return f"<RetryService attempts={attempts} (retries={attempts - 1}) -> {self.inner!r}>"


Retry = RetryService  # deprecated: the name before issue 15, kept for imports
