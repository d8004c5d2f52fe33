"""What the services of one or more cache layers share: :class:`SharedCache`."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
import weakref
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from ..._clock import Clock, default_clock
from ..._core import Request, Response
from ..._errors import BackendUnavailable, ConfigError
from .entry import CacheEntry
from .flight import SingleFlight
from .keys import KeyFunction, KeyScheme, check_header_options, key_secret, process_secret
from .store import CacheStore, MemoryCacheStore, SharedSecretStore, SyncCacheStore

__all__ = ["SECRET_REFRESH", "SECRET_RETRY", "Fetched", "SharedCache"]

logger = logging.getLogger("lamina.cache")

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


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a single-flight leader hands its followers: the entry (None if not shareable);
    ``stale``: served stale (stale-if-error); ``cached``: the body is the stored one
    (revalidated by a 304)."""

    response: Response
    entry: CacheEntry | None
    stale: bool = False
    cached: bool = False


class SharedCache:
    """One cache: its store, how its keys are made, the calls in flight and invalidation.

    Every :class:`~lamina.layers.cache.CacheLayer` handed the same ``SharedCache``
    (``CacheLayer(cache=...)``) reads and writes the same entries, and concurrent
    identical misses through any of them make one upstream call. A layer built without
    one makes its own from the same options: ``store`` (a
    :class:`~lamina.layers.cache.CacheStore`; default a
    :class:`~lamina.layers.cache.MemoryCacheStore` of ``maxsize`` entries), ``key``,
    ``ignore_headers``, ``include_headers``, ``key_secret`` and ``clock`` (see
    :class:`~lamina.layers.cache.CacheLayer`).
    """

    __slots__ = (
        "_background",
        "_epoch",
        "_generations",
        "_opaque",
        "_scheme",
        "_secret_flight",
        "clock",
        "flights",
        "ignore_headers",
        "include_headers",
        "key",
        "store",
    )

    def __init__(
        self,
        store: CacheStore | None = None,
        *,
        maxsize: int = 1024,
        key: KeyFunction | None = None,
        ignore_headers: Iterable[str] = (),
        include_headers: Iterable[str] = (),
        key_secret: str | bytes | None = None,
        clock: Clock | None = None,
    ) -> None:
        if key is not None and not callable(key):
            raise ConfigError("must be callable: key(request) -> str", field="key")
        self.key: KeyFunction | None = key
        """The user's key function (None: the default key)."""
        self.ignore_headers, self.include_headers = check_header_options(
            ignore_headers, include_headers
        )
        secret = _key_secret(key_secret)
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("must have now() and sleep()", field="clock")
        self.clock = clock or default_clock
        if store is not None and not isinstance(store, CacheStore):
            raise ConfigError("must implement get/set/delete/clear", field="store")
        # not `store or ...`: an empty MemoryCacheStore is falsy (len 0) and was silently replaced
        self.store: CacheStore = (
            store if store is not None else MemoryCacheStore(maxsize, clock=self.clock)
        )
        # Keys leave the process (a network store) only as "<endpoint>|#<hmac>".
        self._opaque = not isinstance(self.store, MemoryCacheStore)
        self._scheme: KeyScheme | None = None
        if secret is not None or not isinstance(self.store, SharedSecretStore):
            if secret is None and not isinstance(self.store, SyncCacheStore):
                logger.info(
                    "%s: no cache key secret configured; keys use a per-process key, so "
                    "other processes will not share entries (set LAMINA_CACHE_KEY_SECRET)",
                    type(self.store).__name__,
                )
            self._scheme = self._new_scheme(secret or process_secret(), None)
        self.flights: SingleFlight[Fetched] = SingleFlight()
        """The upstream calls in flight, by key (single-flight)."""
        self._secret_flight: SingleFlight[KeyScheme] = SingleFlight()
        self._generations: dict[str | None, int] = {}
        self._epoch = 0
        self._background: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Task[Any]]
        ] = weakref.WeakKeyDictionary()

    # -- background refreshes (stale-while-revalidate) ---------------------------------
    def _refreshes(self) -> dict[str, asyncio.Task[Any]]:
        loop = asyncio.get_running_loop()
        tasks = self._background.get(loop)
        if tasks is None:
            tasks = self._background[loop] = {}
        return tasks

    def refresh_in_background(
        self, key: str, refresh: Callable[[], Coroutine[Any, Any, object]]
    ) -> bool:
        """Start ``refresh()`` in a task unless one for ``key`` is already running on this
        event loop; True if this call started it. The task runs in an empty context (none
        of the caller's context variables) and is forgotten when it ends."""
        tasks = self._refreshes()
        if key in tasks:
            return False
        # A context of its own: nothing of the caller's call (a TimeoutLayer's attempt expiry,
        # the current span) reaches a call that outlives it.
        task = asyncio.get_running_loop().create_task(
            refresh(), name="lamina.cache.refresh", context=contextvars.Context()
        )
        tasks[key] = task

        def done(finished: asyncio.Task[Any]) -> None:
            if tasks.get(key) is finished:
                del tasks[key]

        task.add_done_callback(done)
        return True

    def refreshing(self) -> int:
        """Background refreshes running on this event loop."""
        return len(self._refreshes())

    async def drain(self) -> None:
        """Wait for the background refreshes running on this event loop to end."""
        while True:
            tasks = list(self._refreshes().values())
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- keys ------------------------------------------------------------------------
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

    def scheme_nowait(self) -> KeyScheme | None:
        """The key scheme when it needs no I/O (a secret of this process), else None."""
        scheme = self._scheme
        return scheme if scheme is not None and scheme.refresh_at is None else None

    async def scheme(self, request: Request) -> KeyScheme:
        """The key scheme for ``request``: a shared store's secret is fetched (and renewed)
        when due."""
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

    def key_of(self, scheme: KeyScheme, request: Request) -> str:
        """The store key of ``request`` under ``scheme``."""
        key = scheme.key(request) if self.key is None else scheme.scoped(self.key, request)
        return scheme.opaque(request.endpoint, key) if self._opaque else key

    # -- invalidation ------------------------------------------------------------------
    def generation(self, namespace: str | None) -> tuple[int, int]:
        """Changes with every invalidation of ``namespace`` (or of everything): a call
        that saw another generation when it started must not store what it fetched."""
        return self._epoch, self._generations.get(namespace, 0)

    def _forget(self, namespace: str | None) -> None:
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
        size = f"size={len(self.store)}, " if isinstance(self.store, MemoryCacheStore) else ""
        return f"SharedCache({size}store={type(self.store).__name__})"


def _warn_key_beside_data(store: object) -> None:
    global _warned_key_beside_data
    if not _warned_key_beside_data:
        _warned_key_beside_data = True
        logger.warning(KEY_BESIDE_DATA, type(store).__name__)


def _key_secret(value: object) -> bytes | None:
    if value is not None and not isinstance(value, str | bytes):
        raise ConfigError("must be a str or bytes secret", field="key_secret")
    return key_secret(value)
