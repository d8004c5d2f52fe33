"""Response cache: serve repeated safe calls from a store, coalesce concurrent misses."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ... import _validate as check
from ..._clock import Clock
from ..._core import Request, Response, Service
from ..._errors import BackendUnavailable, ConfigError, LaminaError
from ..._events import emit
from ...backends.base import Backend
from .entry import CacheEntry
from .keys import KeyFunction, KeyScheme
from .policy import request_wants_fresh, serves_stale, storable, vary_names
from .shared import SECRET_REFRESH, SECRET_RETRY, Fetched, SharedCache
from .store import CacheStore, MemoryCacheStore, SyncCacheStore

__all__ = [
    "BYPASS",
    "CACHE_MODE",
    "REFRESH",
    "SECRET_REFRESH",
    "SECRET_RETRY",
    "CacheLayer",
    "CacheService",
]

logger = logging.getLogger("lamina.cache")

CACHE_MODE = "lamina.cache"
"""``request.extensions[CACHE_MODE]``: ``"bypass"`` or ``"refresh"`` for one call."""
BYPASS = "bypass"  # neither read nor store: the cache is not there for this call
REFRESH = "refresh"  # skip the read, call upstream, store the fresh response


class CacheLayer:
    """Cache successful responses of safe methods for ``ttl`` seconds.

    ``maxsize`` bounds the default in-memory store; ``store`` replaces it (any
    :class:`lamina.layers.cache.CacheStore`, or a :class:`lamina.backends.Backend` such
    as ``RedisBackend`` to build its store). The key covers the endpoint, the
    method, the normalised URL, the body and every request header except
    :data:`lamina.layers.cache.IGNORED_HEADERS` (names that never identify a caller);
    ``ignore_headers`` adds names to that set, ``include_headers`` keeps names
    in the key even if ignored by default (credential headers cannot be
    ignored). ``key(request) -> str`` replaces the default key; a custom key is
    still prefixed by the namespace (``request.endpoint``) and suffixed by the
    caller's identity digest. Header values reach keys and entries only as
    HMAC-SHA256 digests under ``key_secret`` (else ``$LAMINA_CACHE_KEY_SECRET``,
    else the secret a shared store such as Redis keeps beside the entries, with one
    WARNING per process, else a random key per process). ``stale_if_error=seconds``
    keeps entries that long past their lifetime and serves them (``stale=True``)
    when the upstream fails. ``cache_authorized=True`` stores responses to requests carrying
    ``Authorization`` (and ``private`` ones) for the same caller. A response's
    ``Vary`` is honoured, one entry per variant. Concurrent identical misses
    make one upstream call (single-flight).

    The store, the key options and the calls in flight make a :class:`SharedCache`
    (:attr:`cache`); pass ``cache=`` instead of those options to share one between
    layers (the orchestrator does, for all its endpoints).
    """

    __slots__ = ("cache", "cache_authorized", "maxsize", "methods", "stale_if_error", "ttl")

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
        ignore_headers: Iterable[str] = (),
        include_headers: Iterable[str] = (),
        key_secret: str | bytes | None = None,
        clock: Clock | None = None,
        cache: SharedCache | None = None,
    ) -> None:
        self.ttl = check.seconds(ttl, "ttl")  # at most 30 days: a Redis entry's PX always fits
        self.maxsize = check.count(maxsize, "maxsize")
        self.stale_if_error = (
            None if stale_if_error is None else check.seconds(stale_if_error, "stale_if_error")
        )
        self.cache_authorized = check.flag(cache_authorized, "cache_authorized")
        names = () if isinstance(methods, str) else tuple(methods)
        if isinstance(methods, str) or not all(isinstance(m, str) for m in names):
            raise ConfigError("must be a collection of method names", field="methods")
        self.methods = frozenset(m.upper() for m in names)
        if not self.methods:
            raise ConfigError("must name at least one method", field="methods")
        if cache is not None:
            given = [
                name
                for name, value in (
                    ("key", key),
                    ("store", store),
                    ("ignore_headers", tuple(ignore_headers) or None),
                    ("include_headers", tuple(include_headers) or None),
                    ("key_secret", key_secret),
                    ("clock", clock),
                )
                if value is not None
            ]
            if given:
                raise ConfigError(
                    f"{', '.join(given)} configure the cache; give them to SharedCache "
                    "or leave out cache=",
                    field="cache",
                )
            if not isinstance(cache, SharedCache):
                raise ConfigError("must be a SharedCache or None", field="cache")
        else:
            if clock is not None and not isinstance(clock, Clock):
                raise ConfigError("must have now() and sleep()", field="clock")
            if isinstance(store, Backend):  # e.g. a RedisBackend: build its store
                store = store.cache_store(maxsize=maxsize, clock=clock)
            cache = SharedCache(
                store,
                maxsize=maxsize,
                key=key,
                ignore_headers=ignore_headers,
                include_headers=include_headers,
                key_secret=key_secret,
                clock=clock,
            )
        self.cache = cache
        """What this layer's services share (and other layers, if handed it)."""

    @property
    def store(self) -> CacheStore:
        return self.cache.store

    @property
    def clock(self) -> Clock:
        return self.cache.clock

    @property
    def key(self) -> KeyFunction | None:
        """The user's key function (None: the default key)."""
        return self.cache.key

    @property
    def ignored_headers(self) -> frozenset[str]:
        """The header names left out of keys (lower-case): defaults, plus ignore, minus include."""
        return self.cache.ignored_headers

    def wrap(self, inner: Service) -> Service:
        return CacheService(inner, self)

    def invalidate(self, namespace: str) -> int:
        """Drop every entry of one endpoint now; return how many (in-memory stores)."""
        return self.cache.invalidate(namespace)

    def clear(self) -> int:
        """Drop every entry now; return how many (in-memory stores)."""
        return self.cache.clear()

    async def ainvalidate(self, namespace: str) -> None:
        """Drop every entry of one endpoint, for stores that need I/O."""
        await self.cache.ainvalidate(namespace)

    async def aclear(self) -> None:
        """Drop every entry, for stores that need I/O."""
        await self.cache.aclear()

    def __repr__(self) -> str:  # never the key secret
        store = self.cache.store
        size = f"size={len(store)}, " if isinstance(store, MemoryCacheStore) else ""
        stale = f", stale_if_error={self.stale_if_error:g}" if self.stale_if_error else ""
        return (
            f"CacheLayer({size}ttl={self.ttl:g}, maxsize={self.maxsize}{stale}, "
            f"store={type(store).__name__})"
        )


