"""What may be stored, for how long, and when it may be served (RFC 9111, RFC 5861).

The cache is a *shared* cache in RFC 9111's sense (one store serves every
caller of a process, or of many processes with a network store), with one
twist: every key carries a keyed digest of the caller's identity (every
request header but a documented set, and the URL's credentials), so an entry
is only ever served to a request that identifies the same caller.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from ..._core import Request, Response
from ..._errors import (
    CircuitOpenError,
    ConcurrencyLimitExceeded,
    HTTPStatusError,
    RateLimitExceeded,
    TimeoutError,
    TransportError,
)
from ..._headers import Headers
from .keys import identity_digest

__all__ = [
    "DELTA_SECONDS_MAX",
    "Storable",
    "delta_seconds",
    "has_validator",
    "is_http_date",
    "parse_cache_control",
    "request_directives",
    "request_wants_fresh",
    "serves_stale",
    "serves_stale_status",
    "storable",
    "store_decision",
    "vary_names",
]

Directives = dict[str, str | None]


def parse_cache_control(headers: Headers) -> Directives:
    """Cache-Control directives, names lower-cased, quoted values unquoted; a directive
    given more than once keeps its first value (RFC 9111 §4.2.1)."""
    directives: Directives = {}
    for line in headers.get_list("cache-control"):
        for part in line.split(","):
            name, sep, value = part.strip().partition("=")
            name = name.strip().lower()
            if name and name not in directives:
                directives[name] = value.strip().strip('"') if sep else None
    return directives


def request_directives(request: Request) -> Directives:
    """The request's own Cache-Control (``no-store``, ``no-cache``, ``max-age=0``)."""
    return parse_cache_control(request.headers) if request.headers else {}


def request_wants_fresh(request: Request) -> bool:
    """True when the caller's Cache-Control says ``no-cache`` or ``max-age=0``."""
    if "cache-control" not in request.headers:
        return False
    directives = request_directives(request)
    return "no-cache" in directives or directives.get("max-age") == "0"


DELTA_SECONDS_MAX = 2**31
"""The greatest delta-seconds a cache holds: a larger value is this (RFC 9111 §1.2.2)."""


def delta_seconds(value: str | None) -> int | None:
    """A delta-seconds value (RFC 9111 §1.2.2): a whole number of seconds in ASCII digits,
    at most :data:`DELTA_SECONDS_MAX` (a larger one, even of thousands of digits, is that);
    None when ``value`` is absent or not one (``-5``, ``+5``, ``5.5``). Of a list (``Age: 5,
    6``, or two ``Age`` lines joined), the first member counts (§5.1)."""
    if value is None:
        return None
    value = value.partition(",")[0].strip()
    if not (value.isascii() and value.isdigit()):
        return None
    if len(value) > 10:  # more than DELTA_SECONDS_MAX: not worth converting
        return DELTA_SECONDS_MAX
    return min(int(value), DELTA_SECONDS_MAX)


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    seconds = delta_seconds(value)
    # RFC 9111 §4.2.1: an invalid lifetime means already stale
    return 0.0 if seconds is None else float(seconds)


@dataclass(frozen=True, slots=True)
class Storable:
    """A store decision: fresh for ``ttl`` seconds (0: stored only to be revalidated);
    ``stale_ok`` if it may be served stale at all; ``stale_if_error`` and
    ``stale_while_revalidate``: the response's own RFC 5861 windows (seconds, 0 if
    absent or not allowed), counted from when it went stale; ``validated``: it has an
    ``ETag`` or ``Last-Modified``; ``overdue``: seconds it was already stale when it
    arrived (its ``Age`` past its lifetime: a CDN kept it), which the windows, the
    layer's ``stale_if_error`` too, have already used up."""

    ttl: float
    stale_ok: bool
    stale_if_error: float = 0.0
    stale_while_revalidate: float = 0.0
    validated: bool = False
    overdue: float = 0.0


def has_validator(headers: Headers) -> bool:
    """True when a stored response can be revalidated: it has an ``ETag``, or a
    ``Last-Modified`` that is an HTTP-date (RFC 9110 §8.8.2: one that is not is no
    validator, and must not go back as ``If-Modified-Since``)."""
    return "etag" in headers or is_http_date(headers.get("last-modified"))


@functools.lru_cache(maxsize=256)  # a service sees few distinct Last-Modified values at once
def is_http_date(value: str | None) -> bool:
    """True when ``value`` parses as an HTTP-date (IMF-fixdate, or the obsolete RFC 850 and
    asctime forms, RFC 9110 §5.6.7)."""
    if not value:
        return False
    try:
        parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    return True


def vary_names(response: Response) -> tuple[str, ...] | None:
    """The request header names the response varies on, sorted; None for ``Vary: *``."""
    names: set[str] = set()
    for line in response.headers.get_list("vary"):
        for name in line.split(","):
            name = name.strip().lower()
            if name == "*":
                return None
            if name:
                names.add(name)
    return tuple(sorted(names))


