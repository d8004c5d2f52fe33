"""Circuit breaker: a small state machine, a storage seam, and :class:`CircuitBreaker`.

::

    closed --threshold consecutive failures--> open --timeout elapses--> half_open
    half_open --probe succeeds--> closed        half_open --probe fails--> open

* :class:`BreakerMachine` holds the transitions. It is pure: no storage, no
  clock, no I/O; it mutates a :class:`BreakerRecord` it is handed.
* :class:`BreakerBackend` is the storage seam: it keeps one record per name
  and applies a transition atomically. :class:`MemoryBackend` is the only one
  so far; a shared (Redis) backend would run the same transitions server-side.
* :class:`CircuitBreaker` ties them to a clock, raises a fresh
  :class:`lamina.CircuitOpenError` on each rejection, reports events and calls
  hooks. A cancelled call is neutral: it neither fails nor heals the breaker,
  and a cancelled half-open probe frees the probe slot. So is a call that
  timed out before its request was sent: waiting says nothing about the
  dependency (a timeout while connecting, :class:`lamina.ConnectTimeout`, is not
  waiting: it counts). A call that timed out after waiting for a connection for at least
  half its attempt is a *weak* failure (:func:`exception_outcome`): it extends a
  run of failures but never starts one, so local queueing cannot open the breaker
  while a dependency that stopped answering still does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar, cast

from . import _validate as check
from ._clock import Clock, default_clock
from ._core import Request
from ._errors import CircuitOpenError, ConfigError, TimeoutError, TransportError
from ._events import EVENTS_KEY, emit

__all__ = [
    "UPSTREAM_SHARE",
    "BreakerBackend",
    "BreakerMachine",
    "BreakerRecord",
    "CircuitBreaker",
    "CircuitState",
    "MemoryBackend",
    "Outcome",
    "Permit",
    "StateChange",
    "StateChangeHook",
    "exception_outcome",
    "timed_out_waiting",
]

logger = logging.getLogger("lamina.breaker")

T = TypeVar("T")


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


_PASS = Permit(admitted=True)
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
            return _PASS, None
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


class BreakerBackend(Protocol):
    """Storage seam: keeps one :class:`BreakerRecord` per name and applies
    :class:`BreakerMachine` transitions to it atomically.

    Async so that a shared (e.g. Redis) backend can do I/O; ``peek`` returns
    the last state this process knows, for inspection and ``__repr__``.
    """

    async def acquire(
        self, name: str, machine: BreakerMachine, now: float
    ) -> tuple[Permit, Transition | None]: ...

    async def release(
        self, name: str, machine: BreakerMachine, permit: Permit, outcome: Outcome, now: float
    ) -> Transition | None: ...

    async def reset(self, name: str) -> Transition | None: ...

    def peek(self, name: str) -> BreakerRecord: ...


class MemoryBackend:
    """Records in a dict, for breakers living in one event loop."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[str, BreakerRecord] = {}

    def peek(self, name: str) -> BreakerRecord:
        rec = self._records.get(name)
        if rec is None:
            rec = self._records[name] = BreakerRecord()
        return rec

    async def acquire(
        self, name: str, machine: BreakerMachine, now: float
    ) -> tuple[Permit, Transition | None]:
        return machine.acquire(self.peek(name), now)

    async def release(
        self, name: str, machine: BreakerMachine, permit: Permit, outcome: Outcome, now: float
    ) -> Transition | None:
        return machine.release(self.peek(name), permit, outcome, now)

    async def reset(self, name: str) -> Transition | None:
        rec = self.peek(name)
        old = rec.state
        rec.state, rec.failure_count, rec.opened_at = CircuitState.CLOSED, 0, None
        return None if old is CircuitState.CLOSED else (old, CircuitState.CLOSED)

    def __repr__(self) -> str:
        return f"MemoryBackend(breakers={len(self._records)})"


