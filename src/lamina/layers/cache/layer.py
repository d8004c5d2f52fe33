"""Response cache: serve repeated safe calls from a store, coalesce concurrent misses."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from email.utils import parsedate_to_datetime

from ... import _validate as check
from ..._clock import Clock
from ..._core import Request, Response, Service
from ..._errors import BackendUnavailable, ConfigError, HTTPStatusError, LaminaError
from ..._events import ATTEMPTS_KEY, EVENTS_KEY, emit
from ..._headers import Headers
from ..._redact import is_secret_header
from ...backends.base import Backend
from .entry import CacheEntry
from .keys import KeyFunction, KeyScheme
from .policy import (
    Storable,
    request_wants_fresh,
    serves_stale,
    serves_stale_status,
    store_decision,
    vary_names,
)
from .shared import SECRET_REFRESH, SECRET_RETRY, Fetched, SharedCache
from .store import CacheStore, MemoryCacheStore, ReplacingCacheStore, SyncCacheStore

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
    when the upstream fails (a response's own ``stale-if-error=N`` does the same).
    ``cache_authorized`` (default True) stores responses to requests carrying
    ``Authorization`` (and ``private`` ones) under the caller's own key, never
    served to another caller; False stores them only when the response says
    ``public``, ``s-maxage`` or ``must-revalidate``. A response's ``Vary`` is
    honoured, one entry per variant. Concurrent identical misses make one
    upstream call (single-flight). A response that is not stored emits
    ``cache.skip`` with the reason.

    With ``revalidate`` (default True) an entry with an ``ETag`` or
    ``Last-Modified`` is kept ``ttl`` seconds past its freshness; once stale it is
    revalidated with ``If-None-Match``/``If-Modified-Since``, and a 304 serves the
    stored body with its freshness renewed from the 304's headers (RFC 9111 §4.3).
    A response's ``stale-while-revalidate=N`` serves a stale entry at once for N
    seconds while one background call refreshes it (RFC 5861); :meth:`drain` waits
    for those calls.

    The store, the key options and the calls in flight make a :class:`SharedCache`
    (:attr:`cache`); pass ``cache=`` instead of those options to share one between
    layers (the orchestrator does, for all its endpoints).
    """

    __slots__ = (
        "cache",
        "cache_authorized",
        "maxsize",
        "methods",
        "revalidate",
        "stale_if_error",
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
        cache_authorized: bool = True,
        revalidate: bool = True,
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
        self.revalidate = check.flag(revalidate, "revalidate")
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

    async def drain(self) -> None:
        """Wait for the background refreshes (stale-while-revalidate) on this loop."""
        await self.cache.drain()

    def __repr__(self) -> str:  # never the key secret
        store = self.cache.store
        size = f"size={len(store)}, " if isinstance(store, MemoryCacheStore) else ""
        stale = f", stale_if_error={self.stale_if_error:g}" if self.stale_if_error else ""
        stale += "" if self.cache_authorized else ", cache_authorized=False"
        stale += "" if self.revalidate else ", revalidate=False"
        return (
            f"CacheLayer({size}ttl={self.ttl:g}, maxsize={self.maxsize}{stale}, "
            f"store={type(store).__name__})"
        )


def _body_limits(inner: object) -> tuple[int | None, int | None]:
    """The body limits of the stack under a cache layer: the innermost parse layer's
    ``max_response_bytes`` (it sets the call's limit) and the transport's own."""
    parse_limit = transport_limit = None
    node: object = inner
    for _ in range(64):  # a stack is a chain through ``inner``
        config_limit = getattr(getattr(node, "config", None), "max_response_bytes", None)
        if isinstance(config_limit, int):
            parse_limit = config_limit
        own = getattr(node, "max_response_bytes", None)
        if isinstance(own, int):
            transport_limit = own
        node = getattr(node, "inner", None) or getattr(node, "_inner", None)
        if node is None:
            break
    return parse_limit, transport_limit


def _variant(key: str, vary_digest: str) -> str:
    return f"{key}|vary:{vary_digest}"


class CacheService:
    """Service made by :class:`CacheLayer`: the layer's settings, its :class:`SharedCache`."""

    __slots__ = (
        "_get_nowait",
        "_parse_limit",
        "_replace",
        "_transport_limit",
        "cache",
        "config",
        "inner",
    )

    def __init__(self, inner: Service, config: CacheLayer) -> None:
        self.inner = inner
        self.config = config
        self.cache = config.cache
        store = self.cache.store
        # An in-memory store answers without awaiting: saves a coroutine per hit.
        self._get_nowait = store.get_nowait if isinstance(store, SyncCacheStore) else None
        # A shared store's compare-and-set: a late 304 does not overwrite a newer entry.
        self._replace = store.replace if isinstance(store, ReplacingCacheStore) else None
        # The body limit of the stack below: an entry another stack stored may be larger.
        self._parse_limit, self._transport_limit = _body_limits(inner)

    async def __call__(self, request: Request) -> Response:
        config = self.config
        mode = request.extensions.get(CACHE_MODE)
        if request.method not in config.methods:
            emit(request, "cache.skip", reason=f"method {request.method}")
            return await self.inner(request)
        if mode == BYPASS:
            emit(request, "cache.skip", reason="bypass")
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
        limit = self._limit(request)
        if entry is not None and limit is not None and len(entry.content) > limit:
            # stored by a stack with a larger limit: this stack's transport would refuse it
            entry, reason = None, "larger than max_response_bytes"
        revalidate: CacheEntry | None = None
        if entry is not None:
            now = cache.clock.now()
            if mode == REFRESH:
                reason = "refresh"
            else:
                fresh = entry.is_fresh(now)
                wants_fresh = request_wants_fresh(request)
                if fresh and not wants_fresh:
                    emit(request, "cache.hit", age=entry.age(now))
                    return entry.to_response(request, now=now)
                if not fresh and not wants_fresh and entry.serves_while_revalidating(now):
                    return self._serve_while_revalidating(request, key, entry, scheme, now)
                reason = "no-cache" if fresh else "expired"
                revalidate = self._validator(request, entry)
        if revalidate is None:
            emit(request, "cache.miss", reason=reason)
        else:
            emit(request, "cache.miss", reason=reason, revalidate=True)
        outcome, shared = await cache.flights.do(
            key, lambda: self._fetch(request, key, entry, scheme, revalidate)
        )
        if not shared:
            return outcome.response
        if (
            outcome.entry is None
            or not outcome.entry.matches(request, scheme)
            or (limit is not None and len(outcome.entry.content) > limit)
        ):
            # Not shareable (no-store, private, Vary differs, over this stack's body
            # limit...): call upstream ourselves.
            return (await self._fetch(request, key, entry, scheme, revalidate)).response
        now = cache.clock.now()
        if outcome.stale:
            emit(request, "cache.stale", age=outcome.entry.age(now), shared=True)
        return outcome.entry.to_response(
            request, from_cache=outcome.stale or outcome.cached, stale=outcome.stale, now=now
        )

    def _limit(self, request: Request) -> int | None:
        """The most bytes of body this call's stack accepts (None: unknown): a parse
        layer's ``max_response_bytes``, else the call's
        ``extensions["max_response_bytes"]``, else the transport's."""
        if self._parse_limit is not None:
            return self._parse_limit
        limit = request.extensions.get("max_response_bytes", self._transport_limit)
        return limit if isinstance(limit, int) else None

    def _validator(self, request: Request, entry: CacheEntry) -> CacheEntry | None:
        """``entry`` if the call may revalidate it: it has a validator, revalidation is
        on, and the caller did not make the request conditional itself."""
        if not self.config.revalidate or not entry.revalidatable:
            return None
        if request.method not in _CONDITIONAL_METHODS:
            return None  # RFC 9110 §13.1.2: on other methods a validator is a precondition
        headers = request.headers
        if "if-none-match" in headers or "if-modified-since" in headers:
            return None  # the caller's own conditional request: its 304 is the caller's
        return entry

    def _serve_while_revalidating(
        self, request: Request, key: str, entry: CacheEntry, scheme: KeyScheme, now: float
    ) -> Response:
        """stale-while-revalidate: answer with the stale entry now, refresh it once."""
        # one refresh per variant (Vary): a refresh of another variant does not renew this one
        task_key = _variant(key, entry.vary_digest) if entry.vary else key
        started = self.cache.refresh_in_background(
            task_key, lambda: self._refresh(_detached(request), key, entry, scheme)
        )
        emit(
            request,
            "cache.stale",
            age=entry.age(now),
            reason="stale-while-revalidate",
            refreshing=started,
        )
        return entry.to_response(request, stale=True, now=now)

    async def _refresh(
        self, request: Request, key: str, entry: CacheEntry, scheme: KeyScheme
    ) -> None:
        """The background call of stale-while-revalidate (joins a call in flight)."""
        revalidate = self._validator(request, entry)
        try:
            outcome, shared = await self.cache.flights.do(
                key, lambda: self._fetch(request, key, entry, scheme, revalidate)
            )
            if shared and outcome.entry is not None and not outcome.entry.matches(request, scheme):
                # joined the call of another variant (Vary): refresh this one
                await self._fetch(request, key, entry, scheme, revalidate)
        except Exception as exc:
            logger.warning(
                "background cache refresh of %s failed (%s); the stale entry stays until "
                "its stale-while-revalidate window ends",
                request.endpoint or "a call",
                type(exc).__name__,
            )

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
        self,
        request: Request,
        key: str,
        fallback: CacheEntry | None,
        scheme: KeyScheme,
        revalidate: CacheEntry | None = None,
    ) -> Fetched:
        """Call upstream (conditionally when ``revalidate`` is given); store what may be
        stored; on failure serve ``fallback`` stale if it may be."""
        config, cache = self.config, self.cache
        generation = cache.generation(request.endpoint)
        sent = request if revalidate is None else _conditional(request, revalidate)
        try:
            response = await self.inner(sent)
        except LaminaError as exc:
            if (
                revalidate is not None
                and isinstance(exc, HTTPStatusError)
                and exc.status_code == 304  # a parse layer inside refused the 304
            ):
                answer = exc.response or Response(304, request=sent)
                answer.attempts = exc.attempts or answer.attempts
                if not _selects(revalidate, answer.headers):
                    return await self._refetch(request, key, fallback, scheme)
                return await self._revalidated(request, key, revalidate, answer, scheme, generation)
            if not serves_stale(exc) or not self._stale_ok(fallback):
                raise
            assert fallback is not None
            now = cache.clock.now()
            emit(request, "cache.stale", age=fallback.age(now), error=type(exc).__name__)
            return Fetched(fallback.to_response(request, stale=True, now=now), fallback, stale=True)
        status = response.status_code
        if revalidate is not None and status == 304:
            if not _selects(revalidate, response.headers):
                return await self._refetch(request, key, fallback, scheme)
            return await self._revalidated(request, key, revalidate, response, scheme, generation)
        if serves_stale_status(status) and self._stale_ok(fallback):
            assert fallback is not None
            now = cache.clock.now()
            emit(request, "cache.stale", age=fallback.age(now), error=f"HTTP {status}")
            return Fetched(fallback.to_response(request, stale=True, now=now), fallback, stale=True)
        decision = store_decision(
            request,
            response,
            ttl=config.ttl,
            cache_authorized=config.cache_authorized,
            identified=bool(scheme.identity(request)),
        )
        if isinstance(decision, str):
            emit(request, "cache.skip", reason=decision)
            return Fetched(response, None)
        entry = self._entry(request, response, response.value, decision, scheme)
        if entry is None:
            return Fetched(response, None)
        await self._store(request, key, entry, generation, scheme)
        return Fetched(response, entry)

    async def _refetch(
        self, request: Request, key: str, fallback: CacheEntry | None, scheme: KeyScheme
    ) -> Fetched:
        """A 304 named another representation than the stored one: ask without validators."""
        emit(request, "cache.miss", reason="the 304 names another representation")
        return await self._fetch(request, key, fallback, scheme)

    def _stale_ok(self, fallback: CacheEntry | None) -> bool:
        """True when ``fallback`` may stand in for a failed call now (stale-if-error)."""
        if fallback is None:
            return False
        if fallback.stale_for <= 0 and self.config.stale_if_error is None:
            return False
        return fallback.is_usable_stale(self.cache.clock.now())

    async def _revalidated(
        self,
        request: Request,
        key: str,
        stored: CacheEntry,
        answer: Response,
        scheme: KeyScheme,
        generation: tuple[int, int],
    ) -> Fetched:
        """A 304 to a conditional request: serve the stored body, its headers updated
        from the 304 and its freshness renewed (RFC 9111 §4.3.4)."""
        config, cache = self.config, self.cache
        now = cache.clock.now()
        emit(request, "cache.revalidated", age=stored.age(now), status=304)
        headers = _updated(stored.headers, answer.headers)
        merged = Response(stored.status_code, headers=headers, request=request)
        decision = store_decision(
            request,
            merged,
            ttl=config.ttl,
            cache_authorized=config.cache_authorized,
            identified=bool(scheme.identity(request)),
        )
        if isinstance(decision, str):  # the 304 now forbids storing: serve it, drop it
            emit(request, "cache.skip", reason=decision)
            await self._drop(request, key, stored)
            response = stored.to_response(request, attempts=answer.attempts)
            response.headers = headers
            return Fetched(response, None, cached=True)
        if (vary_names(merged) or ()) != stored.vary:  # Vary changed: a variant of its own
            merged.content = stored.content  # the 304 has no body: the stored one stands
            entry = self._entry(request, merged, stored.value, decision, scheme)
            if entry is None:
                return Fetched(stored.to_response(request, attempts=answer.attempts), None)
        else:
            entry = stored.renewed(
                headers=_kept(headers),
                stored_at=now,
                fresh_for=decision.ttl,
                stale_for=self._stale_for(decision),
                swr_for=decision.stale_while_revalidate,
            )
        await self._store(request, key, entry, generation, scheme, replaces=stored)
        response = entry.to_response(request, attempts=answer.attempts)
        response.headers = headers  # this caller's own 304 fields (Set-Cookie) included
        return Fetched(response, entry, cached=True)

    async def _drop(self, request: Request, key: str, stored: CacheEntry) -> None:
        """Remove ``stored`` (a 304 forbids keeping it) from the keys it may be under: the
        key, and its variant's own key (Vary) - with a compare-and-set store only where it
        is still the entry there (the key may hold another variant, or a newer entry)."""
        keys = [key, _variant(key, stored.vary_digest)] if stored.vary else [key]
        try:
            if self._replace is None:
                store = self.cache.store
                if stored.vary:  # the key only if it holds this variant
                    current = await store.get(key)
                    if current is None or current.vary_digest != stored.vary_digest:
                        keys.remove(key)
                for where in keys:
                    await store.delete(where)
                return
            removed = False
            for where in keys:
                removed = await self._replace(where, stored, 0, stored) or removed
            if not removed:
                # not what it revalidated: another writer stored a newer entry since
                emit(request, "cache.skip", reason="a newer entry was stored meanwhile")
        except Exception:
            logger.warning("cache store delete failed", exc_info=True)

    def _stale_for(self, decision: Storable) -> float:
        """How long past its lifetime an entry may stand in for a failure (the part of
        the layer's ``stale_if_error`` a response already stale on arrival used up,
        gone)."""
        if not decision.stale_ok:
            return 0.0
        own = max(0.0, (self.config.stale_if_error or 0.0) - decision.overdue)
        return max(own, decision.stale_if_error)

    def _entry(
        self,
        request: Request,
        response: Response,
        value: object,
        decision: Storable,
        scheme: KeyScheme,
    ) -> CacheEntry | None:
        names = vary_names(response) or ()
        stale_for = self._stale_for(decision)
        try:
            return CacheEntry(
                status_code=response.status_code,
                headers=_kept(response.headers),
                content=response.content,
                value=value,
                namespace=request.endpoint,
                stored_at=self.cache.clock.now(),
                fresh_for=decision.ttl,
                stale_for=stale_for,
                swr_for=decision.stale_while_revalidate,
                vary=names,
                vary_digest=scheme.vary_digest(request, names),
            )
        except Exception:
            logger.warning("response value cannot be copied; not cached", exc_info=True)
            emit(request, "cache.skip", reason="the value cannot be copied")
            return None

    async def _store(
        self,
        request: Request,
        key: str,
        entry: CacheEntry,
        generation: tuple[int, int],
        scheme: KeyScheme,
        replaces: CacheEntry | None = None,
    ) -> None:
        """Store ``entry`` under ``key``; ``replaces``: the entry it revalidated, which a
        shared store replaces only if no newer one was stored meanwhile."""
        cache = self.cache
        if cache.generation(request.endpoint) != generation:
            emit(request, "cache.skip", reason="invalidated while the call was in flight")
            return
        keep = max(entry.stale_for, entry.swr_for)
        if self.config.revalidate and entry.revalidatable:
            keep = max(keep, self.config.ttl)  # kept to be revalidated once stale
        ttl = entry.fresh_for + keep
        keys = [key]
        if any(name in scheme.ignored for name in entry.vary):
            # Varies on a header the key leaves out: keep this variant under its
            # own key too, so requests alternating between variants all hit.
            keys.append(_variant(key, entry.vary_digest))
        replace = self._replace if replaces is not None else None
        try:
            if replace is None:
                for where in keys:
                    await cache.store.set(where, entry, ttl)
                return
            assert replaces is not None
            stored = False
            for where in keys:  # each key may hold another version (another variant)
                stored = await replace(where, entry, ttl, replaces) or stored
            if not stored:
                emit(request, "cache.skip", reason="a newer entry was stored meanwhile")
        except Exception:
            logger.warning("cache store set failed; response not cached", exc_info=True)
            emit(request, "cache.skip", reason="the store failed")

    def __repr__(self) -> str:
        return f"<CacheService {self.config!r} -> {self.inner!r}>"


