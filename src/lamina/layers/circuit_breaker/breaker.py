"""The standalone :class:`CircuitBreaker`, and :class:`BreakerPool`: breakers by name.

:class:`CircuitBreaker` ties the state machine and a store to a clock, raises a fresh
:class:`lamina.CircuitOpenError` on each rejection, reports events and calls hooks.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar, cast

from ..._clock import Clock, default_clock
from ..._core import Request
from ..._errors import CircuitOpenError, ConfigError
from ..._events import emit
from ...backends.base import Backend
from .machine import (
    PASS,
    BreakerMachine,
    CircuitState,
    Outcome,
    Permit,
    StateChange,
    StateChangeHook,
    Transition,
    exception_outcome,
    timed_out_waiting,
)
from .store import BreakerStore, MemoryBreakerStore

__all__ = ["BreakerPool", "CircuitBreaker"]

logger = logging.getLogger("lamina.breaker")

T = TypeVar("T")


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
        threshold: int | None = None,
        timeout: float | None = None,
        *,
        name: str = "default",
        exclude: tuple[type[BaseException], ...] | type[BaseException] = (),
        clock: Clock | None = None,
        backend: BreakerStore | Backend | object | None = None,
    ) -> None:
        store = as_breaker_store(backend)
        self._machine = _machine(store, threshold, timeout, 3, 30.0)
        if not isinstance(name, str) or not name:
            raise ConfigError("must be a non-empty string", field="name")
        exclude = exclude if isinstance(exclude, tuple) else (exclude,)
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in exclude):
            raise ConfigError("must be exception types", field="exclude")
        self.name = name
        self.exclude = exclude
        self.clock = clock or default_clock
        self._backend: BreakerStore = store
        self._hooks: list[StateChangeHook] = []
        # Fast path: with an in-memory record, a closed breaker needs no clock read
        # and no backend round trip for a call that is admitted and succeeds.
        self._local = store.peek(name) if type(store) is MemoryBreakerStore else None

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
    def admits_now(self) -> bool:
        """True when an in-memory breaker is closed: the call is admitted with no wait,
        and :meth:`succeeded_now` may record its success (else await :meth:`acquire`)."""
        local = self._local
        return local is not None and local.state is CircuitState.CLOSED

    def succeeded_now(self) -> bool:
        """Record the success of a call that :meth:`admits_now` admitted, if the breaker
        is still closed in memory; False when :meth:`release` must be awaited instead."""
        local = self._local
        if local is not None and local.state is CircuitState.CLOSED:
            local.failure_count = 0
            return True
        return False

    async def acquire(self, request: Request | None = None) -> Permit:
        """Admit a call or raise :class:`lamina.CircuitOpenError`; pair with :meth:`release`."""
        local = self._local
        if local is not None and local.state is CircuitState.CLOSED:
            return PASS
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
            and permit is PASS
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


class BreakerPool:
    """Circuit breakers by name on one store, each made on first use.

    Every :class:`~.layer.CircuitBreakerLayer` handed the same pool
    (``CircuitBreakerLayer(pool=...)``) uses its breakers: the orchestrator hands one
    pool to every endpoint. ``backend`` stores the breakers' state: in memory by
    default, or shared by every process with a :class:`lamina.backends.RedisBackend`
    (or its ``breaker_backend()``). Hooks registered with :meth:`on_state_change`
    reach every breaker of the pool, present and future.
    """

    __slots__ = ("_backend", "_breakers", "_hooks", "_machine", "clock")

    def __init__(
        self,
        threshold: int | None = None,
        timeout: float | None = None,
        *,
        clock: Clock | None = None,
        backend: BreakerStore | Backend | object | None = None,
    ) -> None:
        store = as_breaker_store(backend)
        self._machine = _machine(store, threshold, timeout, 5, 60.0)
        self.clock = clock or default_clock
        self._backend: BreakerStore = store
        self._breakers: dict[str, CircuitBreaker] = {}
        self._hooks: list[StateChangeHook] = []

    @property
    def threshold(self) -> int:
        return self._machine.threshold

    @property
    def timeout(self) -> float:
        return self._machine.timeout

    def breaker(self, name: str) -> CircuitBreaker:
        """The breaker for ``name``, created on first use."""
        brk = self._breakers.get(name)
        if brk is None:
            brk = CircuitBreaker(
                self.threshold, self.timeout, name=name, clock=self.clock, backend=self._backend
            )
            for hook in self._hooks:
                brk.on_state_change(hook)
            self._breakers[name] = brk
        return brk

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]:
        """The breakers created so far, by name (read-only view)."""
        return MappingProxyType(self._breakers)

    def on_state_change(self, callback: StateChangeHook) -> StateChangeHook:
        """Register a hook on every breaker of this pool, present and future."""
        if not callable(callback):
            raise ConfigError("must be callable", field="callback")
        self._hooks.append(callback)
        for brk in self._breakers.values():
            brk.on_state_change(callback)
        return callback

    def __repr__(self) -> str:
        return (
            f"BreakerPool(threshold={self.threshold}, timeout={self.timeout:g}s, "
            f"breakers={len(self._breakers)})"
        )


def as_breaker_store(backend: object) -> BreakerStore:
    """What ``backend=`` accepts, as a :class:`BreakerStore`: None (in memory), a store,
    a :class:`lamina.backends.Backend` (its breaker storage) or a
    ``purgatory.AsyncCircuitBreakerFactory`` (purgatory is imported only then)."""
    if backend is None:
        return MemoryBreakerStore()
    if isinstance(backend, Backend):  # e.g. a RedisBackend: its breaker storage
        return backend.breaker_backend()
    if type(backend).__module__.partition(".")[0] == "purgatory":
        from .purgatory_store import PurgatoryBreakerStore

        return PurgatoryBreakerStore(backend)
    if all(callable(getattr(backend, m, None)) for m in ("acquire", "release", "reset", "peek")):
        return cast(BreakerStore, backend)
    raise ConfigError(
        f"{type(backend).__name__} is not a breaker store (a BreakerStore, a Backend "
        "such as RedisBackend, or a purgatory.AsyncCircuitBreakerFactory)",
        field="backend",
    )


def _machine(
    store: BreakerStore,
    threshold: int | None,
    timeout: float | None,
    default_threshold: int,
    default_timeout: float,
) -> BreakerMachine:
    """The rules, with the store's own defaults (a purgatory factory's) where it has them."""
    borrowed = []
    if threshold is None and hasattr(store, "default_threshold"):
        threshold = store.default_threshold
        borrowed.append("threshold")
    if timeout is None and hasattr(store, "default_timeout"):
        timeout = store.default_timeout
        borrowed.append("timeout")
    try:
        return BreakerMachine(
            default_threshold if threshold is None else threshold,
            default_timeout if timeout is None else timeout,
        )
    except ConfigError as exc:
        if exc.field not in borrowed:
            raise
        raise ConfigError(f"{store!r}'s default {exc.message}", field="backend") from None


def _emit_state(request: Request, name: str, old: CircuitState, new: CircuitState) -> None:
    # emit's event name is positional-only, so an attribute may be called "name"
    emit(request, "breaker.state", name=name, old=old.value, new=new.value)
