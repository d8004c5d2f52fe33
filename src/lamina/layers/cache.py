"""Response cache: serve repeated safe calls from a store, coalesce concurrent misses."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

from .._clock import Clock, default_clock
from .._core import Request, Response, Service
from .._errors import BackendUnavailable, ConfigError, LaminaError
from .._events import emit
from ..backends.base import Backend
from ..cache.flight import SingleFlight
from ..cache.keys import KeyFunction, default_key, scoped_key
from ..cache.policy import request_wants_fresh, serves_stale, storable, vary_digest, vary_names
from ..cache.store import CacheEntry, CacheStore, MemoryStore, SyncCacheStore

__all__ = ["BYPASS", "CACHE_MODE", "REFRESH", "Cache", "CacheLayer"]

logger = logging.getLogger("lamina.cache")

CACHE_MODE = "lamina.cache"
"""``request.extensions[CACHE_MODE]``: ``"bypass"`` or ``"refresh"`` for one call."""
BYPASS = "bypass"  # neither read nor store: the cache is not there for this call
REFRESH = "refresh"  # skip the read, call upstream, store the fresh response


class CacheLayer:
    """Cache successful responses of safe methods for ``ttl`` seconds.

    ``maxsize`` bounds the default in-memory store; ``store`` replaces it (any
    :class:`lamina.cache.CacheStore`, or a :class:`lamina.backends.Backend` such
    as ``RedisBackend`` to build its store). ``key(request) -> str`` replaces the
    default key (:func:`lamina.cache.default_key`); a custom key is still
    prefixed by the namespace (``request.endpoint``) and suffixed by a digest of
    the caller's credentials. ``stale_if_error=seconds`` keeps entries that long
    past their lifetime and serves them (``stale=True``) when the upstream
    fails. ``cache_authorized=True`` stores responses to requests carrying
    ``Authorization`` (and ``private`` ones) for the same credentials.
    Concurrent identical misses make one upstream call (single-flight).
    """

    __slots__ = (
        "_epoch",
        "_flights",
        "_generations",
        "cache_authorized",
        "clock",
        "key",
        "maxsize",
        "methods",
        "stale_if_error",
        "store",
        "ttl",
    )

    def __init__(
        self,
        *,
        ttl: float = 300,
        maxsize: int = 1024,
        key: KeyFunction | None = None,
        store: CacheStore | Backend | None = None,
        stale_if_error: float | None = None,
        cache_authorized: bool = False,
        methods: Iterable[str] = ("GET", "HEAD"),
        clock: Clock | None = None,
    ) -> None:
        self.ttl = _positive(ttl, "ttl")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigError(f"must be an int >= 1, got {maxsize!r}", field="maxsize")
        self.maxsize = maxsize
        if key is not None and not callable(key):
            raise ConfigError("must be callable: key(request) -> str", field="key")
        self.key: KeyFunction = default_key if key is None else scoped_key(key)
        self.stale_if_error = (
            None if stale_if_error is None else _positive(stale_if_error, "stale_if_error")
        )
        if not isinstance(cache_authorized, bool):
            raise ConfigError("must be a bool", field="cache_authorized")
        self.cache_authorized = cache_authorized
        names = () if isinstance(methods, str) else tuple(methods)
        if isinstance(methods, str) or not all(isinstance(m, str) for m in names):
            raise ConfigError("must be a collection of method names", field="methods")
        self.methods = frozenset(m.upper() for m in names)
        if not self.methods:
            raise ConfigError("must name at least one method", field="methods")
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("must have now() and sleep()", field="clock")
        self.clock = clock or default_clock
        if isinstance(store, Backend):  # e.g. a RedisBackend: build its store
            store = store.cache_store(maxsize=maxsize, clock=self.clock)
        if store is not None and not isinstance(store, CacheStore):
            raise ConfigError("must implement get/set/delete/clear", field="store")
        self.store: CacheStore = store or MemoryStore(maxsize, clock=self.clock)
        self._flights: SingleFlight[_Outcome] = SingleFlight()
        self._generations: dict[str | None, int] = {}
        self._epoch = 0

    def wrap(self, inner: Service) -> Service:
        return Cache(inner, self)

    def _generation(self, namespace: str | None) -> tuple[int, int]:
        return self._epoch, self._generations.get(namespace, 0)

    def _forget(self, namespace: str | None) -> None:
        # Calls in flight when invalidated must not store what they fetched.
        if namespace is None:
            self._epoch += 1
        else:
            self._generations[namespace] = self._generations.get(namespace, 0) + 1

    def _sync_store(self) -> SyncCacheStore:
        if not isinstance(self.store, SyncCacheStore):
            raise TypeError(
                f"{type(self.store).__name__} needs I/O to clear: use await ainvalidate()/aclear()"
            )
        return self.store

    def invalidate(self, namespace: str) -> int:
        """Drop every entry of one endpoint now; return how many (in-memory stores)."""
        store = self._sync_store()
        self._forget(namespace)
        return store.clear_nowait(namespace)

    def clear(self) -> int:
        """Drop every entry now; return how many (in-memory stores)."""
        store = self._sync_store()
        self._forget(None)
        return store.clear_nowait(None)

    async def ainvalidate(self, namespace: str) -> None:
        """Drop every entry of one endpoint, for stores that need I/O."""
        self._forget(namespace)
        await self.store.clear(namespace)

    async def aclear(self) -> None:
        """Drop every entry, for stores that need I/O."""
        self._forget(None)
        await self.store.clear(None)

    def __repr__(self) -> str:
        size = f"size={len(self.store)}, " if isinstance(self.store, MemoryStore) else ""
        stale = f", stale_if_error={self.stale_if_error:g}" if self.stale_if_error else ""
        return (
            f"CacheLayer({size}ttl={self.ttl:g}, maxsize={self.maxsize}{stale}, "
            f"store={type(self.store).__name__})"
        )


def _positive(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"must be a number > 0, got {value!r}", field=field)
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(f"must be a finite number > 0, got {value!r}", field=field)
    return float(value)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What a leader hands its followers: the entry (None if not shareable)."""

    response: Response
    entry: CacheEntry | None
    stale: bool = False


