"""A stored response, and the private copy of its parsed value."""

from __future__ import annotations

import copy
import pickle
from typing import TYPE_CHECKING, Any

from ..._core import Request, Response
from ..._headers import Headers
from .policy import DELTA_SECONDS_MAX, delta_seconds, has_validator, is_http_date

if TYPE_CHECKING:
    from .keys import KeyScheme

__all__ = ["CacheEntry"]

_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})


class _Snapshot:
    """A private copy of a parsed value that hands out a fresh copy on every read.

    JSON-like values are pickled once when stored and unpickled on each read
    (cheaper than ``copy.deepcopy``: see ``docs/layers/cache.md``); immutable
    scalars are shared; anything pickle refuses is deep-copied.
    """

    __slots__ = ("_blob", "_obj")

    def __init__(self, value: Any) -> None:
        self._blob: bytes | None = None
        self._obj: Any = None
        if type(value) in _ATOMS:
            self._obj = value
            return
        try:
            self._blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            self._obj = copy.deepcopy(value)

    def copy(self) -> Any:
        if self._blob is not None:
            return pickle.loads(self._blob)
        if type(self._obj) in _ATOMS:
            return self._obj
        return copy.deepcopy(self._obj)


class CacheEntry:
    """One stored response; treat it as immutable.

    Times are on the cache layer's clock: the entry is fresh until
    ``stored_at + fresh_for``; it may be served stale on error until ``stale_for``
    seconds after that (stale-if-error), and served stale while a background
    refresh runs until ``swr_for`` seconds after that (stale-while-revalidate).
    :attr:`etag` and :attr:`last_modified` are its validators, sent back as
    ``If-None-Match``/``If-Modified-Since`` to revalidate it. ``vary`` lists the
    request header names the response varies on; ``vary_digest`` is the cache's keyed digest
    (:meth:`KeyScheme.vary_digest`) of the storing request's values for them
    (values can be secrets or tenant ids, so they are never kept).
    Reading :attr:`value` returns a new copy every time.
    """

    __slots__ = (
        "_snapshot",
        "_unaged",
        "content",
        "fresh_for",
        "headers",
        "namespace",
        "stale_for",
        "stamp",
        "status_code",
        "stored_at",
        "swr_for",
        "vary",
        "vary_digest",
    )

    def __init__(
        self,
        *,
        status_code: int,
        headers: Headers,
        content: bytes,
        value: Any,
        namespace: str | None,
        stored_at: float,
        fresh_for: float,
        stale_for: float = 0.0,
        vary: tuple[str, ...] = (),
        vary_digest: str = "",
        swr_for: float = 0.0,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self._snapshot = _Snapshot(value)
        # (headers, their lines but Age, the Age when stored): aged_headers' work, once
        self._unaged: tuple[Headers, list[tuple[str, str]], int] | None = None
        self.namespace = namespace
        self.stored_at = stored_at
        self.fresh_for = fresh_for
        self.stale_for = stale_for
        self.swr_for = swr_for
        self.vary = vary
        self.vary_digest = vary_digest
        self.stamp: str | None = None
        """A shared store's version id of this entry (set when stored or read; Redis: a
        random id), for a compare-and-set; None until then."""

    def renewed(
        self,
        *,
        headers: Headers,
        stored_at: float,
        fresh_for: float,
        stale_for: float,
        swr_for: float,
    ) -> CacheEntry:
        """A copy revalidated by a 304: new headers and times, the same body and value
        (the value's snapshot is shared, not copied again)."""
        entry = copy.copy(self)
        entry.headers = headers
        entry.stored_at = stored_at
        entry.fresh_for = fresh_for
        entry.stale_for = stale_for
        entry.swr_for = swr_for
        entry.stamp = None  # a new version: not the one read
        return entry

    @property
    def value(self) -> Any:
        """A fresh copy of the parsed value (the caller may mutate it)."""
        return self._snapshot.copy()

    def age(self, now: float) -> float:
        """Seconds since the entry was stored."""
        return now - self.stored_at

    def is_fresh(self, now: float) -> bool:
        """True while the entry may be served without asking the server."""
        return now < self.stored_at + self.fresh_for

    def is_usable_stale(self, now: float) -> bool:
        """True while the entry may stand in for a failed call (stale-if-error)."""
        return now < self.stored_at + self.fresh_for + self.stale_for

    def serves_while_revalidating(self, now: float) -> bool:
        """True while a stale entry may be served at once and refreshed in the background."""
        return now < self.stored_at + self.fresh_for + self.swr_for

    @property
    def etag(self) -> str | None:
        """The stored response's ``ETag``, if it had one."""
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        """The stored response's ``Last-Modified``, if it had one that is an HTTP-date
        (one that is not is no validator: it is never sent as ``If-Modified-Since``)."""
        value = self.headers.get("last-modified")
        return value if is_http_date(value) else None

    @property
    def revalidatable(self) -> bool:
        """True when the entry has a validator to revalidate it with: an ``ETag``, or a
        ``Last-Modified`` that is an HTTP-date."""
        return has_validator(self.headers)

    def matches(self, request: Request, scheme: KeyScheme) -> bool:
        """True when ``request`` has the same values for the Vary headers."""
        return not self.vary or scheme.vary_digest(request, self.vary) == self.vary_digest

    def aged_headers(self, now: float) -> Headers:
        """The headers with ``Age`` set to the entry's current age in whole seconds
        (RFC 9111 §4.2.3, §5.1): the ``Age`` the response had when stored (the first
        member of the first line; ignored if it is not a delta-seconds, as the freshness
        policy reads it), plus the time since; at most 2147483648 (§1.2.2)."""
        unaged = self._unaged
        if unaged is None or unaged[0] is not self.headers:  # worked out once per headers
            initial: int | None = None
            kept = []
            for name, value in self.headers.multi_items():
                if name.lower() != "age":
                    kept.append((name, value))
                elif initial is None:
                    initial = delta_seconds(value) or 0
            unaged = self._unaged = (self.headers, kept, initial or 0)
        _, kept, initial = unaged
        # whole seconds; a microsecond of slack so that float error (1.4 - 0.4 is
        # 0.9999999999999999) does not floor a whole second away
        age = initial + int(now - self.stored_at + 1e-6) if now > self.stored_at else initial
        return Headers.from_pairs([*kept, ("Age", str(min(age, DELTA_SECONDS_MAX)))])

    def to_response(
        self,
        request: Request,
        *,
        from_cache: bool = True,
        stale: bool = False,
        attempts: int = 0,
        now: float | None = None,
    ) -> Response:
        """A new Response for ``request`` with its own copy of the value; served from the
        cache (``from_cache``) with ``now`` given, its headers carry the entry's ``Age``."""
        return Response(
            self.status_code,
            headers=self.headers if now is None or not from_cache else self.aged_headers(now),
            content=self.content,
            request=request,
            value=self._snapshot.copy(),
            from_cache=from_cache,
            stale=stale,
            attempts=attempts,
        )

    def __repr__(self) -> str:
        return (
            f"<CacheEntry [{self.status_code}] namespace={self.namespace!r} "
            f"fresh_for={self.fresh_for:g}s stale_for={self.stale_for:g}s"
            f"{f' swr_for={self.swr_for:g}s' if self.swr_for else ''}>"
        )
