"""Shared state in Redis: :class:`RedisBackend` builds the Redis stores of the limiter,
the breaker and the cache on one :class:`~lamina.backends.redis_connection.RedisConnection`.
"""

from __future__ import annotations

from .._clock import Clock
from ..layers.cache.redis import RedisCacheStore
from ..layers.circuit_breaker.redis import RedisBreakerStore
from ..layers.rate_limit.categories import RateLimiterConfig
from ..layers.rate_limit.redis import RedisLimiter, RedisRateLimiter
from .redis_connection import RedisConnection

__all__ = ["RedisBackend"]


class RedisBackend(RedisConnection):
    """Shared state in Redis for rate limits, breakers and caches.

    ``RedisBackend("redis://host:6379/0", prefix="lamina", on_error="local")``.
    Pass ``client=`` (a ``redis.asyncio.Redis``) to reuse a connection you
    configured yourself; it is then used on whatever loop calls it. The connection,
    its pool and the failure policy are :class:`RedisConnection`'s.
    """

    kind = "redis"

    def limiter(
        self,
        rate: float | None = None,
        period: float | None = None,
        *,
        per_second: float | None = None,
        per_minute: float | None = None,
        per_hour: float | None = None,
        burst: int | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> RedisLimiter:
        """A limit shared by every process using the same ``name`` and rate."""
        return RedisLimiter(
            self,
            rate,
            period,
            per_second=per_second,
            per_minute=per_minute,
            per_hour=per_hour,
            burst=burst,
            clock=clock,
            name=name,
        )

    def rate_limiter(
        self, config: RateLimiterConfig | None = None, *, clock: Clock | None = None
    ) -> RedisRateLimiter:
        """The reference's per-category limiter API, shared through Redis."""
        return RedisRateLimiter(config, backend=self, clock=clock)

    def breaker_backend(self) -> RedisBreakerStore:
        """Breaker records in Redis."""
        return RedisBreakerStore(self)

    def cache_store(self, *, maxsize: int = 1024, clock: Clock | None = None) -> RedisCacheStore:
        """A cache store in Redis (``maxsize`` bounds the local fallback store)."""
        return RedisCacheStore(self, fallback_maxsize=maxsize, clock=clock)
