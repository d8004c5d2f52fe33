"""Response cache: serve repeated safe calls from a store, coalesce concurrent misses."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from .. import _validate as check
from .._clock import Clock, default_clock
from .._core import Request, Response, Service
from .._errors import BackendUnavailable, ConfigError, LaminaError
from .._events import emit
from ..backends.base import Backend
from ..cache.flight import SingleFlight
from ..cache.keys import KeyFunction, KeyScheme, check_header_options, key_secret, process_secret
from ..cache.policy import request_wants_fresh, serves_stale, storable, vary_names
from ..cache.store import CacheEntry, CacheStore, MemoryStore, SharedSecretStore, SyncCacheStore

__all__ = ["BYPASS", "CACHE_MODE", "REFRESH", "Cache", "CacheLayer"]

logger = logging.getLogger("lamina.cache")

CACHE_MODE = "lamina.cache"
"""``request.extensions[CACHE_MODE]``: ``"bypass"`` or ``"refresh"`` for one call."""
BYPASS = "bypass"  # neither read nor store: the cache is not there for this call
REFRESH = "refresh"  # skip the read, call upstream, store the fresh response

SECRET_REFRESH = 3600.0
"""Seconds between asks for a shared store's key secret (which also renew its TTL)."""
SECRET_RETRY = 1.0
"""Seconds before asking again when the shared store could not give its secret."""

KEY_BESIDE_DATA = (
    "cache keys are HMACs under a key secret that %s keeps beside the cached entries "
    "(no LAMINA_CACHE_KEY_SECRET or key_secret given): whoever can read that store can "
    "test guesses of header values (API keys, tenant ids) against the keys, and whoever "
    "can write to it can plant an entry for another caller's key. Set "
    "LAMINA_CACHE_KEY_SECRET (at least 16 bytes, the same in every worker) or "
    "CacheLayer(key_secret=...) to keep the key out of the store"
)
_warned_key_beside_data = False  # the warning above is logged once per process


