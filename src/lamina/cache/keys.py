"""Cache keys: what makes two requests "the same", without secrets in plaintext."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .._core import Request
from .._redact import is_secret_header, is_secret_param

__all__ = ["KeyFunction", "credentials_digest", "default_key", "scoped_key"]

KeyFunction = Callable[[Request], str]

_DIGEST_CHARS = 32  # 128 bits of SHA-256, hex


def _digest(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:_DIGEST_CHARS]


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
    """``(scheme://host/path?sorted-public-query, digest of URL credentials or "")``.

    Cached: the same endpoint URL is normalised once, not on every call.
    """
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError:  # the transport will refuse it; keep the key opaque meanwhile
        return f"<unparsed {_digest(f'{url}{extra!r}')}>", ""
    host = parts.netloc.rpartition("@")[2].lower()
    pairs = [*parse_qsl(parts.query, keep_blank_values=True), *extra]
    public = sorted((k, v) for k, v in pairs if not is_secret_param(k))
    secrets = sorted(f"q:{k}={v}" for k, v in pairs if is_secret_param(k))
    if username is not None or password is not None:
        secrets.append(f"u:{username or ''}:{password or ''}")
    query = f"?{urlencode(public)}" if public else ""
    base = f"{parts.scheme.lower()}://{host}{parts.path or '/'}{query}"
    return base, _digest("\n".join(secrets)) if secrets else ""


def _url_parts(request: Request) -> tuple[str, str]:
    extra = tuple(_param_pairs(request.params)) if request.params else ()
    return _normalize(request.url, extra)


def _credentials(request: Request, url_secrets: str) -> str:
    found = [f"h:{k.lower()}={v}" for k, v in request.headers.multi_items() if is_secret_header(k)]
    if not found:
        return url_secrets
    found.sort()
    return _digest("\n".join((*found, url_secrets)))


def credentials_digest(request: Request) -> str:
    """A SHA-256 digest of the request's credentials, or ``""`` when it carries none.

    Credentials are the secret headers (Authorization, Proxy-Authorization,
    Cookie, API-key and token headers: :func:`lamina._redact.is_secret_header`),
    secret or signed query parameters and user info in the URL.
    """
    return _credentials(request, _url_parts(request)[1])


def _body_digest(request: Request) -> str:
    if request.json is not None:
        text = json.dumps(request.json, sort_keys=True, separators=(",", ":"), default=str)
        return _digest(text)
    if request.content:
        return _digest(request.content)
    return "-"


def default_key(request: Request) -> str:
    """The default cache key.

    ``namespace|METHOD scheme://host/path?sorted-public-query|body:<sha>|cred:<sha>``
    where the namespace is ``request.endpoint``, the query merges the URL's
    query with ``request.params`` (sorted), secret query parameters are moved
    out of the query into the credentials digest, and the body and the
    credentials appear only as SHA-256 digests. Two callers with different
    tokens therefore get different keys, and no key holds a secret.
    """
    url, url_secrets = _url_parts(request)
    cred = _credentials(request, url_secrets) or "-"
    return (
        f"{request.endpoint or ''}|{request.method} {url}|body:{_body_digest(request)}|cred:{cred}"
    )


def scoped_key(key: KeyFunction) -> KeyFunction:
    """Wrap a user key function so its keys stay per namespace and per credential.

    The result is ``namespace|<key(request)>|cred:<sha>``: a custom key can
    choose what identifies a request, but can never make one caller's cached
    response visible to a caller holding different credentials.
    """

    def scoped(request: Request) -> str:
        cred = credentials_digest(request) or "-"
        return f"{request.endpoint or ''}|{key(request)}|cred:{cred}"

    scoped.__name__ = f"scoped_{getattr(key, '__name__', 'key')}"
    return scoped