class Cache:
    """Service made by :class:`CacheLayer`."""

    __slots__ = ("_get_nowait", "config", "inner")

    def __init__(self, inner: Service, config: CacheLayer) -> None:
        self.inner = inner
        self.config = config
        store = config.store
        # An in-memory store answers without awaiting: saves a coroutine per hit.
        self._get_nowait = store.get_nowait if isinstance(store, SyncCacheStore) else None

    async def __call__(self, request: Request) -> Response:
        config = self.config
        mode = request.extensions.get(CACHE_MODE)
        if request.method not in config.methods or mode == BYPASS:
            return await self.inner(request)
        if mode is not None and mode != REFRESH:
            raise ConfigError(
                f"must be {BYPASS!r} or {REFRESH!r}, got {mode!r}",
                field=f"extensions[{CACHE_MODE!r}]",
                endpoint=request.endpoint,
            )
        key = config.key(request)
        entry = await self._read(key)
        reason = "absent"
        if entry is not None:
            now = config.clock.now()
            if not entry.matches(request):
                entry, reason = None, "vary"
            elif mode == REFRESH:
                reason = "refresh"
            elif not entry.is_fresh(now):
                reason = "expired"
            elif request_wants_fresh(request):
                reason = "no-cache"
            else:
                emit(request, "cache.hit", age=entry.age(now))
                return entry.to_response(request)
        emit(request, "cache.miss", reason=reason)
        outcome, shared = await config._flights.do(key, lambda: self._fetch(request, key, entry))
        if not shared:
            return outcome.response
        if outcome.entry is None or not outcome.entry.matches(request):
            # Not shareable (no-store, private, Vary differs...): call upstream ourselves.
            return (await self._fetch(request, key, entry)).response
        if outcome.stale:
            emit(request, "cache.stale", age=outcome.entry.age(config.clock.now()), shared=True)
        return outcome.entry.to_response(request, from_cache=outcome.stale, stale=outcome.stale)

    async def _read(self, key: str) -> CacheEntry | None:
        try:
            if self._get_nowait is not None:
                return self._get_nowait(key)
            return await self.config.store.get(key)
        except BackendUnavailable:  # a shared store with on_error="closed" rejects the call
            raise
        except Exception:
            logger.warning("cache store get failed; treating as a miss", exc_info=True)
            return None

    async def _fetch(self, request: Request, key: str, fallback: CacheEntry | None) -> _Outcome:
        """Call upstream; store what may be stored; on failure serve ``fallback`` stale."""
        config = self.config
        generation = config._generation(request.endpoint)
        try:
            response = await self.inner(request)
        except LaminaError as exc:
            now = config.clock.now()
            if (
                fallback is None
                or config.stale_if_error is None
                or not serves_stale(exc)
                or not fallback.is_usable_stale(now)
            ):
                raise
            emit(request, "cache.stale", age=fallback.age(now), error=type(exc).__name__)
            return _Outcome(fallback.to_response(request, stale=True), fallback, stale=True)
        decision = storable(
            request, response, ttl=config.ttl, cache_authorized=config.cache_authorized
        )
        if decision is None:
            return _Outcome(response, None)
        names = vary_names(response) or ()
        stale_for = (config.stale_if_error or 0.0) if decision.stale_ok else 0.0
        try:
            entry = CacheEntry(
                status_code=response.status_code,
                headers=response.headers,
                content=response.content,
                value=response.value,
                namespace=request.endpoint,
                stored_at=config.clock.now(),
                fresh_for=decision.ttl,
                stale_for=stale_for,
                vary=names,
                vary_digest=vary_digest(request, names),
            )
        except Exception:
            logger.warning("response value cannot be copied; not cached", exc_info=True)
            return _Outcome(response, None)
        if config._generation(request.endpoint) == generation:
            try:
                await config.store.set(key, entry, decision.ttl + stale_for)
            except Exception:
                logger.warning("cache store set failed; response not cached", exc_info=True)
        return _Outcome(response, entry)

    def __repr__(self) -> str:
        return f"<Cache {self.config!r} -> {self.inner!r}>"