#: Header fields a 304 does not update in a stored response (they describe the 304's
#: own framing, not the stored representation).
_NOT_UPDATED = frozenset(
    {
        "connection",
        "content-encoding",
        "content-length",
        "content-range",
        "content-type",
        "transfer-encoding",
    }
)


#: Methods whose cached responses are revalidated with If-None-Match/If-Modified-Since.
_CONDITIONAL_METHODS = frozenset({"GET", "HEAD"})


def _opaque_tag(etag: str) -> str:
    etag = etag.strip()
    return etag[2:] if etag.startswith("W/") else etag


def _selects(stored: CacheEntry, fresh: Headers) -> bool:
    """True when a 304's validators select ``stored`` for update (RFC 9111 §4.3.4): its
    ``ETag`` (compared weakly), or without ETags its ``Last-Modified``, names the stored
    representation. A 304 without validators selects it."""
    etag, stored_etag = fresh.get("etag"), stored.etag
    if etag is not None and stored_etag is not None:
        return _opaque_tag(etag) == _opaque_tag(stored_etag)
    modified, stored_modified = fresh.get("last-modified"), stored.last_modified
    if etag is None and stored_etag is None and modified and stored_modified:
        try:
            return parsedate_to_datetime(modified) == parsedate_to_datetime(stored_modified)
        except (TypeError, ValueError, IndexError):
            return modified.strip() == stored_modified.strip()
    return True


