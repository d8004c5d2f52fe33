"""The circuit breaker's rules: how a call counts, and the state machine.

::

    closed --threshold consecutive failures--> open --timeout elapses--> half_open
    half_open --probe succeeds--> closed        half_open --probe fails--> open

:class:`BreakerMachine` holds the transitions. It is pure: no storage, no clock, no
I/O; it mutates a :class:`BreakerRecord` it is handed (a store applies it atomically,
in this process or in a Redis script). A cancelled call is neutral: it neither fails
nor heals the breaker, and a cancelled half-open probe frees the probe slot. So is a
call that timed out before its request was sent: waiting says nothing about the
dependency (a timeout while connecting, :class:`lamina.ConnectTimeout`, is not
waiting: it counts). A call that timed out after waiting for a connection for at least
half its attempt is a *weak* failure (:func:`exception_outcome`): it extends a run of
failures but never starts one, so local queueing cannot open the breaker while a
dependency that stopped answering still does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ... import _validate as check
from ..._errors import TimeoutError, TransportError

__all__ = [
    "PASS",
    "UPSTREAM_SHARE",
    "BreakerMachine",
    "BreakerRecord",
    "CircuitState",
    "Outcome",
    "Permit",
    "StateChange",
    "StateChangeHook",
    "Transition",
    "exception_outcome",
    "timed_out_waiting",
]


#: A timeout counts in full only when the upstream had at least this share of the
#: attempt; below it (the rest went to waiting for a connection) it is a weak failure.
UPSTREAM_SHARE = 0.5


def timed_out_waiting(exc: BaseException) -> bool:
    """True for a lamina timeout that says little about the upstream: it fired before
    the request was sent (``request_sent=False``: queued for a connection, or the
    deadline passed before the attempt started), or after waiting for a connection
    inside the transport took at least half the attempt (``waited >= timeout / 2``:
    the upstream had less than :data:`UPSTREAM_SHARE` of it). A timeout whose
    upstream had half the attempt or more is the upstream's, whatever it waited.
    A connect timeout (:class:`lamina.ConnectTimeout`, a ``ConnectError``: connecting
    had started) is the upstream's unless such a wait came first."""
    if not isinstance(exc, TimeoutError):
        return False
    if not exc.request_sent and not isinstance(exc, TransportError):
        return True
    waited = getattr(exc, "waited", 0.0) or 0.0
    if waited <= 0:
        return False
    limit = exc.timeout
    if limit is None or limit <= 0:  # no budget to compare with: the wait is all we know
        return True
    return limit - waited < limit * UPSTREAM_SHARE


def exception_outcome(exc: BaseException, failed: bool) -> Outcome:
    """How a call that raised ``exc`` counts, given the failure predicate's verdict.

    * a lamina timeout that fired before its request was sent: neutral, always,
      unless it fired while connecting (:class:`lamina.ConnectTimeout`);
    * a timeout, a connect timeout too, after a wait for a connection that took at
      least half the attempt (:func:`timed_out_waiting`):
      :attr:`Outcome.WEAK_FAILURE` if ``failed``, else
      neutral. A weak failure counts only while the breaker is already counting
      failures (or on the half-open probe): waiting for a connection cannot start a
      trip, but an upstream that keeps the pool full and answers nothing still opens it;
    * otherwise a failure if ``failed``, else neutral.
    """
    if isinstance(exc, TimeoutError):
        if not exc.request_sent and not isinstance(exc, TransportError):
            return Outcome.NEUTRAL
        if timed_out_waiting(exc):
            return Outcome.WEAK_FAILURE if failed else Outcome.NEUTRAL
    return Outcome.FAILURE if failed else Outcome.NEUTRAL


class CircuitState(StrEnum):
    """Where a breaker is; the values are plain strings."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(StrEnum):
    """How an admitted call ended, as far as the breaker is concerned."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # cancelled, or an error that says nothing about the dependency
    #: a failure only while failures are being counted (or on the probe): see
    #: :func:`exception_outcome`. A custom backend may treat it as a failure.
    WEAK_FAILURE = "weak_failure"


