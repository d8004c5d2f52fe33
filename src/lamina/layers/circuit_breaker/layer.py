"""Circuit breaker layer: one :class:`~.breaker.CircuitBreaker` per endpoint name."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping

from ... import _validate as check
from ..._clock import Clock
from ..._core import Request, Response, Service
from ..._errors import ConfigError, HTTPStatusError, TimeoutError, TransportError
from ...backends.base import Backend
from .breaker import BreakerPool, CircuitBreaker
from .machine import PASS, Outcome, StateChangeHook, exception_outcome
from .store import BreakerStore

__all__ = ["CircuitBreakerLayer", "CircuitBreakerService", "default_is_failure"]

logger = logging.getLogger("lamina.breaker")

FailurePredicate = Callable[[Response | BaseException], bool]


def default_is_failure(outcome: Response | BaseException) -> bool:
    """Transport errors (a connect timeout is one), lamina timeouts of a request
    that was sent, and responses with status >= 500. How much a timeout after a
    wait for a connection counts is the breaker's rule
    (:func:`lamina.layers.circuit_breaker.exception_outcome`)."""
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
    (:func:`lamina.layers.circuit_breaker.exception_outcome`). Rejections raise
    :class:`lamina.CircuitOpenError` without calling the inner service.

    ``backend`` stores the breakers' state: in memory by default, or shared by
    every process with a :class:`lamina.backends.RedisBackend` (or its
    ``breaker_backend()``), or in a ``purgatory.AsyncCircuitBreakerFactory``
    (whose defaults then apply). ``threshold`` (default 5), ``timeout`` (default 60 s),
    ``clock`` and ``backend`` make the layer's :class:`BreakerPool` (:attr:`pool`);
    pass ``pool=`` instead to share one pool's breakers between layers.
    """

    __slots__ = ("is_failure", "name", "pool")

    def __init__(
        self,
        threshold: int | None = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
        is_failure: FailurePredicate | None = None,
        failure_statuses: Collection[int] | None = None,
        clock: Clock | None = None,
        backend: BreakerStore | Backend | object | None = None,
        pool: BreakerPool | None = None,
    ) -> None:
        if pool is None:
            pool = BreakerPool(threshold, timeout, clock=clock, backend=backend)
        else:
            given = [
                field
                for field, value in (
                    ("threshold", threshold),
                    ("timeout", timeout),
                    ("clock", clock),
                    ("backend", backend),
                )
                if value is not None
            ]
            if given:
                raise ConfigError(
                    f"{', '.join(given)} configure the pool; give them to BreakerPool "
                    "or leave out pool=",
                    field="pool",
                )
            if not isinstance(pool, BreakerPool):
                raise ConfigError("must be a BreakerPool or None", field="pool")
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
        self.pool = pool
        """The breakers this layer's services use (and other layers', if handed it)."""

    @property
    def threshold(self) -> int:
        return self.pool.threshold

    @property
    def timeout(self) -> float:
        return self.pool.timeout

    @property
    def clock(self) -> Clock:
        return self.pool.clock

    def breaker(self, name: str) -> CircuitBreaker:
        """The breaker for ``name``, created on first use."""
        return self.pool.breaker(name)

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]:
        """The breakers created so far, by name (read-only view)."""
        return self.pool.breakers

    def on_state_change(self, callback: StateChangeHook) -> StateChangeHook:
        """Register a hook on every breaker of this layer's pool, present and future."""
        return self.pool.on_state_change(callback)

    def wrap(self, inner: Service) -> Service:
        return CircuitBreakerService(inner, self)

    def __repr__(self) -> str:
        fixed = f", name={self.name!r}" if self.name else ""
        return (
            f"CircuitBreakerLayer(threshold={self.threshold}, timeout={self.timeout:g}s{fixed}, "
            f"breakers={len(self.pool.breakers)})"
        )


class CircuitBreakerService:
    """Service made by :class:`CircuitBreakerLayer`: the layer's settings, a breaker of
    its :class:`BreakerPool` per call."""

    __slots__ = ("config", "inner", "pool")

    def __init__(self, inner: Service, config: CircuitBreakerLayer) -> None:
        self.inner = inner
        self.config = config
        self.pool = config.pool

    async def __call__(self, request: Request) -> Response:
        config = self.config
        brk = self.pool.breaker(config.name or request.endpoint or "default")
        # closed in memory: admit and record a success without awaiting the store
        permit = PASS if brk.admits_now() else await brk.acquire(request)
        try:
            response = await self.inner(request)
        except Exception as exc:
            answer = exc.response if isinstance(exc, HTTPStatusError) else None
            if answer is not None:  # a parse layer inside this one refused the answer:
                failed = _judge(config.is_failure, answer)  # judged as the answer is
                outcome = Outcome.FAILURE if failed else Outcome.SUCCESS
            else:
                outcome = exception_outcome(exc, _judge(config.is_failure, exc))
            await brk.release(permit, outcome, request)
            raise
        except BaseException:  # cancelled: neither success nor failure
            await brk.release(permit, Outcome.NEUTRAL, request)
            raise
        if _judge(config.is_failure, response):
            await brk.release(permit, Outcome.FAILURE, request)
        elif permit is not PASS or not brk.succeeded_now():
            await brk.release(permit, Outcome.SUCCESS, request)
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