def _variant(key: str, vary_digest: str) -> str:
    return f"{key}|vary:{vary_digest}"


class CacheService:
    """Service made by :class:`CacheLayer`: the layer's settings, its :class:`SharedCache`."""

    __slots__ = ("_get_nowait", "cache", "config", "inner")

    def __init__(self, inner: Service, config: CacheLayer) -> None:
        self.inner = inner
        self.config = config
        self.cache = config.cache
        store = self.cache.store
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
        cache = self.cache
        scheme = cache.scheme_nowait() or await cache.scheme(request)
        key = cache.key_of(scheme, request)
        entry = await self._read(key)
        reason = "absent"
        if entry is not None and not entry.matches(request, scheme):
            # Another variant (Vary) may be stored under the key with this request's values.
            entry = await self._read(_variant(key, scheme.vary_digest(request, entry.vary)))
            if entry is None or not entry.matches(request, scheme):
                entry, reason = None, "vary"
        if entry is not None:
            now = cache.clock.now()
            if mode == REFRESH:
                reason = "refresh"
            elif not entry.is_fresh(now):
                reason = "expired"
            elif request_wants_fresh(request):
                reason = "no-cache"
            else:
                emit(request, "cache.hit", age=entry.age(now))
                return entry.to_response(request)
        emit(request, "cache.miss", reason=reason)
        outcome, shared = await cache.flights.do(
            key, lambda: self._fetch(request, key, entry, scheme)
        )
        if not shared:
            return outcome.response
        if outcome.entry is None or not outcome.entry.matches(request, scheme):
            # Not shareable (no-store, private, Vary differs...): call upstream ourselves.
            return (await self._fetch(request, key, entry, scheme)).response
        if outcome.stale:
            emit(request, "cache.stale", age=outcome.entry.age(cache.clock.now()), shared=True)
        return outcome.entry.to_response(request, from_cache=outcome.stale, stale=outcome.stale)

    async def _read(self, key: str) -> CacheEntry | None:
        try:
            if self._get_nowait is not None:
                return self._get_nowait(key)
            return await self.cache.store.get(key)
        except BackendUnavailable:  # a shared store with on_error="closed" rejects the call
            raise
        except Exception:
            logger.warning("cache store get failed; treating as a miss", exc_info=True)
            return None

    async def _fetch(
        self, request: Request, key: str, fallback: CacheEntry | None, scheme: KeyScheme
    ) -> Fetched:
        """Call upstream; store what may be stored; on failure serve ``fallback`` stale."""
        config, cache = self.config, self.cache
        generation = cache.generation(request.endpoint)
        try:
            response = await self.inner(request)
        except LaminaError as exc:
            now = cache.clock.now()
            if (
                fallback is None
                or config.stale_if_error is None
                or not serves_stale(exc)
                or not fallback.is_usable_stale(now)
            ):
                raise
            emit(request, "cache.stale", age=fallback.age(now), error=type(exc).__name__)
            return Fetched(fallback.to_response(request, stale=True), fallback, stale=True)
        decision = storable(
            request,
            response,
            ttl=config.ttl,
            cache_authorized=config.cache_authorized,
            identified=bool(scheme.identity(request)),
        )
        if decision is None:
            return Fetched(response, None)
        names = vary_names(response) or ()
        stale_for = (config.stale_if_error or 0.0) if decision.stale_ok else 0.0
        try:
            entry = CacheEntry(
                status_code=response.status_code,
                headers=response.headers,
                content=response.content,
                value=response.value,
                namespace=request.endpoint,
                stored_at=cache.clock.now(),
                fresh_for=decision.ttl,
                stale_for=stale_for,
                vary=names,
                vary_digest=scheme.vary_digest(request, names),
            )
        except Exception:
            logger.warning("response value cannot be copied; not cached", exc_info=True)
            return Fetched(response, None)
        if cache.generation(request.endpoint) == generation:
            ttl = decision.ttl + stale_for
            try:
                await cache.store.set(key, entry, ttl)
                if any(name in scheme.ignored for name in names):
                    # Varies on a header the key leaves out: keep this variant under its
                    # own key too, so requests alternating between variants all hit.
                    await cache.store.set(_variant(key, entry.vary_digest), entry, ttl)
            except Exception:
                logger.warning("cache store set failed; response not cached", exc_info=True)
        return Fetched(response, entry)

    def __repr__(self) -> str:
        return f"<CacheService {self.config!r} -> {self.inner!r}>"


Cache = CacheService  # deprecated: the name before issue 15, kept for imports
