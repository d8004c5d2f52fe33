"""Cache keys: what makes two requests "the same", and the same caller's.

A key covers the endpoint, the method, the normalised URL, the body and the
caller's *identity*: every request header except :data:`IGNORED_HEADERS`
(names that never identify a caller), plus secret query parameters and URL
user info. Identity, body and ``Vary`` values enter keys and entries only as
HMAC-SHA256 digests under a secret key (see :class:`KeyScheme`), so a key
name shows neither a credential nor a guessable value such as a tenant id.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..._core import Request
from ..._errors import ConfigError
from ..._redact import is_secret_header, is_secret_param

__all__ = [
    "ENV_SECRET",
    "IGNORED_HEADERS",
    "KeyFunction",
    "KeyScheme",
    "cache_header_options",
    "check_header_options",
    "credentials_digest",
    "default_key",
    "header_names",
    "identity_digest",
    "key_secret",
    "process_secret",
    "scoped_key",
]

KeyFunction = Callable[[Request], str]

_DIGEST_CHARS = 32  # 128 bits of HMAC-SHA256, hex

ENV_SECRET = "LAMINA_CACHE_KEY_SECRET"
"""Environment variable holding the HMAC key for cache keys (at least 16 bytes)."""

MIN_SECRET_BYTES = 16

#: Request headers that never identify a caller, so they are left out of the
#: cache key (lower-case). Everything else is in it. docs/layers/cache.md gives
#: the reason for each; a response's ``Vary`` still applies to them.
IGNORED_HEADERS = frozenset(
    {
        # content negotiation: which representation, not who asks (``Vary`` decides)
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-datetime",
        # the client software, the same for every caller of a process
        "user-agent",
        # request directives the cache layer itself interprets
        "cache-control",
        "pragma",
        # per-request trace context (W3C, B3, Jaeger, AWS, GCP, Sentry, Datadog)
        "traceparent",
        "tracestate",
        "baggage",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "uber-trace-id",
        "x-amzn-trace-id",
        "x-cloud-trace-context",
        "sentry-trace",
        "x-datadog-trace-id",
        "x-datadog-parent-id",
        "x-datadog-sampling-priority",
        "x-datadog-origin",
        "x-datadog-tags",
        # per-request and per-operation ids
        "x-request-id",
        "request-id",
        "x-correlation-id",
        "correlation-id",
        "idempotency-key",
        # framing and connection management (hop-by-hop), derived from the body, or the time
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "date",
    }
)

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name

_PROCESS_SECRET = secrets.token_bytes(32)


def _secret_bytes(value: object, field: str) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise ConfigError("must be a str or bytes secret", field=field)
    if len(value) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"must be at least {MIN_SECRET_BYTES} bytes (e.g. secrets.token_hex(32))",
            field=field,
        )
    return value


def key_secret(value: str | bytes | None = None) -> bytes | None:
    """The HMAC key for cache keys: ``value`` if given, else ``$LAMINA_CACHE_KEY_SECRET``,
    else None. Raises :class:`ConfigError` (naming the field, never the value) for a
    secret shorter than 16 bytes."""
    if value is not None:
        return _secret_bytes(value, "key_secret")
    env = os.environ.get(ENV_SECRET)
    if env:
        return _secret_bytes(env, ENV_SECRET)
    return None


def header_names(value: object, field: str) -> frozenset[str]:
    """Validate a collection of header names; return them lower-cased."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError("must be a list of header names", field=field)
    names = list(value)
    for name in names:
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ConfigError(f"not a header name: {name!r}", field=field)
    return frozenset(n.lower() for n in names)


def check_header_options(
    ignore: object,
    include: object,
    *,
    ignore_field: str = "ignore_headers",
    include_field: str = "include_headers",
) -> tuple[frozenset[str], frozenset[str]]:
    """Validate the user's two header lists: names to add to the ignored set, and
    names to keep in the key. A name may not be in both, and a credential header
    (:func:`lamina._redact.is_secret_header`) may not be ignored."""
    ignored = header_names(ignore, ignore_field)
    included = header_names(include, include_field)
    both = sorted(ignored & included)
    if both:
        raise ConfigError(f"{both[0]!r} is in both lists", field=ignore_field)
    secret = sorted(n for n in ignored if is_secret_header(n))
    if secret:
        raise ConfigError(
            f"{secret[0]!r} carries credentials and always stays in the key", field=ignore_field
        )
    return ignored, included