class CircuitBreaker:
    """Stop calling a dependency after ``threshold`` consecutive failures.

    Open for ``timeout`` seconds, then half-open: exactly one probe call goes
    through while the others are rejected at once; its success closes the
    breaker, its failure re-opens it for another ``timeout``. Every rejection
    raises a fresh :class:`lamina.CircuitOpenError` carrying ``retry_after``.

    ``await breaker.call(func, *args, **kwargs)`` accepts sync and async
    callables. There any ``Exception`` is a failure except those in
    ``exclude``, which count as success (the dependency answered);
    cancellation and a lamina timeout that fired before the request was sent are
    neutral, and one that fired after waiting for a connection for at least half
    the attempt is a weak failure (:func:`exception_outcome`).
    """

    __slots__ = ("_backend", "_hooks", "_local", "_machine", "clock", "exclude", "name")

    def __init__(
        self,
        threshold: int = 3,
        timeout: float = 30.0,
        *,
        name: str = "default",
        exclude: tuple[type[BaseException], ...] | type[BaseException] = (),
        clock: Clock | None = None,
        backend: BreakerBackend | None = None,
    ) -> None:
        self._machine = BreakerMachine(threshold, timeout)
        if not isinstance(name, str) or not name:
            raise ConfigError("must be a non-empty string", field="name")
        exclude = exclude if isinstance(exclude, tuple) else (exclude,)
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in exclude):
            raise ConfigError("must be exception types", field="exclude")
        self.name = name
        self.exclude = exclude
        self.clock = clock or default_clock
        self._backend: BreakerBackend = backend if backend is not None else MemoryBackend()
        self._hooks: list[StateChangeHook] = []
        # Fast path: with an in-memory record, a closed breaker needs no clock read
        # and no backend round trip for a call that is admitted and succeeds.
        self._local = (
            self._backend.peek(name) if type(backend) in (MemoryBackend, type(None)) else None
        )

    # -- inspection ----------------------------------------------------------
    @property
    def threshold(self) -> int:
        return self._machine.threshold

    @property
    def timeout(self) -> float:
        return self._machine.timeout

    @property
    def state(self) -> CircuitState:
        """``open`` reads as ``half_open`` once the timeout has passed."""
        return self._machine.visible_state(self._backend.peek(self.name), self.clock.now())

    @property
    def failure_count(self) -> int:
        """Consecutive failures counted so far."""
        return self._backend.peek(self.name).failure_count

    @property
    def opened_at(self) -> float | None:
        """When the breaker last opened (clock time), or None while closed."""
        return self._backend.peek(self.name).opened_at

    # -- hooks -----------------------------------------------------------------
    def on_state_change(self, callback: StateChangeHook) -> StateChangeHook:
        """Call ``callback(StateChange)`` on every transition; usable as a decorator.

        A hook that raises is logged and never changes the caller's outcome.
        """
        if not callable(callback):
            raise ConfigError("must be callable", field="callback")
        self._hooks.append(callback)
        return callback

    # -- the protocol a layer uses ----------------------------------------------
    async def acquire(self, request: Request | None = None) -> Permit:
        """Admit a call or raise :class:`lamina.CircuitOpenError`; pair with :meth:`release`."""
        local = self._local
        if local is not None and local.state is CircuitState.CLOSED:
            return _PASS
        now = self.clock.now()
        permit, change = await self._backend.acquire(self.name, self._machine, now)
        if change is not None:
            self._changed(change, now, request)
        if permit.admitted:
            return permit
        if request is not None:
            emit(request, "breaker.rejected", retry_after=permit.retry_after)
        raise CircuitOpenError(
            f"circuit breaker {self.name!r} is open",
            retry_after=permit.retry_after,
            endpoint=self.name,
            request=request,
        )

    async def release(
        self, permit: Permit, outcome: Outcome, request: Request | None = None
    ) -> None:
        """Report how a call admitted by :meth:`acquire` ended."""
        local = self._local
        if (
            local is not None
            and outcome is Outcome.SUCCESS
            and permit is _PASS
            and local.state is CircuitState.CLOSED
        ):
            local.failure_count = 0
            return
        now = self.clock.now()
        change = await self._backend.release(self.name, self._machine, permit, outcome, now)
        if change is not None:
            self._changed(change, now, request)

    async def reset(self) -> None:
        """Force the breaker closed and forget its failures."""
        now = self.clock.now()
        change = await self._backend.reset(self.name)
        if change is not None:
            self._changed(change, now, None)

    async def call(self, func: Callable[..., Awaitable[T] | T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``func(*args, **kwargs)`` (awaiting its result if awaitable) through the breaker.

        Sync callables run in the event loop; pass ``asyncio.to_thread, fn`` for
        blocking ones.
        """
        permit = await self.acquire()
        try:
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            excluded = isinstance(exc, self.exclude)
            outcome = exception_outcome(exc, not excluded)
            if excluded and outcome is Outcome.NEUTRAL and not timed_out_waiting(exc):
                outcome = Outcome.SUCCESS  # the dependency answered
            await self.release(permit, outcome)
            raise
        except BaseException:  # cancellation, KeyboardInterrupt: neutral
            await self.release(permit, Outcome.NEUTRAL)
            raise
        await self.release(permit, Outcome.SUCCESS)
        return cast(T, result)

    def _changed(self, change: Transition, at: float, request: Request | None) -> None:
        old, new = change
        if request is not None:
            _emit_state(request, self.name, old, new)
        if not self._hooks:
            return
        event = StateChange(self.name, old, new, at)
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                logger.exception("circuit breaker %r: state-change hook failed", self.name)

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker name={self.name!r} state={self.state.value} "
            f"failures={self.failure_count}>"
        )


def _emit_state(request: Request, name: str, old: CircuitState, new: CircuitState) -> None:
    # ``emit(request, name, **attrs)`` cannot carry an attribute called "name"
    # (it clashes with the event-name parameter), so deliver it the same way here.
    listeners = request.extensions.get(EVENTS_KEY)
    if listeners:
        attributes = {"name": name, "old": old.value, "new": new.value}
        for listener in listeners:
            try:
                listener("breaker.state", attributes)
            except Exception:  # an observer never changes the caller's outcome
                logger.exception("event listener failed on breaker.state")
