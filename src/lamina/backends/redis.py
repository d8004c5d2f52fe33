"""The Redis connection shared by the Redis limiter, breaker and cache.

:class:`RedisBackend` owns the connection (one ``redis.asyncio`` client per
event loop), the key layout (``{prefix}:v1:{kind}:{{name}}:...``), Lua
script execution (``EVALSHA``, falling back to ``EVAL`` once) and the
failure policy:

* ``on_error="local"`` (default): a failed or slow Redis call makes the
  caller use in-process state instead. The first failure of an outage logs
  one warning; every fallback is counted (:attr:`RedisBackend.fallbacks`) and
  reported as a ``backend.unavailable`` event on the call. For
  ``retry_interval`` seconds after a failure Redis is not asked at all (so an
  outage costs nothing per call); then the next call tries again, and the
  first success logs that Redis is back.
* ``"closed"``: calls are rejected with :class:`lamina.BackendUnavailable`.
* ``"open"``: calls go through unlimited, unguarded and uncached.

Every Redis call is bounded by ``timeout`` seconds (socket connect and read
timeouts, and an overall deadline of twice that), and redis-py's own retries
are off, so an outage never holds a call longer than about ``2 * timeout``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .._clock import Clock
from .._core import Request
from .._errors import BackendUnavailable, ConfigError
from .._events import emit
from .._redact import redact_url
from .base import ON_ERROR, OnError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ..ratelimit.memory import RateLimiterConfig
    from .redis_breaker import RedisBreakerBackend
    from .redis_cache import RedisCacheStore
    from .redis_limiter import RedisLimiter, RedisRateLimiter

__all__ = ["KEY_VERSION", "RedisBackend", "RedisUnavailable"]

logger = logging.getLogger("lamina.backends")

T = TypeVar("T")

KEY_VERSION = "v1"
"""Bumped whenever the layout of values in Redis changes."""

_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class RedisUnavailable(Exception):
    """Internal: Redis failed or is known to be down; the caller applies the policy."""


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 3600:
        raise ConfigError(f"must be a number of seconds in (0, 3600), got {value!r}", field=field)
    return float(value)


class RedisBackend:
    """Shared state in Redis for rate limits, breakers and caches.

    ``RedisBackend("redis://host:6379/0", prefix="lamina", on_error="local")``.
    Pass ``client=`` (a ``redis.asyncio.Redis``) to reuse a connection you
    configured yourself; it is then used on whatever loop calls it.
    """

    kind = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "lamina",
        on_error: OnError = "local",
        timeout: float = 0.25,
        retry_interval: float = 1.0,
        client: Redis | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("must be a redis://, rediss:// or unix:// URL", field="url")
        if not isinstance(prefix, str) or not _PREFIX.match(prefix):
            raise ConfigError(
                "must be 1-64 characters of letters, digits, '_', '.', ':' or '-'",
                field="prefix",
            )
        if on_error not in ON_ERROR:
            raise ConfigError(f"must be one of {ON_ERROR}, got {on_error!r}", field="on_error")
        self._url = url
        self.prefix = prefix
        self.on_error: OnError = on_error
        self.timeout = _number(timeout, "timeout")
        self.retry_interval = _number(retry_interval, "retry_interval")
        self._client = client
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._shas: dict[str, str] = {}
        self._down_until = 0.0
        self._warned = False
        self.errors = 0
        """Redis calls that failed or timed out."""
        self.fallbacks = 0
        """Operations the failure policy answered instead of Redis."""
        self.recoveries = 0
        """Outages that ended (Redis answered again)."""
        try:
            parts = urlsplit(url)
            self.address = f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path}"
        except ValueError:
            self.address = redact_url(url)

    # -- keys ------------------------------------------------------------------
    def key(self, kind: str, name: str, *parts: str) -> str:
        """``{prefix}:v1:{kind}:{{name}}[:part...]``; odd names are replaced by a digest.

        The braces make every key of one name a Redis Cluster hash tag.
        """
        if not _PLAIN_NAME.match(name):
            name = "h-" + hashlib.sha256(name.encode()).hexdigest()[:24]
        tail = "".join(f":{p}" for p in parts)
        return f"{self.prefix}:{KEY_VERSION}:{kind}:{{{name}}}{tail}"

    # -- connection --------------------------------------------------------------
    def client(self) -> Redis:
        """The client for the running event loop (created on first use)."""
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            found = Redis.from_url(
                self._url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
            )
            self._clients[loop] = found
        return found

    async def aclose(self) -> None:
        """Close this loop's connections (a client passed in is left open)."""
        if self._client is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        found = self._clients.pop(loop, None)
        if found is not None:
            await found.aclose()

    async def __aenter__(self) -> RedisBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def available(self) -> bool:
        """False while a recent failure keeps the backend on its failure policy."""
        return time.monotonic() >= self._down_until

    async def ping(self) -> float:
        """Seconds for one PING round trip (raises if Redis does not answer)."""
        start = time.perf_counter()
        await self.client().ping()
        return time.perf_counter() - start

    async def run(self, op: Callable[[Redis], Awaitable[T]], *, limit: float | None = None) -> T:
        """Run ``op(client)`` within ``limit`` (default ``2 * self.timeout``) seconds;
        raise :class:`RedisUnavailable` on failure."""
        if time.monotonic() < self._down_until:
            raise RedisUnavailable("redis marked down")
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(limit or 2 * self.timeout):
                result = await op(self.client())
        except (RedisError, OSError) as exc:  # OSError covers asyncio's TimeoutError
            self._failed(exc)
            raise RedisUnavailable(type(exc).__name__) from exc
        if self._warned:
            self._warned = False
            self.recoveries += 1
            logger.warning("redis backend %s answers again; shared state resumed", self.address)
        return result

    async def script(self, lua: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script atomically (``EVALSHA``, ``EVAL`` if Redis lost it)."""
        sha = self._shas.get(lua)
        if sha is None:
            sha = self._shas[lua] = hashlib.sha1(lua.encode()).hexdigest()

        async def op(client: Redis) -> Any:
            from redis.exceptions import NoScriptError

            try:
                return await client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.eval(lua, len(keys), *keys, *args)

        return await self.run(op)

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self._down_until = time.monotonic() + self.retry_interval
        if not self._warned:
            self._warned = True
            logger.warning(
                "redis backend %s unavailable (%s); on_error=%r for the next %gs",
                self.address,
                type(exc).__name__,
                self.on_error,
                self.retry_interval,
            )

    def unavailable(self, what: str, request: Request | None, *, reject: bool = True) -> None:
        """Apply the failure policy to one operation: count it, report it, and under
        ``on_error="closed"`` (when ``reject``) raise :class:`lamina.BackendUnavailable`."""
        self.fallbacks += 1
        if request is not None:
            emit(request, "backend.unavailable", backend="redis", what=what, policy=self.on_error)
        if reject and self.on_error == "closed":
            raise BackendUnavailable(
                f"shared {what} state in redis at {self.address} is unavailable",
                backend="redis",
                request=request,
            )

    # -- factories -----------------------------------------------------------------
    def limiter(
        self,
        rate: float,
        period: float = 1.0,
        *,
        burst: int | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> RedisLimiter:
        """A limit shared by every process using the same ``name`` and rate."""
        from .redis_limiter import RedisLimiter

        return RedisLimiter(self, rate, period, burst=burst, clock=clock, name=name)

    def rate_limiter(
        self, config: RateLimiterConfig | None = None, *, clock: Clock | None = None
    ) -> RedisRateLimiter:
        """The reference's per-category limiter API, shared through Redis."""
        from .redis_limiter import RedisRateLimiter

        return RedisRateLimiter(config, backend=self, clock=clock)

    def breaker_backend(self) -> RedisBreakerBackend:
        """Breaker records in Redis."""
        from .redis_breaker import RedisBreakerBackend

        return RedisBreakerBackend(self)

    def cache_store(self, *, maxsize: int = 1024, clock: Clock | None = None) -> RedisCacheStore:
        """A cache store in Redis (``maxsize`` bounds the local fallback store)."""
        from .redis_cache import RedisCacheStore

        return RedisCacheStore(self, fallback_maxsize=maxsize, clock=clock)

    def __repr__(self) -> str:
        state = "up" if self.available else "down"
        return (
            f"RedisBackend({self.address!r}, prefix={self.prefix!r}, on_error={self.on_error!r}, "
            f"{state}, errors={self.errors}, fallbacks={self.fallbacks})"
        )
