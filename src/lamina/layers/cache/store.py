"""The pluggable store protocol and the in-memory store."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cachetools import TLRUCache

from ... import _validate as check
from ..._clock import Clock, default_clock
from ..._core import Request
from .entry import CacheEntry

__all__ = [
    "CacheEntry",
    "CacheStore",
    "MemoryCacheStore",
    "ReplacingCacheStore",
    "SharedSecretStore",
    "SyncCacheStore",
]


@runtime_checkable
class CacheStore(Protocol):
    """Where cache entries live. ``ttl`` is how long the store must keep an entry
    (its fresh lifetime plus any stale-if-error window); after that ``get``
    returns None. ``clear(namespace)`` drops one namespace (endpoint), or all.
    """

    async def get(self, key: str) -> CacheEntry | None: ...

    async def set(self, key: str, entry: CacheEntry, ttl: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def clear(self, namespace: str | None = None) -> None: ...


@runtime_checkable
class SyncCacheStore(CacheStore, Protocol):
    """A store that can also answer without I/O (used by the sync invalidation API)."""

    def get_nowait(self, key: str) -> CacheEntry | None: ...

    def clear_nowait(self, namespace: str | None = None) -> int: ...


@runtime_checkable
class ReplacingCacheStore(CacheStore, Protocol):
    """A store shared by many processes that can store an entry unless a newer one has
    been stored meanwhile (a compare-and-set).

    ``replace(key, entry, ttl, read)`` stores ``entry`` (a revalidated copy of ``read``,
    an entry this store returned) unless the key now holds an entry stored after
    ``read`` was; True if it stored it. ``ttl <= 0`` removes the entry on the same
    condition (a 304 that forbids storing drops what it revalidated, not a newer entry).
    """

    async def replace(self, key: str, entry: CacheEntry, ttl: float, read: CacheEntry) -> bool: ...


@runtime_checkable
class SharedSecretStore(CacheStore, Protocol):
    """A store shared by many processes that also keeps the HMAC key for cache keys.

    ``key_secret(candidate, request)`` returns the secret every process using
    the store agrees on, installing ``candidate`` if there is none yet; None
    when the shared state cannot be reached (the store applies its own failure
    policy first, which may raise :class:`lamina.BackendUnavailable`).
    """

    async def key_secret(
        self, candidate: bytes, request: Request | None = None
    ) -> bytes | None: ...


class _Slot:
    __slots__ = ("entry", "ttl")

    def __init__(self, entry: CacheEntry, ttl: float) -> None:
        self.entry = entry
        self.ttl = ttl


def _time_to_use(_key: str, slot: _Slot, now: float) -> float:
    return now + slot.ttl


class _IndexedCache(TLRUCache[str, _Slot, float]):
    """A TLRUCache that keeps a key set per namespace, pruned on expiry and eviction."""

    def __init__(self, maxsize: int, timer: Clock) -> None:
        super().__init__(maxsize, _time_to_use, timer.now)
        self.index: dict[str | None, set[str]] = {}

    def forget(self, key: str, slot: _Slot) -> None:
        keys = self.index.get(slot.entry.namespace)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.index[slot.entry.namespace]

    def expire(self, time: float | None = None) -> list[tuple[str, _Slot]]:
        expired = super().expire(time)
        for key, slot in expired:
            self.forget(key, slot)
        return expired

    def popitem(self) -> tuple[str, _Slot]:
        key, slot = super().popitem()
        self.forget(key, slot)
        return key, slot


class MemoryCacheStore:
    """An in-process store on ``cachetools.TLRUCache``: bounded by ``maxsize``
    (least recently used evicted first), each entry expiring after its own
    ``ttl`` on ``clock`` (so tests can run in virtual time).

    Entries are kept per namespace, so :meth:`clear_nowait` of one namespace
    costs O(its keys). Every method has a synchronous ``*_nowait`` twin.
    """

    __slots__ = ("_cache", "clock", "maxsize")

    def __init__(self, maxsize: int = 1024, *, clock: Clock | None = None) -> None:
        self.maxsize = check.count(maxsize, "maxsize")
        self.clock = clock or default_clock
        self._cache = _IndexedCache(maxsize, self.clock)

    def get_nowait(self, key: str) -> CacheEntry | None:
        try:
            return self._cache[key].entry
        except KeyError:
            return None

    def set_nowait(self, key: str, entry: CacheEntry, ttl: float) -> None:
        cache = self._cache
        old = cache.get(key)
        if old is not None:
            cache.forget(key, old)
        if ttl <= 0:
            cache.pop(key, None)
            return
        cache[key] = _Slot(entry, ttl)
        cache.index.setdefault(entry.namespace, set()).add(key)

    def replace_nowait(self, key: str, entry: CacheEntry, ttl: float, read: CacheEntry) -> bool:
        """Store ``entry`` unless ``key`` holds another entry than ``read`` (the entry
        this store returned, by identity): a late 304 leaves a newer entry that another
        layer on this store put there meanwhile. ``ttl <= 0`` removes on the same
        condition. True if stored (or removed)."""
        slot = self._cache.get(key)
        if slot is not None and slot.entry is not read:
            return False
        self.set_nowait(key, entry, ttl)
        return True

    def delete_nowait(self, key: str) -> None:
        slot = self._cache.pop(key, None)
        if slot is not None:
            self._cache.forget(key, slot)

    def clear_nowait(self, namespace: str | None = None) -> int:
        """Drop every entry of ``namespace`` (all entries if None); return how many."""
        cache = self._cache
        if namespace is None:
            count = len(cache)
            cache.clear()
            cache.index.clear()
            return count
        keys = cache.index.pop(namespace, set())
        count = 0
        for key in keys:
            if cache.pop(key, None) is not None:
                count += 1
        return count

    async def get(self, key: str) -> CacheEntry | None:
        return self.get_nowait(key)

    async def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        self.set_nowait(key, entry, ttl)

    async def replace(self, key: str, entry: CacheEntry, ttl: float, read: CacheEntry) -> bool:
        return self.replace_nowait(key, entry, ttl, read)

    async def delete(self, key: str) -> None:
        self.delete_nowait(key)

    async def clear(self, namespace: str | None = None) -> None:
        self.clear_nowait(namespace)

    def __len__(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        return f"MemoryCacheStore(size={len(self._cache)}, maxsize={self.maxsize})"


MemoryStore = MemoryCacheStore  # deprecated: the name before issue 15, kept for imports