@dataclass(frozen=True, slots=True)
class StateChange:
    """What a state-change hook receives. ``at`` is a time on the breaker's clock."""

    name: str
    old: CircuitState
    new: CircuitState
    at: float


StateChangeHook = Callable[[StateChange], object]
Transition = tuple[CircuitState, CircuitState]


@dataclass(frozen=True, slots=True)
class Permit:
    """The answer to "may this call go ahead?". ``probe`` marks the half-open trial call;
    ``token`` identifies a probe granted by a shared backend (None otherwise)."""

    admitted: bool
    probe: bool = False
    retry_after: float = 0.0
    token: str | None = None


PASS = Permit(admitted=True)
"""The permit of a closed breaker (the one the fast paths compare with)."""
_PROBE = Permit(admitted=True, probe=True)


@dataclass(slots=True)
class BreakerRecord:
    """One breaker's stored state."""

    state: CircuitState = CircuitState.CLOSED
    failure_count: int = 0
    opened_at: float | None = None
    probe_in_flight: bool = False


class BreakerMachine:
    """The transitions, applied to a record in place. Validates its settings."""

    __slots__ = ("threshold", "timeout")

    def __init__(self, threshold: int, timeout: float) -> None:
        self.threshold = check.count(threshold, "threshold")
        self.timeout = check.seconds(timeout, "timeout")

    def acquire(self, rec: BreakerRecord, now: float) -> tuple[Permit, Transition | None]:
        """Admit, admit as the single probe, or reject with ``retry_after``."""
        if rec.state is CircuitState.CLOSED:
            return PASS, None
        change: Transition | None = None
        if rec.state is CircuitState.OPEN:
            remaining = (rec.opened_at or 0.0) + self.timeout - now
            if remaining > 0:
                return Permit(admitted=False, retry_after=remaining), None
            rec.state = CircuitState.HALF_OPEN
            change = (CircuitState.OPEN, CircuitState.HALF_OPEN)
        if rec.probe_in_flight:
            # The probe's verdict is unknown; a failure would re-open for ``timeout``.
            return Permit(admitted=False, retry_after=self.timeout), change
        rec.probe_in_flight = True
        return _PROBE, change

    def release(
        self, rec: BreakerRecord, permit: Permit, outcome: Outcome, now: float
    ) -> Transition | None:
        """Record how an admitted call ended; return the state change, if any."""
        if permit.probe:
            rec.probe_in_flight = False
            if rec.state is not CircuitState.HALF_OPEN or outcome is Outcome.NEUTRAL:
                return None
            if outcome is Outcome.SUCCESS:
                rec.state, rec.failure_count, rec.opened_at = CircuitState.CLOSED, 0, None
                return (CircuitState.HALF_OPEN, CircuitState.CLOSED)
            # a failure, weak or not: the breaker is half-open because failures counted
            rec.state, rec.opened_at = CircuitState.OPEN, now
            rec.failure_count += 1
            return (CircuitState.HALF_OPEN, CircuitState.OPEN)
        # Calls admitted while closed that end after the breaker left "closed"
        # are ignored: only the probe decides how a trip ends.
        if rec.state is not CircuitState.CLOSED or outcome is Outcome.NEUTRAL:
            return None
        if outcome is Outcome.WEAK_FAILURE and rec.failure_count == 0:
            return None  # a weak failure extends a run of failures, never starts one
        if outcome is Outcome.SUCCESS:
            rec.failure_count = 0
            return None
        rec.failure_count += 1
        if rec.failure_count >= self.threshold:
            rec.state, rec.opened_at = CircuitState.OPEN, now
            return (CircuitState.CLOSED, CircuitState.OPEN)
        return None

    def visible_state(self, rec: BreakerRecord, now: float) -> CircuitState:
        """The state as an observer sees it: open turns half-open once the timeout passed."""
        if rec.state is CircuitState.OPEN and now - (rec.opened_at or 0.0) >= self.timeout:
            return CircuitState.HALF_OPEN
        return rec.state
