"""Where shared state lives: the :class:`Backend` seam and :func:`resolve_backend`.

A backend builds the stateful parts the layers use - rate limiters, breaker
storage, cache stores. :class:`lamina.backends.InMemoryBackend` keeps them in the
process; :class:`lamina.backends.RedisBackend` keeps them in Redis so that every
worker, process and host shares one limit, one breaker and one cache. The stores
themselves live with their middleware (``lamina.layers.<name>``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .._errors import ConfigError
from .._extras import require

if TYPE_CHECKING:
    from .._clock import Clock
    from ..layers.cache.store import CacheStore
    from ..layers.circuit_breaker.store import BreakerStore
    from ..layers.rate_limit.categories import InMemoryRateLimiter, RateLimiterConfig
    from ..layers.rate_limit.limiter import BaseLimiter
    from ..layers.rate_limit.redis import RedisRateLimiter

__all__ = ["REDIS_MODULES", "Backend", "resolve_backend"]

#: What a Redis backend imports (``lamina[redis]``).
REDIS_MODULES = ("redis.asyncio",)


@runtime_checkable
class Backend(Protocol):
    """Builds the state of rate limits, breakers and caches in one place."""

    kind: str

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
    ) -> BaseLimiter: ...

    def rate_limiter(
        self, config: RateLimiterConfig | None = None, *, clock: Clock | None = None
    ) -> InMemoryRateLimiter | RedisRateLimiter: ...

    def breaker_backend(self) -> BreakerStore: ...

    def cache_store(self, *, maxsize: int = 1024, clock: Clock | None = None) -> CacheStore: ...


def resolve_backend(value: object, *, field: str = "backend") -> Backend:
    """``None``/``"memory"`` -> :class:`lamina.backends.InMemoryBackend`; ``"redis://..."``
    (or ``rediss://``, ``unix://``) -> :class:`lamina.backends.RedisBackend`; a backend
    object is returned as is. Anything else raises ``ConfigError``; a Redis URL without
    the ``redis`` package installed raises :class:`lamina._extras.MissingExtra` (a
    ``ConfigError``) naming ``lamina[redis]``."""
    if value is None or value == "memory":
        from .memory import InMemoryBackend

        return InMemoryBackend()
    if isinstance(value, str):
        if value.startswith(("redis://", "rediss://", "unix://")):
            if not value.startswith("unix://"):
                _check_host_port(value, field)
            require(REDIS_MODULES, "redis", "a Redis backend", field=field)
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


def _check_host_port(url: str, field: str) -> None:
    """A Redis URL whose host or port cannot be read is a ConfigError now, not a
    ``ValueError`` on every call (the URL is not shown: it may hold a password)."""
    from urllib.parse import urlsplit

    try:
        urlsplit(url).port  # noqa: B018 - reading it checks it
    except ValueError as exc:
        reason = "its port is not a number from 0 to 65535" if "ort" in str(exc) else str(exc)
        raise ConfigError(
            f"a Redis URL whose host or port is wrong: {reason} (URL not shown)", field=field
        ) from None
