"""Rate limiting: the layer and its service, fair clock-injectable limiters on one
storage seam (the bucket arithmetic, the store protocol, the in-memory and Redis stores)
the reference's per-category ``InMemoryRateLimiter`` and sliding-window ``RateLimiter``,
and ``aiolimiter.AsyncLimiter`` plugged in as a limit (``AiolimiterLimiter``)."""

from .adapt import acquire_all, try_acquire_all
from .aiolimiter_store import AiolimiterLimiter
from .bucket import Bucket
from .categories import (
    CategoryLimiter,
    InMemoryRateLimiter,
    RateLimit,
    RateLimiterConfig,
    RateLimitStatus,
)
from .layer import RateLimitLayer, RateLimitService
from .limiter import BaseLimiter, Limiter
from .memory_store import MemoryLimitStore
from .redis import RedisLimiter, RedisLimitStore, RedisRateLimiter
from .reference import RateLimiter
from .store import LimitStatus, LimitStore, Refused

__all__ = [
    "AiolimiterLimiter",
    "BaseLimiter",
    "Bucket",
    "CategoryLimiter",
    "InMemoryRateLimiter",
    "LimitStatus",
    "LimitStore",
    "Limiter",
    "MemoryLimitStore",
    "RateLimit",
    "RateLimitLayer",
    "RateLimitService",
    "RateLimitStatus",
    "RateLimiter",
    "RateLimiterConfig",
    "RedisLimitStore",
    "RedisLimiter",
    "RedisRateLimiter",
    "Refused",
    "acquire_all",
    "try_acquire_all",
]
