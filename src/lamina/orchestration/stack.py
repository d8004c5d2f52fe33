"""The default per-endpoint stack, built from an endpoint's fields and the config.

Outermost first::

    CallTracing → Metrics → Cache → Parse → Retry → CircuitBreaker → RateLimit
        → Timeout → Tracing (attempt) → Logging → transport

State that spans endpoints (the global rate limit, the cache, the breakers, the
metrics, the retry budgets) lives in one :class:`SharedState` per orchestrator, so
every endpoint's stack shares it, and a user's own ``layers=`` callable that reuses
the defaults shares it too (:func:`building` makes it the :func:`current_state`
while the orchestrator calls that callable). Two orchestrators built on one config
share nothing.

Retries spend a :class:`RetryBudget` shared by every endpoint on the same upstream
origin (scheme, host and port), as Envoy's budget is per upstream cluster: what
struggles is the server, whichever endpoint calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from opentelemetry import trace

from .._clock import Clock, default_clock
from .._core import Layer, Request
from ..backends.base import Backend, resolve_backend
from ..layers.cache import CacheLayer, SharedCache
from ..layers.circuit_breaker import BreakerPool, CircuitBreakerLayer
from ..layers.logging import LoggingLayer
from ..layers.metrics import MetricsLayer
from ..layers.parse import ParseLayer
from ..layers.rate_limit import BaseLimiter, RateLimitLayer
from ..layers.retry import DEFAULT_RETRY_ON, RetryBudget, RetryLayer
from ..layers.timeout import TimeoutLayer
from ..layers.tracing import CallTracingLayer, TracingLayer
from ..metrics import IOMetrics
from .config import APIEndpoint, APIOrchestrationConfig

__all__ = [
    "DEFAULT_RETRY_ON",
    "RETRY_BUDGET_TTL",
    "SharedState",
    "building",
    "current_state",
    "default_layers",
    "new_shared_state",
]

#: The window (seconds) over which a retry budget counts calls and retries.
RETRY_BUDGET_TTL = 10.0


@dataclass(eq=False)
class SharedState:
    """What every endpoint's stack in one orchestrator shares."""

    clock: Clock
    metrics: IOMetrics
    breakers: BreakerPool
    cache: SharedCache | None
    global_limiter: BaseLimiter | None
    backend: Backend
    tracer_provider: trace.TracerProvider | None = None
    limiters: dict[str, BaseLimiter] = field(default_factory=dict)
    retry_budgets: dict[str, RetryBudget] = field(default_factory=dict)  # by origin