def _lifetime(cc: Directives, headers: Headers) -> float | None:
    """The server's freshness lifetime minus the response's current Age, if it gave one."""
    lifetime = _seconds(cc["s-maxage"]) if "s-maxage" in cc else None
    if lifetime is None and "max-age" in cc:
        lifetime = _seconds(cc["max-age"])
    if lifetime is None and "expires" in headers:
        try:
            expires = parsedate_to_datetime(headers["expires"])
            date = (
                parsedate_to_datetime(headers["date"]) if "date" in headers else datetime.now(UTC)
            )
            lifetime = (expires - date).total_seconds()
        except (TypeError, ValueError, IndexError, OverflowError):
            lifetime = 0.0
    if lifetime is None:
        return None
    # RFC 9111 §5.1: an Age that is not a delta-seconds is ignored
    return lifetime - (delta_seconds(headers.get("age")) or 0)


def storable(
    request: Request,
    response: Response,
    *,
    ttl: float,
    cache_authorized: bool,
    identified: bool | None = None,
) -> Storable | None:
    """Decide whether ``response`` to ``request`` may be stored, and for how long
    (None: not stored; :func:`store_decision` also says why)."""
    decision = store_decision(
        request, response, ttl=ttl, cache_authorized=cache_authorized, identified=identified
    )
    return decision if isinstance(decision, Storable) else None


def store_decision(
    request: Request,
    response: Response,
    *,
    ttl: float,
    cache_authorized: bool = True,
    identified: bool | None = None,
) -> Storable | str:
    """A :class:`Storable`, or the reason (short text) the response is not stored.

    Not stored: a status outside 2xx (or 206); ``no-store`` on the request or the
    response; ``Vary: *``; ``private`` unless ``cache_authorized`` and the request
    identifies its caller (``identified``: its identity digest is not empty;
    computed with the default key scheme if None); a response to a request with
    ``Authorization`` when ``cache_authorized`` is False, unless it says
    ``public``, ``s-maxage`` or ``must-revalidate`` (RFC 9111 §3.5). With
    ``cache_authorized`` (the default) such a response is stored under its
    caller's key: the key covers the credentials, so it is never served to another
    caller.

    The lifetime is the smaller of the configured ``ttl`` and the server's
    ``s-maxage``/``max-age``/``Expires`` (minus ``Age``); ``no-cache`` makes it 0. A
    lifetime of 0 is stored only when the response has a validator (``ETag`` or
    ``Last-Modified``), to be revalidated before every use. ``must-revalidate``,
    ``proxy-revalidate``, ``s-maxage`` and ``no-cache`` forbid serving the entry stale.
    """
    status = response.status_code
    if not 200 <= status < 300 or status == 206:
        return f"status {status}"
    if "no-store" in request_directives(request):
        return "no-store (request)"
    cc = parse_cache_control(response.headers)
    if "no-store" in cc:
        return "no-store (response)"
    if vary_names(response) is None:
        return "Vary: *"
    if "private" in cc:
        if not cache_authorized:
            return "private (cache_authorized=False)"
        if not _identified(request, identified):
            return "private (the request does not identify its caller)"
    if (
        not cache_authorized
        and "authorization" in request.headers
        and not ("public" in cc or "s-maxage" in cc or "must-revalidate" in cc)
    ):
        return "Authorization (cache_authorized=False)"
    validated = has_validator(response.headers)
    lifetime = 0.0 if "no-cache" in cc else _lifetime(cc, response.headers)
    fresh = ttl if lifetime is None else max(0.0, min(ttl, lifetime))
    if fresh <= 0 and not validated:
        return "no-cache without a validator" if "no-cache" in cc else "lifetime 0"
    # RFC 9111 §4.2.4: these forbid serving the response stale (no-cache: never unvalidated)
    stale_ok = not any(name in cc for name in _NEVER_STALE)
    # RFC 5861: the windows run from when it went stale, maybe before it arrived
    overdue = -lifetime if lifetime is not None and lifetime < 0 else 0.0
    return Storable(
        ttl=fresh,
        stale_ok=stale_ok,
        stale_if_error=_window(cc, "stale-if-error", overdue) if stale_ok else 0.0,
        stale_while_revalidate=(
            _window(cc, "stale-while-revalidate", overdue) if stale_ok else 0.0
        ),
        validated=validated,
        overdue=overdue,
    )


def _window(cc: Directives, name: str, overdue: float) -> float:
    """What is left of an RFC 5861 window once ``overdue`` seconds of it are gone."""
    return max(0.0, (_seconds(cc.get(name)) or 0.0) - overdue)


_NEVER_STALE = ("must-revalidate", "proxy-revalidate", "s-maxage", "no-cache")


def _identified(request: Request, identified: bool | None) -> bool:
    return bool(identity_digest(request)) if identified is None else identified


def serves_stale_status(status: int) -> bool:
    """True for a response status that stale-if-error covers: 5xx and 429."""
    return status >= 500 or status == 429


def serves_stale(error: BaseException) -> bool:
    """True for failures that stale-if-error covers (RFC 5861: the origin is unavailable).

    Transport failures, timeouts, an open breaker, local rate or concurrency
    limits, and HTTP 429 or 5xx. Not a 4xx (the resource is gone or the call
    is wrong), a parse error or a configuration error.
    """
    if isinstance(error, HTTPStatusError):
        return error.status_code >= 500 or error.status_code == 429
    return isinstance(error, _STALE_ERRORS)


_STALE_ERRORS = (
    TransportError,
    TimeoutError,
    CircuitOpenError,
    RateLimitExceeded,
    ConcurrencyLimitExceeded,
)
