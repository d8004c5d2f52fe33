"""Which values from ``${ENV}`` a flow's outputs must hide: the classifier decides.

A value used in a URL (an endpoint's ``url``, the ``backend``) is shown, so a user sees
which host a flow calls (``GET https://api.example.com/users/{user_id}``), except the
parts the URL classifier calls secret: its user info and the values of secret query
parameters (``sig``, ``api_key``, ...). Every other value is hidden everywhere
(validate, graph, run output, reports, logs, spans): one from a variable whose name
:func:`lamina.redact.is_secret` calls secret (``API_TOKEN``, even when it is a URL), and
one used anywhere but a URL (a header, a parameter, a body, a hook), where nothing
tells a secret from a setting.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit

from .._redact import is_secret, url_secret_values
from .env import Substitutions

__all__ = ["hidden_values"]

#: Fields that hold a URL (their user info and secret query values are hidden): an
#: endpoint's ``url`` and the flow's ``backend``, not a body or params key of that name.
URL_FIELDS = frozenset({"url", "backend"})


def _url_field(path: tuple[str | int, ...]) -> bool:
    if path == ("backend",):
        return True
    return (
        len(path) == 3 and path[0] == "endpoints" and isinstance(path[1], int) and path[2] == "url"
    )


def _userinfo_forms(url: str, value: str) -> list[str]:
    """When ``value`` is (or holds) part of ``url``'s user info, the forms that user info
    takes on the way out: percent-decoded, and the ``Basic`` credential
    (``base64(user:password)``) the HTTP client sends for it."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return []
    userinfo = netloc.rpartition("@")[0]
    if not userinfo or not any(
        piece and (piece in value or value in piece)
        for piece in (userinfo, *userinfo.split(":", 1))
    ):
        return []
    user, _, password = userinfo.partition(":")
    plain = f"{unquote(user)}:{unquote(password)}"
    forms = [unquote(user), unquote(password), plain]
    for encoding in ("utf-8", "latin-1"):
        try:
            forms.append(base64.b64encode(plain.encode(encoding)).decode("ascii"))
        except UnicodeEncodeError:
            continue
    return [form for form in forms if form]


def hidden_values(found: Substitutions) -> set[str]:
    """The values from ``found`` (what a flow took from the environment) to hide, and
    the secret parts (user info, secret query values) of the URLs they helped build."""
    hidden: set[str] = set()
    for name, value in found.variables.items():
        paths = found.uses.get(name, [])
        for path in filter(_url_field, paths):  # user info the value helped build
            hidden.update(_userinfo_forms(found.results.get(path, value), value))
        if is_secret(name) or not paths or not all(_url_field(path) for path in paths):
            hidden.add(value)
            continue
        for path in paths:
            if not _url_field(path):
                continue
            url = found.results.get(path, value)
            pieces = [p for p in url_secret_values(url) if p]
            if any(value in piece for piece in pieces) or _opaque(value):
                hidden.add(value)  # the whole value sits in a secret part
                break
            hidden.update(piece for piece in pieces if piece in value)
    # a value seen in the environment but not recorded by name (an older Substitutions)
    recorded = set(found.variables.values())
    hidden.update(v for v in found.values if v not in recorded)
    return hidden


def _opaque(value: str) -> bool:
    """True for a URL value that cannot be parsed: hidden rather than guessed at."""
    if "://" not in value:
        return False
    try:
        urlsplit(value)
    except ValueError:
        return True
    return False
