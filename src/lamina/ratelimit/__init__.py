"""Rate limiting: fair, clock-injectable limiters on one storage seam, and the
reference's ``InMemoryRateLimiter``."""

from .bucket import Bucket
from .limiter import BaseLimiter, Limiter, acquire_all, try_acquire_all
from .memory import (
    CategoryLimiter,
    InMemoryRateLimiter,
    RateLimit,
    RateLimiterConfig,
    RateLimitStatus,
)
from .memory_store import MemoryLimitStore
from .store import LimitStatus, LimitStore, Refused

__all__ = [
    "BaseLimiter",
    "Bucket",
    "CategoryLimiter",
    "InMemoryRateLimiter",
    "LimitStatus",
    "LimitStore",
    "Limiter",
    "MemoryLimitStore",
    "RateLimit",
    "RateLimitStatus",
    "RateLimiterConfig",
    "Refused",
    "acquire_all",
    "try_acquire_all",
]
