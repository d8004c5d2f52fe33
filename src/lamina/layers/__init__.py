"""Built-in layers. Each module holds one layer and the service it wraps into."""

from .circuit_breaker import CircuitBreakerLayer
from .concurrency import ConcurrencyLimitLayer
from .parse import ParseLayer
from .retry import RetryLayer
from .retry_policy import RetryBudget, RetryOutcome, RetryPolicy, StatusRetryPolicy
from .timeout import TimeoutLayer

__all__ = [
    "CircuitBreakerLayer",
    "ConcurrencyLimitLayer",
    "ParseLayer",
    "RetryBudget",
    "RetryLayer",
    "RetryOutcome",
    "RetryPolicy",
    "StatusRetryPolicy",
    "TimeoutLayer",
]
