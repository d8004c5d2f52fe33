"""The in-memory backend: every stateful part lives in this process."""

from __future__ import annotations

from .._clock import Clock
from ..layers.cache.store import MemoryCacheStore
from ..layers.circuit_breaker.store import MemoryBreakerStore
from ..layers.rate_limit.categories import InMemoryRateLimiter, RateLimiterConfig
from ..layers.rate_limit.limiter import Limiter

__all__ = ["InMemoryBackend"]


class InMemoryBackend:
    """State in this process only: a :class:`~lamina.layers.rate_limit.Limiter`, breaker
    records in a :class:`~lamina.layers.circuit_breaker.MemoryBreakerStore` and a
    :class:`~lamina.layers.cache.MemoryCacheStore`."""

    __slots__ = ()

    kind = "memory"

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
    ) -> Limiter:
        """A fresh in-process limiter."""
        return Limiter(
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
    ) -> InMemoryRateLimiter:
        """The reference's per-category limiter, in process."""
        return InMemoryRateLimiter(config, clock=clock)

    def breaker_backend(self) -> MemoryBreakerStore:
        """Breaker records in a dict."""
        return MemoryBreakerStore()

    def cache_store(self, *, maxsize: int = 1024, clock: Clock | None = None) -> MemoryCacheStore:
        """An LRU/TTL store in process."""
        return MemoryCacheStore(maxsize, clock=clock)

    def __repr__(self) -> str:
        return "InMemoryBackend()"
