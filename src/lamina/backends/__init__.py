"""Where shared state lives: in memory (default) or in Redis.

``InMemoryBackend`` keeps rate limits, breaker records and cached responses
in the process. ``RedisBackend`` (needs ``pip install 'lamina[redis]'``)
keeps them in Redis, so every worker, process and host shares them; see
``docs/redis.md``. The Redis classes are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..ratelimit.limiter import BaseLimiter
from .base import Backend, resolve_backend
from .memory import InMemoryBackend
from .redis_connection import ON_ERROR, OnError

if TYPE_CHECKING:
    from .redis import RedisBackend
    from .redis_breaker import RedisBreakerBackend
    from .redis_cache import RedisCacheStore
    from .redis_limiter import RedisLimiter, RedisRateLimiter

__all__ = [
    "ON_ERROR",
    "Backend",
    "InMemoryBackend",
    "OnError",
    "RedisBackend",
    "RedisBreakerBackend",
    "RedisCacheStore",
    "RedisLimiter",
    "RedisRateLimiter",
    "SharedLimiter",
    "resolve_backend",
]

SharedLimiter = BaseLimiter  # the old name of a limiter on a shared store, kept for imports

_LAZY = {
    "RedisBackend": "redis",
    "RedisBreakerBackend": "redis_breaker",
    "RedisCacheStore": "redis_cache",
    "RedisLimiter": "redis_limiter",
    "RedisRateLimiter": "redis_limiter",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lamina.backends' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