def _kept(headers: Headers) -> Headers:
    """``headers`` as an entry keeps them: without ``Set-Cookie`` and other secret
    fields, which were meant for the one caller that got the response."""
    if not any(is_secret_header(name) for name in headers):
        return headers
    return Headers([(k, v) for k, v in headers.multi_items() if not is_secret_header(k)])


def _updated(stored: Headers, fresh: Headers) -> Headers:
    """The stored headers with every field the 304 carries replaced by its lines. The
    stored ``Age`` is dropped: the entry's age starts again from the 304's (RFC 9111
    §4.2.3; none: the origin validated it now)."""
    names = {name.lower() for name, _ in fresh.multi_items()} - _NOT_UPDATED
    names.add("age")
    kept = [(k, v) for k, v in stored.multi_items() if k.lower() not in names]
    return Headers(kept + [(k, v) for k, v in fresh.multi_items() if k.lower() in names])


def _conditional(request: Request, entry: CacheEntry) -> Request:
    """``request`` asking "changed since?" with the entry's validators."""
    updates: dict[str, str] = {}
    etag, modified = entry.etag, entry.last_modified
    if etag is not None:
        updates["If-None-Match"] = etag
    if modified is not None:
        updates["If-Modified-Since"] = modified
    return request.replace(headers=request.headers.copy_with(updates))


def _detached(request: Request) -> Request:
    """A copy for a background call: no deadline (the caller has its answer) and no
    listeners (the call's span and report are done)."""
    copy = request.replace(deadline=None)
    extensions = dict(request.extensions)
    extensions.pop(EVENTS_KEY, None)
    extensions.pop(ATTEMPTS_KEY, None)
    copy.extensions = extensions
    return copy


Cache = CacheService  # deprecated: the name before issue 15, kept for imports
