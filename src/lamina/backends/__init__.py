"""Where shared state lives: in memory (default) or in Redis.

``InMemoryBackend`` keeps rate limits, breaker records and cached responses
in the process. ``RedisBackend`` (needs ``pip install 'lamina[redis]'``)
keeps them in Redis, so every worker, process and host shares them; see
``docs/redis.md``. Each Redis store lives with its middleware
(``lamina.layers.<name>.redis``); ``import lamina`` does not import ``redis``.
"""

from __future__ import annotations

from ..layers.cache.redis import RedisCacheStore
from ..layers.circuit_breaker.redis import RedisBreakerBackend, RedisBreakerStore
from ..layers.rate_limit.limiter import BaseLimiter
from ..layers.rate_limit.redis import RedisLimiter, RedisRateLimiter
from .base import Backend, resolve_backend
from .memory import InMemoryBackend
from .redis import RedisBackend
from .redis_connection import ON_ERROR, OnError

__all__ = [
    "ON_ERROR",
    "Backend",
    "InMemoryBackend",
    "OnError",
    "RedisBackend",
    "RedisBreakerBackend",  # deprecated: RedisBreakerStore
    "RedisBreakerStore",
    "RedisCacheStore",
    "RedisLimiter",
    "RedisRateLimiter",
    "SharedLimiter",
    "resolve_backend",
]

SharedLimiter = BaseLimiter  # the old name of a limiter on a shared store, kept for imports