def new_shared_state(
    config: APIOrchestrationConfig,
    clock: Clock | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> SharedState:
    """Fresh breakers, cache, global limiter and metrics, set up from ``config``."""
    clock = clock or default_clock
    backend = resolve_backend(config.backend)
    cache = None
    if config.cache_ttl is not None:
        cache = SharedCache(
            backend.cache_store(clock=clock),
            key=_cache_key(config),
            ignore_headers=(config.cache_headers or {}).get("ignore", ()),
            include_headers=(config.cache_headers or {}).get("include", ()),
            clock=clock,
        )
    global_limiter = None
    if config.global_rate_limit is not None:
        global_limiter = backend.limiter(
            config.global_rate_limit,
            config.rate_limit_window,
            clock=clock,
            name="lamina.global",
        )
    return SharedState(
        clock=clock,
        metrics=IOMetrics(),
        breakers=BreakerPool(
            config.circuit_breaker_threshold,
            config.circuit_breaker_timeout,
            clock=clock,
            backend=backend.breaker_backend(),
        ),
        cache=cache,
        global_limiter=global_limiter,
        backend=backend,
        tracer_provider=tracer_provider,
    )


_building: ContextVar[SharedState | None] = ContextVar("lamina_building", default=None)


@contextmanager
def building(shared: SharedState) -> Iterator[None]:
    """Within this block :func:`current_state` is ``shared`` (the orchestrator wraps its
    calls to a ``layers=`` callable in it)."""
    token = _building.set(shared)
    try:
        yield
    finally:
        _building.reset(token)


def current_state(config: APIOrchestrationConfig) -> SharedState:
    """The state of the orchestrator building its stacks, else new state for ``config``."""
    shared = _building.get()
    return shared if shared is not None else new_shared_state(config)


def _cache_key(config: APIOrchestrationConfig) -> Callable[[Request], str] | None:
    generator = config.cache_key_generator
    if generator is None:
        return None
    endpoints = {e.name: e for e in config.endpoints}

    def key(request: Request) -> str:
        endpoint = endpoints.get(request.endpoint or "")
        return str(generator(endpoint)) if endpoint is not None else request.url

    return key


def default_layers(
    endpoint: APIEndpoint, config: APIOrchestrationConfig, shared: SharedState
) -> list[Layer]:
    """The layers lamina puts around ``endpoint``'s transport, outermost first."""
    layers: list[Layer] = [CallTracingLayer(tracer_provider=shared.tracer_provider)]
    if config.metrics_enabled:
        layers.append(MetricsLayer(shared.metrics))
    ttl = config.cache_ttl
    if shared.cache is not None and ttl is not None and endpoint.method in ("GET", "HEAD"):
        layers.append(CacheLayer(ttl=ttl, cache=shared.cache))
    layers.append(
        ParseLayer(
            endpoint.response_parser,
            endpoint.transform_output,
            max_response_bytes=config.max_response_bytes,
        )
    )
    if endpoint.retry_count > 0:
        layers.append(
            RetryLayer(
                retries=endpoint.retry_count,
                backoff=endpoint.retry_delay,
                retry_on=DEFAULT_RETRY_ON if endpoint.retry_on is None else endpoint.retry_on,
                clock=shared.clock,
                budget=_retry_budget(endpoint, config, shared),
            )
        )
    layers.append(CircuitBreakerLayer(pool=shared.breakers))
    limiters = _limiters(endpoint, shared)
    if limiters:
        layers.append(RateLimitLayer(limiters=limiters))
    layers.append(TimeoutLayer(endpoint.timeout, clock=shared.clock))
    layers.append(TracingLayer(tracer_provider=shared.tracer_provider))
    if config.log_requests or config.log_responses:
        layers.append(LoggingLayer(config.log_requests, config.log_responses))
    return layers


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url`` (the default port filled in), lower-cased."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # not a number: the transport will say so; key on the text
        return f"{scheme}://{parts.netloc.lower()}"
    return (
        f"{scheme}://{(parts.hostname or '').lower()}:{port or (443 if scheme == 'https' else 80)}"
    )


def _retry_budget(
    endpoint: APIEndpoint, config: APIOrchestrationConfig, shared: SharedState
) -> RetryBudget | None:
    """The budget of ``endpoint``'s upstream origin (made on first use), or None."""
    if config.retry_budget is None:
        return None
    key = _origin(endpoint.url)  # placeholders are never in the host
    budget = shared.retry_budgets.get(key)
    if budget is None:
        budget = shared.retry_budgets[key] = RetryBudget(
            ttl=RETRY_BUDGET_TTL,
            percent=config.retry_budget,
            min_per_second=config.retry_budget_min_per_second,
            clock=shared.clock,
        )
    return budget


def _limiters(endpoint: APIEndpoint, shared: SharedState) -> list[BaseLimiter]:
    """The endpoint's own limit first, then the global one: a call held by its own
    limit then does not hold up the shared queue for other endpoints."""
    limiters: list[BaseLimiter] = []
    if endpoint.rate_limit is not None:
        if endpoint.name not in shared.limiters:
            shared.limiters[endpoint.name] = shared.backend.limiter(
                endpoint.rate_limit,
                60.0,
                burst=endpoint.burst_limit,
                clock=shared.clock,
                name=endpoint.name,
            )
        limiters.append(shared.limiters[endpoint.name])
    if shared.global_limiter is not None:
        limiters.append(shared.global_limiter)
    return limiters
