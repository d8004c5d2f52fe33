"""lamina: composable middleware stacks and orchestration for async HTTP API calls."""

from . import events, telemetry
from ._clock import Clock, LoopClock
from ._core import Layer, Request, Response, Service, ServiceBuilder, layer_fn, service_fn
from ._errors import (
    BackendUnavailable,
    CircuitOpenError,
    ConcurrencyLimitExceeded,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    EndpointError,
    ErrorThresholdExceeded,
    HTTPStatusError,
    LaminaError,
    OrchestrationTimeout,
    ParseError,
    RateLimitExceeded,
    ResponseTooLarge,
    TimeoutError,
    TransportError,
    UnsupportedContentEncoding,
)
from ._extras import MissingExtra
from ._headers import Headers
from ._version import __version__
from .backends import (
    Backend,
    InMemoryBackend,
    RedisBackend,
    RedisBreakerBackend,
    RedisBreakerStore,
    RedisCacheStore,
    RedisLimiter,
    RedisRateLimiter,
    resolve_backend,
)
from .client import Client
from .flows import load_flow
from .layers.cache import CacheEntry, CacheStore, MemoryCacheStore, MemoryStore
from .layers.circuit_breaker import CircuitBreaker, CircuitState, StateChange
from .layers.rate_limit import (
    InMemoryRateLimiter,
    Limiter,
    RateLimit,
    RateLimiter,
    RateLimiterConfig,
    RateLimitStatus,
)
from .layers.retry import RetryBudget, RetryPolicy
from .metrics import IOMetrics
from .orchestration import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    EndpointReport,
    OrchestrationMode,
    RunReport,
    create_graphql_orchestrator,
    create_parallel_aggregator,
    create_rest_api_orchestrator,
    create_sequential_api_chain,
)
from .transports import HttpxTransport

__all__ = [
    "APIEndpoint",
    "APIOrchestrationConfig",
    "APIOrchestrator",
    "Backend",
    "BackendUnavailable",
    "CacheEntry",
    "CacheStore",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Client",
    "Clock",
    "ConcurrencyLimitExceeded",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "EndpointError",
    "EndpointReport",
    "ErrorThresholdExceeded",
    "HTTPStatusError",
    "Headers",
    "HttpxTransport",
    "IOMetrics",
    "InMemoryBackend",
    "InMemoryRateLimiter",
    "LaminaError",
    "Layer",
    "Limiter",
    "LoopClock",
    "MemoryCacheStore",
    "MemoryStore",  # deprecated: MemoryCacheStore
    "MissingExtra",
    "OrchestrationMode",
    "OrchestrationTimeout",
    "ParseError",
    "RateLimit",
    "RateLimitExceeded",
    "RateLimitStatus",
    "RateLimiter",
    "RateLimiterConfig",
    "RedisBackend",
    "RedisBreakerBackend",  # deprecated: RedisBreakerStore
    "RedisBreakerStore",
    "RedisCacheStore",
    "RedisLimiter",
    "RedisRateLimiter",
    "Request",
    "Response",
    "ResponseTooLarge",
    "RetryBudget",
    "RetryPolicy",
    "RunReport",
    "Service",
    "ServiceBuilder",
    "StateChange",
    "TimeoutError",
    "TransportError",
    "UnsupportedContentEncoding",
    "__version__",
    "create_graphql_orchestrator",
    "create_parallel_aggregator",
    "create_rest_api_orchestrator",
    "create_sequential_api_chain",
    "events",
    "layer_fn",
    "load_flow",
    "resolve_backend",
    "service_fn",
    "telemetry",
]
