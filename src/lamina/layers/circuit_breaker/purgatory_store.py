"""A ``purgatory.AsyncCircuitBreakerFactory`` as the store of lamina's breakers
(the ``lamina[purgatory]`` extra; this module imports purgatory, lamina imports it only
when it is handed a factory).

``CircuitBreakerLayer(backend=factory)`` keeps each breaker's state in the factory
(its memory or its Redis unit of work): purgatory's state machine decides when a breaker
opens and closes, and its listeners hear about it. lamina keeps its side of the
contract: what counts as a failure (``is_failure``, a 5xx response without raising,
cancellation neutral), a fresh :class:`lamina.CircuitOpenError` with ``retry_after`` on
each rejection, the ``breaker.state``/``breaker.rejected`` events and state-change hooks.
What stays purgatory's is in docs/layers/circuit-breaker.md ("Bringing purgatory").
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any

from purgatory.domain.model import ClosedState, OpenedState

from ..._errors import BackendUnavailable, ConfigError
from .machine import BreakerMachine, BreakerRecord, CircuitState, Outcome, Permit, Transition

__all__ = ["PurgatoryBreakerStore", "is_purgatory_factory"]

logger = logging.getLogger("lamina.breaker")

#: purgatory's state names -> lamina's.
STATES = {
    "closed": CircuitState.CLOSED,
    "opened": CircuitState.OPEN,
    "half-opened": CircuitState.HALF_OPEN,
}


def is_purgatory_factory(value: object) -> bool:
    """Whether ``value`` is a purgatory circuit-breaker factory."""
    return type(value).__module__.partition(".")[0] == "purgatory" and hasattr(value, "get_breaker")


class CountedFailure(Exception):
    """What lamina hands purgatory for a call its ``is_failure`` judged failed."""


@dataclass(frozen=True, slots=True)
class PurgatoryPermit(Permit):
    """A permit that remembers the purgatory breaker that admitted the call."""

    breaker: Any = None


class PurgatoryBreakerStore:
    """A :class:`~lamina.layers.circuit_breaker.BreakerStore` over a purgatory
    ``AsyncCircuitBreakerFactory``: one purgatory breaker per lamina breaker name,
    created with the lamina breaker's ``threshold`` and ``timeout`` (its ``ttl``) unless
    the factory already has one of that name. ``default_threshold``/``default_timeout``
    are the factory's, used when the layer is given none.
    """

    __slots__ = ("_seen", "factory")

    def __init__(self, factory: Any) -> None:
        if not is_purgatory_factory(factory):
            raise ConfigError(
                f"{type(factory).__name__} is not a purgatory.AsyncCircuitBreakerFactory",
                field="backend",
            )
        if not inspect.iscoroutinefunction(factory.get_breaker):
            raise ConfigError(
                f"purgatory.{type(factory).__name__} is synchronous and lamina awaits its "
                "breakers: use purgatory.AsyncCircuitBreakerFactory (same arguments, an "
                "AsyncRedisUnitOfWork for Redis)",
                field="backend",
            )
        self.factory = factory
        self._seen: dict[str, BreakerRecord] = {}

    @property
    def default_threshold(self) -> object:
        """The factory's ``default_threshold``, as given (lamina checks it)."""
        return self.factory.default_threshold

    @property
    def default_timeout(self) -> object:
        """The factory's ``default_ttl``, as given (lamina checks it)."""
        return self.factory.default_ttl

    def peek(self, name: str) -> BreakerRecord:
        """The record as this process last saw it (``opened_at`` on the caller's clock)."""
        rec = self._seen.get(name)
        if rec is None:
            rec = self._seen[name] = BreakerRecord()
        return rec

    async def acquire(
        self, name: str, machine: BreakerMachine, now: float
    ) -> tuple[Permit, Transition | None]:
        breaker = await self._breaker(name, machine)
        context = breaker.context
        old = context.state
        try:
            context.handle_new_request()
        except OpenedState as opened:
            # purgatory raises the same instance every time: drop the traceback it
            # would keep growing, and answer with a permit (lamina raises a fresh error)
            opened.__traceback__ = None
            self._remember(name, context, now)
            retry = max(0.0, opened.opened_at + context.ttl - time.time())
            return Permit(admitted=False, retry_after=retry), None
        change = _transition(old, context.state)
        await self._flush(breaker)
        self._remember(name, context, now)
        probe = context.state == "half-opened"
        return PurgatoryPermit(admitted=True, probe=probe, breaker=breaker), change

    async def release(
        self, name: str, machine: BreakerMachine, permit: Permit, outcome: Outcome, now: float
    ) -> Transition | None:
        breaker = permit.breaker if isinstance(permit, PurgatoryPermit) else None
        if breaker is None:
            breaker = await self._breaker(name, machine)
        context = breaker.context
        old = context.state
        if not permit.probe and old != "closed":
            # admitted while closed, ended after the trip: only a probe decides how a trip
            # ends (purgatory would let this late answer close or re-open the breaker)
            outcome = Outcome.NEUTRAL
        if outcome is Outcome.SUCCESS:
            context.handle_end_request()
        elif outcome is Outcome.FAILURE or (
            # a weak failure extends a run of failures (or fails a probe), never starts one
            outcome is Outcome.WEAK_FAILURE
            and (old != "closed" or (context.failure_count or 0) > 0)
        ):
            # lamina judged it failed: purgatory's exclude list (types and predicates written
            # for the caller's own exceptions) must not see the verdict, so it is set aside
            # for this synchronous step only (no other task can run in between)
            verdict = CountedFailure(f"lamina counted a call to {name!r} failed")
            excluded, context.exclude_list = context.exclude_list, []
            try:
                context.handle_exception(verdict)
            finally:
                context.exclude_list = excluded
        # neutral (cancelled, not the upstream's fault): purgatory is not told
        await self._flush(breaker)
        self._remember(name, context, now)
        return _transition(old, context.state)

    async def reset(self, name: str) -> Transition | None:
        async with self.factory.uow as uow:
            known = await uow.contexts.get(name)
        if known is None:  # nothing to reset; creating it here would take the factory's
            self._seen.pop(name, None)  # defaults instead of the layer's settings
            return None
        breaker = await self.factory.get_breaker(name)
        context = breaker.context
        old = context.state
        if old != "closed" or context.failure_count:
            context.recover_failure()
            if old != "closed":
                context.set_state(ClosedState())
            await self._flush(breaker)
        self._seen.pop(name, None)
        return _transition(old, "closed")

    async def _breaker(self, name: str, machine: BreakerMachine) -> Any:
        """The factory's breaker ``name`` (created with ``machine``'s settings if new).

        A listener of purgatory's ``CircuitBreakerCreated`` that raises is logged, never
        the caller's error (purgatory registered the breaker before telling it, so the
        second ask finds it); a store that fails twice (Redis down) is
        :class:`lamina.BackendUnavailable` naming the breaker.
        """
        factory, threshold, ttl = self.factory, machine.threshold, machine.timeout
        try:
            return await factory.get_breaker(name, threshold, ttl)
        except Exception as exc:
            first = exc
        try:
            breaker = await factory.get_breaker(name, threshold, ttl)
        except Exception:
            raise BackendUnavailable(
                f"purgatory could not load circuit breaker {name!r} ({type(first).__name__})",
                backend="purgatory",
                endpoint=name,
            ) from first
        logger.error("a purgatory listener failed on creating breaker %r", name, exc_info=first)
        return breaker

    async def _flush(self, breaker: Any) -> None:
        """Hand purgatory the messages the call produced (it saves the state and tells
        its listeners); a listener that raises is logged, never the caller's error."""
        messages = breaker.context.messages
        while messages:
            message = messages.pop(0)
            try:
                await breaker.messagebus.handle(message, breaker.uow)
            except Exception:
                logger.exception("purgatory failed to handle %s", type(message).__name__)

    def _remember(self, name: str, context: Any, now: float) -> None:
        rec = self.peek(name)
        rec.state = STATES.get(context.state, CircuitState.CLOSED)
        if context.failure_count is not None:  # purgatory forgets the count while open
            rec.failure_count = int(context.failure_count)
        opened = context.opened_at
        rec.opened_at = None if opened is None else now - (time.time() - opened)

    def __repr__(self) -> str:
        factory = self.factory
        return (
            f"PurgatoryBreakerStore({type(factory).__name__}(default_threshold="
            f"{factory.default_threshold!r}, default_ttl={factory.default_ttl!r}), "
            f"breakers_seen={len(self._seen)})"
        )


def _transition(old: str, new: str) -> Transition | None:
    if old == new:
        return None
    return STATES.get(old, CircuitState.CLOSED), STATES.get(new, CircuitState.CLOSED)
