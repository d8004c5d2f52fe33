"""Built-in layers: one folder (retry, circuit_breaker, rate_limit, cache) or module per
middleware, holding its layer, the service it wraps into, its policy and its stores."""

from .adaptive_concurrency import AdaptiveConcurrencyLayer
from .cache import CacheLayer
from .chaos import ChaosLayer
from .circuit_breaker import CircuitBreakerLayer
from .client_credentials import ClientCredentialsLayer
from .concurrency import ConcurrencyLimitLayer
from .fallback import FallbackLayer
from .hedge import HedgeLayer
from .logging import LoggingLayer
from .metrics import MetricsLayer
from .parse import ParseLayer
from .rate_limit import RateLimitLayer
from .retry import RetryBudget, RetryLayer, RetryOutcome, RetryPolicy, StatusRetryPolicy
from .timeout import TimeoutLayer
from .tracing import CallTracingLayer, TracingLayer

__all__ = [
    "AdaptiveConcurrencyLayer",
    "CacheLayer",
    "CallTracingLayer",
    "ChaosLayer",
    "CircuitBreakerLayer",
    "ClientCredentialsLayer",
    "ConcurrencyLimitLayer",
    "FallbackLayer",
    "HedgeLayer",
    "LoggingLayer",
    "MetricsLayer",
    "ParseLayer",
    "RateLimitLayer",
    "RetryBudget",
    "RetryLayer",
    "RetryOutcome",
    "RetryPolicy",
    "StatusRetryPolicy",
    "TimeoutLayer",
    "TracingLayer",
]
