"""The circuit breaker: the layer and its service, the rules and the state machine,
the state stores (in memory and in Redis), the standalone :class:`CircuitBreaker` and
the :class:`BreakerPool` that layers share."""

from .breaker import BreakerPool, CircuitBreaker
from .layer import CircuitBreakerLayer, CircuitBreakerService, default_is_failure
from .machine import (
    UPSTREAM_SHARE,
    BreakerMachine,
    BreakerRecord,
    CircuitState,
    Outcome,
    Permit,
    StateChange,
    StateChangeHook,
    exception_outcome,
    timed_out_waiting,
)
from .redis import RedisBreakerBackend as RedisBreakerBackend  # deprecated name
from .redis import RedisBreakerStore
from .store import BreakerBackend as BreakerBackend  # deprecated name
from .store import BreakerStore, MemoryBreakerStore
from .store import MemoryBackend as MemoryBackend  # deprecated name

__all__ = [
    "UPSTREAM_SHARE",
    "BreakerMachine",
    "BreakerPool",
    "BreakerRecord",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitBreakerLayer",
    "CircuitBreakerService",
    "CircuitState",
    "MemoryBreakerStore",
    "Outcome",
    "Permit",
    "RedisBreakerStore",
    "StateChange",
    "StateChangeHook",
    "default_is_failure",
    "exception_outcome",
    "timed_out_waiting",
]
