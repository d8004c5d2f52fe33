"""Rate limiting: fair, clock-injectable limiters and the reference's ``InMemoryRateLimiter``."""

from .bucket import Bucket
from .limiter import Limiter, LimitStatus, acquire_all, try_acquire_all
from .memory import InMemoryRateLimiter, RateLimit, RateLimiterConfig, RateLimitStatus

__all__ = [
    "Bucket",
    "InMemoryRateLimiter",
    "LimitStatus",
    "Limiter",
    "RateLimit",
    "RateLimitStatus",
    "RateLimiterConfig",
    "acquire_all",
    "try_acquire_all",
]