def cache_header_options(value: object, field: str = "cache_headers") -> dict[str, list[str]]:
    """Validate ``{"ignore": [...], "include": [...]}`` (the orchestrator's
    ``cache_headers``); return it with sorted lower-case names."""
    if not isinstance(value, Mapping):
        raise ConfigError('must be a mapping {"ignore": [...], "include": [...]}', field=field)
    unknown = sorted(str(k) for k in value if k not in ("ignore", "include"))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (ignore, include)", field=field)
    ignored, included = check_header_options(
        value.get("ignore", ()),
        value.get("include", ()),
        ignore_field=f"{field}.ignore",
        include_field=f"{field}.include",
    )
    return {"ignore": sorted(ignored), "include": sorted(included)}


def _param_text(value: Any) -> str:
    # The same spelling httpx sends, so that equal requests get equal keys.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def _param_pairs(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if isinstance(value, list | tuple):
            pairs.extend((str(name), _param_text(v)) for v in value)
        else:
            pairs.append((str(name), _param_text(value)))
    return pairs


Pairs = tuple[tuple[str, str], ...]


@lru_cache(maxsize=4096)
def _normalize(url: str, extra: Pairs) -> tuple[str, str]:
    """``(scheme://host/path?sorted-public-query, the URL's credentials as text or "")``.

    The credentials (secret query parameters, user info) are returned as plain
    text for :class:`KeyScheme` to digest under its key; they never appear in
    the first part. Cached: an endpoint URL is normalised once, not per call.
    """
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError:  # the transport will refuse it; the whole URL goes into the identity
        return "<unparsed>", f"x:{url}\n{extra!r}"
    host = parts.netloc.rpartition("@")[2].lower()
    pairs = [*parse_qsl(parts.query, keep_blank_values=True), *extra]
    public = sorted((k, v) for k, v in pairs if not is_secret_param(k))
    found = sorted(f"q:{len(k)}:{k}={v}" for k, v in pairs if is_secret_param(k))
    if username is not None or password is not None:
        user = username or ""
        found.append(f"u:{len(user)}:{user}:{password or ''}")
    query = f"?{urlencode(public)}" if public else ""
    base = f"{parts.scheme.lower()}://{host}{parts.path or '/'}{query}"
    return base, "\n".join(found)


def _url_parts(request: Request) -> tuple[str, str]:
    extra = tuple(_param_pairs(request.params)) if request.params else ()
    return _normalize(request.url, extra)


def _field(name: str, values: list[str]) -> str:
    value = ", ".join(v.strip(" \t") for v in values)
    return f"h{name}:{len(value)}:{value}"


