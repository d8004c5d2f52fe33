"""Keep secrets out of everything lamina prints, records or raises."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from ._core import Request

REDACTED = "[REDACTED]"

#: Header names whose values are credentials (compared lower-case).
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-access-token",
        "x-csrf-token",
        "x-amz-security-token",
    }
)

#: Query parameter names whose values are credentials or signatures.
SECRET_PARAMS = frozenset(
    {
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "api_key",
        "apikey",
        "api-key",
        "key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "password",
        "secret",
        "auth",
        "code",
    }
)


def is_secret_header(name: str) -> bool:
    """True when a header carries a credential (by name)."""
    lowered = name.lower()
    return lowered in SECRET_HEADERS or lowered.endswith(("-token", "-api-key", "-secret"))


def is_secret_param(name: str) -> bool:
    """True when a query parameter carries a credential or a signature."""
    return name.lower() in SECRET_PARAMS


def redact_url(url: str) -> str:
    """Return ``url`` without user info and with secret query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_param(k) for k, _ in pairs):
            query = urlencode(
                [(k, REDACTED if is_secret_param(k) else v) for k, v in pairs], safe="[]"
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_params(params: Mapping[str, object]) -> dict[str, object]:
    """Mask the values of secret query parameters."""
    return {k: (REDACTED if is_secret_param(k) else v) for k, v in params.items()}


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Mask the values of credential-bearing headers."""
    return {k: (REDACTED if is_secret_header(k) else v) for k, v in headers}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret value in ``text``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


def secret_values(request: Request) -> list[str]:
    """The credential values a request carries (headers, user info, signed params)."""
    values = [v for k, v in request.headers.multi_items() if is_secret_header(k)]
    values += [str(v) for k, v in request.params.items() if is_secret_param(k)]
    try:
        parts = urlsplit(request.url)
    except ValueError:
        parts = None
    if parts is not None:
        values += [v for k, v in parse_qsl(parts.query) if is_secret_param(k)]
        if parts.password:
            values.append(parts.password)
    # "Bearer abc" -> also hide "abc" on its own
    values += [v.split(" ", 1)[1] for v in list(values) if " " in v]
    return values