class CacheLayer:
    """Cache successful responses of safe methods for ``ttl`` seconds.

    ``maxsize`` bounds the default in-memory store; ``store`` replaces it (any
    :class:`lamina.cache.CacheStore`, or a :class:`lamina.backends.Backend` such
    as ``RedisBackend`` to build its store). The key covers the endpoint, the
    method, the normalised URL, the body and every request header except
    :data:`lamina.cache.IGNORED_HEADERS` (names that never identify a caller);
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
    """

    __slots__ = (
        "_epoch",
        "_flights",
        "_generations",
        "_opaque",
        "_scheme",
        "_secret_flight",
        "_shared_secret",
        "cache_authorized",
        "clock",
        "ignore_headers",
        "include_headers",
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
        ignore_headers: Iterable[str] = (),
        include_headers: Iterable[str] = (),
        key_secret: str | bytes | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.ttl = check.seconds(ttl, "ttl")  # at most 30 days: a Redis entry's PX always fits
        self.maxsize = check.count(maxsize, "maxsize")
        if key is not None and not callable(key):
            raise ConfigError("must be callable: key(request) -> str", field="key")
        self.key: KeyFunction | None = key
        """The user's key function (None: the default key)."""
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
        self.ignore_headers, self.include_headers = check_header_options(
            ignore_headers, include_headers
        )
        secret = _key_secret(key_secret)
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("must have now() and sleep()", field="clock")
        self.clock = clock or default_clock
        if isinstance(store, Backend):  # e.g. a RedisBackend: build its store
            store = store.cache_store(maxsize=maxsize, clock=self.clock)
        if store is not None and not isinstance(store, CacheStore):
            raise ConfigError("must implement get/set/delete/clear", field="store")
        # not `store or ...`: an empty MemoryStore is falsy (len 0) and was silently replaced
        self.store: CacheStore = (
            store if store is not None else MemoryStore(maxsize, clock=self.clock)
        )
        # Keys leave the process (a network store) only as "<endpoint>|#<hmac>".
        self._opaque = not isinstance(self.store, MemoryStore)
        self._shared_secret = secret is None and isinstance(self.store, SharedSecretStore)
        self._scheme: KeyScheme | None = None
        if not self._shared_secret:
            if secret is None and not isinstance(self.store, SyncCacheStore):
                logger.info(
                    "%s: no cache key secret configured; keys use a per-process key, so "
                    "other processes will not share entries (set LAMINA_CACHE_KEY_SECRET)",
                    type(self.store).__name__,
                )
            self._scheme = self._new_scheme(secret or process_secret(), None)
        self._flights: SingleFlight[_Outcome] = SingleFlight()
        self._secret_flight: SingleFlight[KeyScheme] = SingleFlight()
        self._generations: dict[str | None, int] = {}
        self._epoch = 0

    def _new_scheme(self, secret: bytes, refresh_at: float | None) -> KeyScheme:
        return KeyScheme(
            secret,
            ignore=self.ignore_headers,
            include=self.include_headers,
            refresh_at=refresh_at,
        )

    @property
    def ignored_headers(self) -> frozenset[str]:
        """The header names left out of keys (lower-case): defaults, plus ignore, minus include."""
        scheme = self._scheme or self._new_scheme(process_secret(), None)
        return scheme.ignored

    async def _key_scheme(self, request: Request) -> KeyScheme:
        """The scheme for ``request``: fetch (or renew) the shared store's secret when due."""
        scheme = self._scheme
        if scheme is not None and (
            scheme.refresh_at is None or self.clock.now() < scheme.refresh_at
        ):
            return scheme
        result, _ = await self._secret_flight.do("", lambda: self._fetch_secret(request))
        return result

    async def _fetch_secret(self, request: Request) -> KeyScheme:
        store = self.store
        assert isinstance(store, SharedSecretStore)
        current = self._scheme
        fetched = current is not None and current.refresh_at is not None
        candidate = (
            current.secret
            if current is not None and current.secret is not process_secret()
            else secrets.token_hex(32).encode()
        )
        try:
            secret = await store.key_secret(candidate, request)
        except BackendUnavailable:  # on_error="closed": the call is rejected
            raise
        except Exception:
            logger.warning("cache store key_secret failed; using a local key", exc_info=True)
            secret = None
        now = self.clock.now()
        if secret is None:  # unreachable: a local key for now, ask again soon
            secret, refresh_at = process_secret(), now + SECRET_RETRY
        else:
            refresh_at = now + SECRET_REFRESH
            _warn_key_beside_data(store)
        if fetched and current is not None and current.secret == secret:
            current.refresh_at = refresh_at  # same secret: keep the digests already cached
            return current
        scheme = self._new_scheme(secret, refresh_at)
        self._scheme = scheme
        return scheme

    def _key(self, scheme: KeyScheme, request: Request) -> str:
        key = scheme.key(request) if self.key is None else scheme.scoped(self.key, request)
        return scheme.opaque(request.endpoint, key) if self._opaque else key

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

    def __repr__(self) -> str:  # never the key secret
        size = f"size={len(self.store)}, " if isinstance(self.store, MemoryStore) else ""
        stale = f", stale_if_error={self.stale_if_error:g}" if self.stale_if_error else ""
        return (
            f"CacheLayer({size}ttl={self.ttl:g}, maxsize={self.maxsize}{stale}, "
            f"store={type(self.store).__name__})"
        )


def _warn_key_beside_data(store: object) -> None:
    global _warned_key_beside_data
    if not _warned_key_beside_data:
        _warned_key_beside_data = True
        logger.warning(KEY_BESIDE_DATA, type(store).__name__)


def _key_secret(value: object) -> bytes | None:
    if value is not None and not isinstance(value, str | bytes):
        raise ConfigError("must be a str or bytes secret", field="key_secret")
    return key_secret(value)


def _variant(key: str, vary_digest: str) -> str:
    return f"{key}|vary:{vary_digest}"


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
        scheme = config._scheme
        if scheme is None or scheme.refresh_at is not None:  # a shared store's secret
            scheme = await config._key_scheme(request)
        key = config._key(scheme, request)
        entry = await self._read(key)
        reason = "absent"
        if entry is not None and not entry.matches(request, scheme):
            # Another variant (Vary) may be stored under the key with this request's values.
            entry = await self._read(_variant(key, scheme.vary_digest(request, entry.vary)))
            if entry is None or not entry.matches(request, scheme):
                entry, reason = None, "vary"
        if entry is not None:
            now = config.clock.now()
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
        outcome, shared = await config._flights.do(
            key, lambda: self._fetch(request, key, entry, scheme)
        )
        if not shared:
            return outcome.response
        if outcome.entry is None or not outcome.entry.matches(request, scheme):
            # Not shareable (no-store, private, Vary differs...): call upstream ourselves.
            return (await self._fetch(request, key, entry, scheme)).response
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

    async def _fetch(
        self, request: Request, key: str, fallback: CacheEntry | None, scheme: KeyScheme
    ) -> _Outcome:
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
            request,
            response,
            ttl=config.ttl,
            cache_authorized=config.cache_authorized,
            identified=bool(scheme.identity(request)),
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
                vary_digest=scheme.vary_digest(request, names),
            )
        except Exception:
            logger.warning("response value cannot be copied; not cached", exc_info=True)
            return _Outcome(response, None)
        if config._generation(request.endpoint) == generation:
            ttl = decision.ttl + stale_for
            try:
                await config.store.set(key, entry, ttl)
                if any(name in scheme.ignored for name in names):
                    # Varies on a header the key leaves out: keep this variant under its
                    # own key too, so requests alternating between variants all hit.
                    await config.store.set(_variant(key, entry.vary_digest), entry, ttl)
            except Exception:
                logger.warning("cache store set failed; response not cached", exc_info=True)
        return _Outcome(response, entry)

    def __repr__(self) -> str:
        return f"<Cache {self.config!r} -> {self.inner!r}>"
