"""A :class:`lamina.layers.cache.CacheStore` in Redis: JSON values with a TTL.

Each entry is one hash, ``{prefix}:v1:cache:{namespace}:<sha256 of the cache key>``,
holding ``d`` (the entry as JSON), ``t`` (when it was stored, Redis server clock in
microseconds) and ``n`` (``<random version id>:<t>``: a revalidation stores its renewed
entry only if the hash still holds the version it revalidated; an entry an older lamina
wrote, without ``n`` or leaving another's ``n`` behind, is the version ``t:<t>``); it
expires with the entry's TTL. Values are JSON, never pickle, so whoever can write to
Redis cannot run code in a reader. The cache key is only stored as a digest, and
:class:`lamina.layers.cache.CacheLayer` hands a network store only
``<endpoint>|#<HMAC-SHA256 of its key>``, so no header value, query value or body
reaches a key name, even as a plain hash; secret response headers (``Set-Cookie``...)
are dropped before storing. Times travel as ages measured on the Redis server's clock,
so hosts with different clocks agree on freshness.

Unless the layer is given a key secret (or ``LAMINA_CACHE_KEY_SECRET``), the
HMAC key is a random secret kept in Redis at ``{prefix}:v1:cache-secret:{hmac}``
(created once, with a 30-day TTL renewed by every process that uses it), so
every worker on the same Redis and prefix builds the same keys. That puts the key
beside the data: whoever can read this Redis can test guesses of header values
against the keys, and whoever can write to it can plant an entry under another
caller's key. The layer logs one WARNING per process when it uses this key; set
``LAMINA_CACHE_KEY_SECRET`` in every worker to keep the key out of Redis.

A response whose parsed value does not survive a JSON round trip unchanged,
or whose entry is larger than ``max_value_bytes``, is not stored; an entry larger than
``max_value_bytes`` (stored by a store with a larger limit) is not read either, a miss
(both counted in :attr:`RedisCacheStore.skipped`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from typing import Any

from ... import _validate as check
from ..._clock import Clock, default_clock
from ..._core import Request
from ..._errors import ConfigError
from ..._headers import Headers
from ..._redact import is_secret_header
from ...backends.redis_connection import RedisConnection, RedisUnavailable
from .entry import CacheEntry
from .store import MemoryCacheStore

__all__ = ["RedisCacheStore"]

logger = logging.getLogger("lamina.backends")

FORMAT = 1

# The version of the entry a hash holds, in GET, REPLACE and REMOVE alike: the random id a
# writer stored in 'n' as "<id>:<t>", if 't' is still the time it wrote; else (an older
# lamina wrote 'd' and 't' only, maybe leaving a newer lamina's 'n' behind) "t:<t>".
VERSION = """
local function version(n, t)
  if not t then return '' end
  if n then
    local id, at = string.match(n, '^(.*):(%d+)$')
    if id and at == t then return id end
  end
  return 't:' .. t
end
"""

# KEYS: entry. ARGV: json, age_us, ttl_ms, version.
SET = """
local t = redis.call('TIME')
local at = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]) - tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'd', ARGV[1], 't', at, 'n', ARGV[4] .. ':' .. at)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: entry. ARGV: json, age_us, ttl_ms, version, read_version. SET unless the entry
# stored now is another version than the one read (0 then). An entry gone meanwhile
# (expired, deleted) is stored again, as SET would.
REPLACE = (
    VERSION
    + """
local h = redis.call('HMGET', KEYS[1], 'n', 't')
if h[2] and version(h[1], h[2]) ~= ARGV[5] then return 0 end
"""
    + SET
)

# KEYS: entry. ARGV: read_version. Deletes the entry unless it is another version than the
# one read (0 then; 1 if deleted or gone).
REMOVE = (
    VERSION
    + """
local h = redis.call('HMGET', KEYS[1], 'n', 't')
if h[2] and version(h[1], h[2]) ~= ARGV[1] then return 0 end
redis.call('UNLINK', KEYS[1])
return 1
"""
)

