"""Where shared state lives: the :class:`Backend` seam and the in-memory default.

A backend builds the stateful parts the layers use - rate limiters, breaker
storage, cache stores. :class:`InMemoryBackend` keeps them in the process
(today's behaviour); :class:`lamina.backends.RedisBackend` keeps them in Redis
so that every worker, process and host shares one limit, one breaker and one
cache. :func:`resolve_backend` turns ``None``, ``"memory"``, a
``redis://`` URL or a backend object into a backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from .._clock import Clock
from .._errors import ConfigError
from ..breaker import BreakerBackend, MemoryBackend
from ..cache.store import CacheStore, MemoryStore
from ..ratelimit.limiter import BaseLimiter, Limiter
from ..ratelimit.memory import InMemoryRateLimiter, RateLimiterConfig

if TYPE_CHECKING:
    from .redis_limiter import RedisRateLimiter

__all__ = [
    "ON_ERROR",
    "Backend",
    "InMemoryBackend",
    "OnError",
    "SharedLimiter",
    "resolve_backend",
]

OnError = Literal["local", "closed", "open"]
ON_ERROR: tuple[OnError, ...] = ("local", "closed", "open")
"""What a shared backend does when its store is unreachable: fall back to
in-process state, reject calls (:class:`lamina.BackendUnavailable`), or let them through."""


SharedLimiter = BaseLimiter  # the old name of a limiter on a shared store, kept for imports


@runtime_checkable
class Backend(Protocol):
    """Builds the state of rate limits, breakers and caches in one place."""

    kind: str

    def limiter(
        self,
        rate: float,
        period: float = 1.0,
        *,
        burst: int | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> BaseLimiter: ...

    def rate_limiter(
        self, config: RateLimiterConfig | None = None, *, clock: Clock | None = None
    ) -> InMemoryRateLimiter | RedisRateLimiter: ...

    def breaker_backend(self) -> BreakerBackend: ...

    def cache_store(self, *, maxsize: int = 1024, clock: Clock | None = None) -> CacheStore: ...


class InMemoryBackend:
    """State in this process only: :class:`~lamina.ratelimit.Limiter`,
    :class:`lamina.breaker.MemoryBackend` and :class:`lamina.cache.MemoryStore`."""

    __slots__ = ()

    kind = "memory"

    def limiter(
        self,
        rate: float,
        period: float = 1.0,
        *,
        burst: int | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> Limiter:
        """A fresh in-process limiter."""
        return Limiter(rate, period, burst=burst, clock=clock, name=name)

    def rate_limiter(
        self, config: RateLimiterConfig | None = None, *, clock: Clock | None = None
    ) -> InMemoryRateLimiter:
        """The reference's per-category limiter, in process."""
        return InMemoryRateLimiter(config, clock=clock)

    def breaker_backend(self) -> MemoryBackend:
        """Breaker records in a dict."""
        return MemoryBackend()

    def cache_store(self, *, maxsize: int = 1024, clock: Clock | None = None) -> MemoryStore:
        """An LRU/TTL store in process."""
        return MemoryStore(maxsize, clock=clock)

    def __repr__(self) -> str:
        return "InMemoryBackend()"


def resolve_backend(value: object, *, field: str = "backend") -> Backend:
    """``None``/``"memory"`` -> :class:`InMemoryBackend`; ``"redis://..."`` (or
    ``rediss://``, ``unix://``) -> :class:`lamina.backends.RedisBackend`; a
    backend object is returned as is. Anything else raises ``ConfigError``."""
    if value is None or value == "memory":
        return InMemoryBackend()
    if isinstance(value, str):
        if value.startswith(("redis://", "rediss://", "unix://")):
            from .redis import RedisBackend

            return RedisBackend(value)
        raise ConfigError(
            "must be 'memory', a redis:// URL or a backend object (URL not shown)", field=field
        )
    if isinstance(value, Backend):
        return value
    raise ConfigError(
        f"must be 'memory', a redis:// URL or a backend object, got {type(value).__name__}",
        field=field,
    )
