"""Circuit breaker layer: one :class:`lamina.breaker.CircuitBreaker` per endpoint name."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType

from .. import _validate as check
from .._clock import Clock, default_clock
from .._core import Request, Response, Service
from .._errors import ConfigError, TimeoutError, TransportError
from ..backends.base import Backend
from ..breaker import (
    BreakerBackend,
    BreakerMachine,
    CircuitBreaker,
    MemoryBackend,
    Outcome,
    StateChangeHook,
    exception_outcome,
)

__all__ = ["CircuitBreakerLayer", "CircuitBreakerService", "default_is_failure"]

logger = logging.getLogger("lamina.breaker")

FailurePredicate = Callable[[Response | BaseException], bool]


def default_is_failure(outcome: Response | BaseException) -> bool:
    """Transport errors (a connect timeout is one), lamina timeouts of a request
    that was sent, and responses with status >= 500. How much a timeout after a
    wait for a connection counts is the breaker's rule
    (:func:`lamina.breaker.exception_outcome`)."""
    if isinstance(outcome, Response):
        return outcome.status_code >= 500
    return _upstream_failed(outcome)


def _upstream_failed(exc: BaseException) -> bool:
    if isinstance(exc, TransportError):
        return True
    return isinstance(exc, TimeoutError) and exc.request_sent


class CircuitBreakerLayer:
    """Reject calls to an endpoint whose last ``threshold`` attempts failed.

    The breaker's name is ``name`` if given, else ``request.endpoint`` (else
    ``"default"``); the layer keeps one breaker per name, so one layer can serve
    one endpoint or many. It sits inside the retry layer, so every attempt counts.

    Failures are decided by ``is_failure(response_or_exception)``, or by
    ``failure_statuses`` (responses only; transport errors and timeouts still
    fail), default :func:`default_is_failure`. A response that is not a failure
    is a success; an exception that is not a failure (e.g. a limiter refusing)
    and a cancellation are neutral. Only the upstream's failures count: a
    timeout that fired before the request was sent is neutral whatever
    ``is_failure`` says, and one that fired after waiting for a connection in the
    transport for at least half the attempt (the upstream had less than half) is a
    weak failure: it counts only while the breaker is already counting failures
    (:func:`lamina.breaker.exception_outcome`). Rejections raise
    :class:`lamina.CircuitOpenError` without calling the inner service.

    ``backend`` stores the breakers' state: in memory by default, or shared by
    every process with a :class:`lamina.backends.RedisBackend` (or its
    ``breaker_backend()``).
    """

    __slots__ = ("_backend", "_breakers", "_hooks", "_machine", "clock", "is_failure", "name")

    def __init__(
        self,
        threshold: int = 5,
        timeout: float = 60.0,
        *,
        name: str | None = None,
        is_failure: FailurePredicate | None = None,
        failure_statuses: Collection[int] | None = None,
        clock: Clock | None = None,
        backend: BreakerBackend | Backend | None = None,
    ) -> None:
        self._machine = BreakerMachine(threshold, timeout)
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError("must be a non-empty string or None", field="name")
        if is_failure is not None and failure_statuses is not None:
            raise ConfigError("give is_failure or failure_statuses, not both", field="is_failure")
        if is_failure is not None and not callable(is_failure):
            raise ConfigError("must be callable", field="is_failure")
        if failure_statuses is not None:
            is_failure = _status_predicate(failure_statuses)
        self.name = name
        self.is_failure: FailurePredicate = is_failure or default_is_failure
        self.clock = clock or default_clock
        if isinstance(backend, Backend):  # e.g. a RedisBackend: its breaker storage
            backend = backend.breaker_backend()
        self._backend: BreakerBackend = backend if backend is not None else MemoryBackend()
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
                self.threshold,
                self.timeout,
                name=name,
                clock=self.clock,
                backend=self._backend,
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
        """Register a hook on every breaker of this layer, present and future."""
        if not callable(callback):
            raise ConfigError("must be callable", field="callback")
        self._hooks.append(callback)
        for brk in self._breakers.values():
            brk.on_state_change(callback)
        return callback

    def wrap(self, inner: Service) -> Service:
        return CircuitBreakerService(inner, self)

    def __repr__(self) -> str:
        fixed = f", name={self.name!r}" if self.name else ""
        return (
            f"CircuitBreakerLayer(threshold={self.threshold}, timeout={self.timeout}{fixed}, "
            f"breakers={len(self._breakers)})"
        )


class CircuitBreakerService:
    """Service made by :class:`CircuitBreakerLayer`."""

    __slots__ = ("config", "inner")

    def __init__(self, inner: Service, config: CircuitBreakerLayer) -> None:
        self.inner = inner
        self.config = config

    async def __call__(self, request: Request) -> Response:
        config = self.config
        name = config.name or request.endpoint or "default"
        brk = config._breakers.get(name) or config.breaker(name)
        permit = await brk.acquire(request)
        try:
            response = await self.inner(request)
        except Exception as exc:
            outcome = exception_outcome(exc, _judge(config.is_failure, exc))
            await brk.release(permit, outcome, request)
            raise
        except BaseException:  # cancelled: neither success nor failure
            await brk.release(permit, Outcome.NEUTRAL, request)
            raise
        failed = _judge(config.is_failure, response)
        await brk.release(permit, Outcome.FAILURE if failed else Outcome.SUCCESS, request)
        return response

    def __repr__(self) -> str:
        return f"<CircuitBreaker -> {self.inner!r}>"


def _judge(predicate: FailurePredicate, outcome: Response | BaseException) -> bool:
    try:
        return bool(predicate(outcome))
    except Exception:  # a broken predicate must not hide the real outcome
        logger.exception("is_failure predicate failed; using the default")
        return default_is_failure(outcome)


def _status_predicate(statuses: Collection[int]) -> FailurePredicate:
    frozen = frozenset(check.status_codes(statuses, "failure_statuses"))

    def is_failure(outcome: Response | BaseException) -> bool:
        if isinstance(outcome, Response):
            return outcome.status_code in frozen
        return _upstream_failed(outcome)

    return is_failure
