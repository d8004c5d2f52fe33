"""Where breakers keep their state: the :class:`BreakerStore` seam and the memory store.

A store keeps one :class:`~.machine.BreakerRecord` per name and applies
:class:`~.machine.BreakerMachine` transitions to it atomically: in a dict in this
process (:class:`MemoryBreakerStore`), or in Redis (:class:`~.redis.RedisBreakerStore`,
which runs the same transitions in Lua scripts).
"""

from __future__ import annotations

from typing import Protocol

from .machine import BreakerMachine, BreakerRecord, CircuitState, Outcome, Permit, Transition

__all__ = ["BreakerStore", "MemoryBreakerStore"]


class BreakerStore(Protocol):
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


class MemoryBreakerStore:
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
        return f"MemoryBreakerStore(breakers={len(self._records)})"


BreakerBackend = BreakerStore  # deprecated: the name before issue 15, kept for imports
MemoryBackend = MemoryBreakerStore  # deprecated: the name before issue 15, kept for imports