class KeyScheme:
    """How one cache tells requests, and callers, apart.

    ``secret`` is the HMAC-SHA256 key for every digest in keys and entries
    (at least 16 bytes). ``ignore`` adds header names to
    :data:`IGNORED_HEADERS`; ``include`` keeps names in the key even if
    ignored by default. ``refresh_at`` (a time on the layer's clock) is when
    a secret fetched from a shared store should be asked for again.

    A request's identity is the digest of all its non-ignored headers (names
    case-insensitive, repeated fields joined in order, sorted by name, values
    trimmed) plus the credentials in its URL; ``""`` when it carries none.
    Digests are cached per header set, so an endpoint's fixed headers are
    hashed once.
    """

    __slots__ = ("_identities", "_mac", "_opaques", "_skip", "ignored", "refresh_at", "secret")

    def __init__(
        self,
        secret: bytes,
        *,
        ignore: Iterable[str] = (),
        include: Iterable[str] = (),
        refresh_at: float | None = None,
    ) -> None:
        self.secret = _secret_bytes(secret, "key_secret")
        self._mac = hmac.new(self.secret, digestmod="sha256")
        self.ignored = (IGNORED_HEADERS | header_names(ignore, "ignore_headers")) - header_names(
            include, "include_headers"
        )
        self.refresh_at = refresh_at
        self._skip: dict[str, bool] = {}
        self._identities = lru_cache(maxsize=4096)(self._identity_of)
        self._opaques = lru_cache(maxsize=4096)(self._opaque_of)

    # -- digests -------------------------------------------------------------------
    def digest(self, tag: bytes, data: bytes) -> str:
        """Truncated HMAC-SHA256 of ``tag + data`` under this scheme's secret."""
        mac = self._mac.copy()  # the keyed state is prepared once: about half the cost
        mac.update(tag + data)
        return mac.hexdigest()[:_DIGEST_CHARS]

    def _ignored(self, name: str) -> bool:
        found = self._skip.get(name)
        if found is None:
            found = name.lower() in self.ignored
            if len(self._skip) < 1024:  # names are few; never grow without bound
                self._skip[name] = found
        return found

    def _identity_of(self, kept: Pairs, url_secrets: str) -> str:
        # One field per lower-case name, repeated lines joined in order, sorted by name;
        # every name and value length-prefixed, so no value can pose as another field.
        fields: dict[str, str] = {}
        for name, value in kept:
            name = name.lower()
            if name in fields:
                fields[name] += ", " + value.strip(" \t")
            else:
                fields[name] = value.strip(" \t")
        text = "".join([f"h{n}:{len(fields[n])}:{fields[n]}" for n in sorted(fields)])
        if url_secrets:
            text += f"u:{len(url_secrets)}:{url_secrets}"
        return self.digest(b"i", text.encode("utf-8", "surrogatepass"))

    def _identity(self, request: Request, url_secrets: str) -> str:
        skip = self._skip
        kept = []
        for pair in request.headers.multi_items():
            ignored = skip.get(pair[0])
            if ignored is None:
                ignored = self._ignored(pair[0])
            if not ignored:
                kept.append(pair)
        if not kept and not url_secrets:
            return ""
        return self._identities(tuple(kept), url_secrets)

    def identity(self, request: Request) -> str:
        """The digest of what may identify the caller, or ``""`` if nothing does."""
        return self._identity(request, _url_parts(request)[1])

    def body(self, request: Request) -> str:
        """The digest of the request body (JSON with sorted keys), ``"-"`` without one."""
        if request.json is not None:
            text = json.dumps(request.json, sort_keys=True, separators=(",", ":"), default=str)
            return self.digest(b"j", text.encode("utf-8", "surrogatepass"))
        if request.content:
            return self.digest(b"b", request.content)
        return "-"

    def vary_digest(self, request: Request, names: tuple[str, ...]) -> str:
        """The digest of ``request``'s values for the (lower-case) header ``names``."""
        if not names:
            return ""
        headers = request.headers
        parts = []
        for name in names:
            values = headers.get_list(name)
            parts.append(_field(name, values) if values else f"h{name}!")
        return self.digest(b"v", "".join(parts).encode("utf-8", "surrogatepass"))

    # -- keys ----------------------------------------------------------------------
    def key(self, request: Request) -> str:
        """The default key:
        ``<endpoint>|<METHOD> <scheme://host/path?sorted-public-query>|body:<hmac>|id:<hmac>``."""
        url, url_secrets = _url_parts(request)
        ident = self._identity(request, url_secrets) or "-"
        body = self.body(request)
        return f"{request.endpoint or ''}|{request.method} {url}|body:{body}|id:{ident}"

    def scoped(self, key: KeyFunction, request: Request) -> str:
        """A user key for ``request``, kept per endpoint and per caller:
        ``<endpoint>|<key(request)>|id:<hmac>``."""
        ident = self.identity(request) or "-"
        return f"{request.endpoint or ''}|{key(request)}|id:{ident}"

    def opaque(self, namespace: str | None, key: str) -> str:
        """``<namespace>|#<hmac of key>``: the form a key leaves the process in (cached)."""
        return self._opaques(namespace or "", key)

    def _opaque_of(self, namespace: str, key: str) -> str:
        return f"{namespace}|#{self.digest(b'k', key.encode('utf-8', 'surrogatepass'))}"

    def __repr__(self) -> str:  # never the secret
        return f"<KeyScheme ignoring {len(self.ignored)} header names>"


_DEFAULT: list[KeyScheme] = []


def _default_scheme() -> KeyScheme:
    if not _DEFAULT:
        _DEFAULT.append(KeyScheme(key_secret() or _PROCESS_SECRET))
    return _DEFAULT[0]


def process_secret() -> bytes:
    """This process's random HMAC key (used when no secret is configured)."""
    return _PROCESS_SECRET


def default_key(request: Request) -> str:
    """The default cache key under the process's default :class:`KeyScheme`.

    ``<endpoint>|<METHOD> scheme://host/path?sorted-public-query|body:<hmac>|id:<hmac>``
    where the query merges the URL's query with ``request.params`` (sorted),
    secret query parameters and URL user info are moved into the identity, and
    body and identity appear only as HMAC-SHA256 digests. Two callers that
    differ in any non-ignored header get different keys, and no key holds a
    header value.
    """
    return _default_scheme().key(request)


def identity_digest(request: Request) -> str:
    """The caller's identity digest (default scheme), or ``""`` when nothing identifies it."""
    return _default_scheme().identity(request)


credentials_digest = identity_digest
"""Old name of :func:`identity_digest` (it now covers every non-ignored header)."""


def scoped_key(key: KeyFunction) -> KeyFunction:
    """Wrap a user key function so its keys stay per endpoint and per caller.

    The result is ``<endpoint>|<key(request)>|id:<hmac>``: a custom key can
    choose what identifies a request, but can never make one caller's cached
    response visible to a caller that differs in any non-ignored header.
    """
    scheme = _default_scheme()

    def scoped(request: Request) -> str:
        return scheme.scoped(key, request)

    scoped.__name__ = f"scoped_{getattr(key, '__name__', 'key')}"
    return scoped