# KEYS: entry. ARGV: max_bytes. Returns {json or '', stored_us, now_us, version or ''};
# stored_us is -1 for an entry larger than max_bytes (not sent).
GET = (
    VERSION
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if redis.call('HSTRLEN', KEYS[1], 'd') > tonumber(ARGV[1]) then return {'', -1, now, ''} end
local h = redis.call('HMGET', KEYS[1], 'd', 't', 'n')
if not h[1] then return {'', 0, now, ''} end
return {h[1], tonumber(h[2]) or now, now, version(h[3], h[2])}
"""
)


# KEYS: secret. ARGV: candidate, ttl_ms. Returns the secret in force (installing the
# candidate if there is none), its TTL renewed.
SECRET = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return v
"""

SECRET_TTL_MS = 30 * 86_400_000
"""How long the shared key secret outlives the last process that renewed it."""


def _encode(entry: CacheEntry) -> dict[str, Any]:
    value = entry.value
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    if json.loads(text) != value:
        raise ValueError("value does not survive JSON unchanged")
    return {
        "v": FORMAT,
        "status": entry.status_code,
        "headers": [[k, v] for k, v in entry.headers.multi_items() if not is_secret_header(k)],
        "content": base64.b64encode(entry.content).decode("ascii"),
        "value": value,
        "ns": entry.namespace,
        "fresh_for": entry.fresh_for,
        "stale_for": entry.stale_for,
        "swr_for": entry.swr_for,
        "vary": list(entry.vary),
        "vary_digest": entry.vary_digest,
    }


def _decode(data: dict[str, Any], stored_at: float) -> CacheEntry:
    if data.get("v") != FORMAT:
        raise ValueError(f"unknown cache entry format {data.get('v')!r}")
    return CacheEntry(
        status_code=int(data["status"]),
        headers=Headers([(str(k), str(v)) for k, v in data["headers"]]),
        content=base64.b64decode(data["content"], validate=True),
        value=data["value"],
        namespace=data["ns"],
        stored_at=stored_at,
        fresh_for=float(data["fresh_for"]),
        stale_for=float(data["stale_for"]),
        swr_for=float(data.get("swr_for", 0.0)),
        vary=tuple(str(n) for n in data["vary"]),
        vary_digest=str(data["vary_digest"]),
    )


class RedisCacheStore:
    """Cache entries shared by every process using the same backend.

    Use as ``CacheLayer(store=RedisCacheStore(backend))`` (or
    ``CacheLayer(store=backend)``). ``max_value_bytes`` caps one stored
    entry (default 1 MiB). Under ``on_error="local"`` a
    :class:`~lamina.layers.cache.MemoryCacheStore` of ``fallback_maxsize`` entries stands
    in while Redis is down; under ``"closed"`` a read raises
    :class:`lamina.BackendUnavailable`; under ``"open"`` reads miss and
    writes are dropped. Writes never raise.
    """

    __slots__ = ("_fallback", "backend", "clock", "max_value_bytes", "skipped")

    def __init__(
        self,
        backend: RedisConnection | str,
        *,
        max_value_bytes: int = 1 << 20,
        fallback_maxsize: int = 1024,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(backend, str):
            backend = RedisConnection(backend)
        if not isinstance(backend, RedisConnection):
            raise ConfigError("must be a RedisBackend or a redis:// URL", field="backend")
        self.backend = backend
        self.max_value_bytes = check.size(max_value_bytes, "max_value_bytes", high=512 << 20)
        self.clock = clock or default_clock
        self._fallback = MemoryCacheStore(fallback_maxsize, clock=self.clock)
        self.skipped = 0
        """Entries not stored (too large, or a value JSON cannot carry unchanged) or not
        read (larger than ``max_value_bytes``)."""

    async def key_secret(self, candidate: bytes, request: Request | None = None) -> bytes | None:
        """The HMAC key every process on this Redis and prefix uses for cache keys.

        Installs ``candidate`` (ASCII, at least 16 bytes) if Redis holds none, and
        renews the secret's TTL. None if Redis cannot be reached (under
        ``on_error="closed"`` that raises :class:`lamina.BackendUnavailable`).
        """
        rkey = self.backend.key("cache-secret", "hmac")
        try:
            found = await self.backend.script(SECRET, [rkey], [candidate, SECRET_TTL_MS])
        except RedisUnavailable:
            self.backend.unavailable("cache", request)  # raises under "closed"
            return None
        secret = found.encode() if isinstance(found, str) else bytes(found)
        if len(secret) < 16:
            logger.warning("the cache key secret in redis is too short; using a local key")
            return None
        return secret

    def key(self, key: str, namespace: str | None) -> str:
        """The Redis key for cache key ``key`` in ``namespace``."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:40]
        return self.backend.key("cache", "~" if namespace is None else namespace, digest)

    def _pattern(self, namespace: str | None) -> str:
        if namespace is None:
            return self.backend.key("cache", "x").rsplit(":", 1)[0] + ":*"
        return self.backend.key("cache", namespace, "*")

    @staticmethod
    def _namespace(key: str) -> str | None:
        # Cache keys start with "<endpoint>|" (lamina.layers.cache.keys); "" means no endpoint.
        head, sep, _ = key.partition("|")
        return head if sep and head else None

    async def get(self, key: str) -> CacheEntry | None:
        rkey = self.key(key, self._namespace(key))
        try:
            data, stored_us, now_us, version = await self.backend.script(
                GET, [rkey], [self.max_value_bytes]
            )
        except RedisUnavailable:
            self.backend.unavailable("cache", None)  # raises under "closed"
            if self.backend.on_error == "local":
                return self._fallback.get_nowait(key)
            return None
        if not data:
            if int(stored_us) < 0:  # stored by a store with a larger max_value_bytes
                self.skipped += 1
                logger.debug("cache entry in redis exceeds max_value_bytes; not read")
            return None
        stored_at = self.clock.now() - (int(now_us) - int(stored_us)) / 1e6
        try:
            entry = _decode(json.loads(data), stored_at)
        except Exception:
            logger.warning("unreadable cache entry in redis; treating it as a miss")
            return None
        if version:
            entry.stamp = version.decode() if isinstance(version, bytes) else str(version)
        return entry

    async def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        await self._write(key, entry, ttl, None)

    async def replace(self, key: str, entry: CacheEntry, ttl: float, read: CacheEntry) -> bool:
        """Store ``entry`` (a revalidated copy of ``read``, which :meth:`get` returned)
        unless ``key`` now holds another version than ``read`` (another writer stored a
        newer response meanwhile, even a process on a lamina before versions): a late 304
        never overwrites it. ``ttl <= 0`` removes the entry on the same condition. True if
        stored (or removed). An entry ``read`` without a version (not from Redis) is stored
        as by :meth:`set`."""
        return await self._write(key, entry, ttl, read.stamp)

    async def _write(self, key: str, entry: CacheEntry, ttl: float, read: str | None) -> bool:
        if ttl <= 0:
            if read is None:
                await self.delete(key)
                return True
            return await self._remove(key, read)
        try:
            blob = json.dumps(_encode(entry), separators=(",", ":")).encode()
        except (TypeError, ValueError):
            self.skipped += 1
            logger.debug("cache value is not plain JSON; not stored in redis")
            return True  # not a newer entry: nothing for the caller to report
        if len(blob) > self.max_value_bytes:
            self.skipped += 1
            logger.debug("cache entry of %d bytes exceeds max_value_bytes", len(blob))
            return True
        age_us = max(0, int((self.clock.now() - entry.stored_at) * 1e6))
        rkey = self.key(key, self._namespace(key))
        ttl_ms = max(1, int(ttl * 1000))
        if entry.stamp is None or entry.stamp.startswith("t:"):
            # a new version: every key it is stored under gets this one
            entry.stamp = secrets.token_hex(8)
        args: list[Any] = [blob, age_us, ttl_ms, entry.stamp]
        try:
            if read is None:
                await self.backend.script(SET, [rkey], args)
                return True
            return bool(await self.backend.script(REPLACE, [rkey], [*args, read]))
        except RedisUnavailable:
            self.backend.unavailable("cache", None, reject=False)
            if self.backend.on_error == "local":
                self._fallback.set_nowait(key, entry, ttl)
            return True

    async def _remove(self, key: str, read: str) -> bool:
        """Delete ``key`` unless it holds another version than ``read``."""
        self._fallback.delete_nowait(key)
        rkey = self.key(key, self._namespace(key))
        try:
            return bool(await self.backend.script(REMOVE, [rkey], [read]))
        except RedisUnavailable:
            self.backend.unavailable("cache", None, reject=False)
            return True

    async def delete(self, key: str) -> None:
        self._fallback.delete_nowait(key)
        rkey = self.key(key, self._namespace(key))
        try:
            await self.backend.run(lambda client: client.unlink(rkey))
        except RedisUnavailable:
            self.backend.unavailable("cache", None, reject=False)

    async def clear(self, namespace: str | None = None) -> None:
        """Drop one namespace (endpoint), or every entry under this backend's prefix.

        Raises :class:`lamina.BackendUnavailable` under ``on_error="closed"``
        if Redis cannot be reached (other processes would keep the entries).
        """
        self._fallback.clear_nowait(namespace)
        pattern = self._pattern(namespace)

        async def unlink_all(client: Any) -> int:
            removed, batch = 0, []
            async for found in client.scan_iter(match=pattern, count=500):
                batch.append(found)
                if len(batch) >= 500:
                    removed += await client.unlink(*batch)
                    batch = []
            if batch:
                removed += await client.unlink(*batch)
            return removed

        try:
            await self.backend.run(unlink_all, limit=10.0)
        except RedisUnavailable:
            logger.warning("cache clear did not reach redis; other processes keep their entries")
            self.backend.unavailable("cache", None)

    def __repr__(self) -> str:
        return f"RedisCacheStore({self.backend!r}, max_value_bytes={self.max_value_bytes})"
