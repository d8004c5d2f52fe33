"""Keep secrets out of everything lamina prints, records or raises.

Two halves, used by every output (reprs, logs, spans, errors, reports, the CLI):

* one classifier decides which header and query-parameter *names* carry secrets
  (:class:`SecretClassifier`; the process default is extended with
  :func:`add_secret_names` or ``LAMINA_SECRET_NAMES``);
* one scrubber removes secret *values* from text in every encoding they may have
  taken on the way there (:func:`scrub`): raw, stripped, ``repr``/``unicode_escape``,
  JSON (``ensure_ascii`` on or off, ``\\u0026``-style HTML-safe JSON), HTML escapes
  (``&amp;``, ``&#39;``, ``&#x27;``, ``&quot;`` ...), percent-encoding with any safe
  set and ``bytes`` reprs, and mixtures of those.

The public home of these names is :mod:`lamina.redact`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

if TYPE_CHECKING:
    from ._core import Request

__all__ = [
    "MIN_SECRET_CHARS",
    "NOT_SECRET_WORDS",
    "PUBLIC_NAMES",
    "REDACTED",
    "SECRET_HEADERS",
    "SECRET_PARAMS",
    "SECRET_STEMS",
    "SECRET_WORDS",
    "RedactingLogFilter",
    "SecretClassifier",
    "add_secret_names",
    "default_classifier",
    "install_log_filters",
    "is_secret",
    "is_secret_header",
    "is_secret_param",
    "log_warnings_scrubbed",
    "redact_body",
    "redact_headers",
    "redact_params",
    "redact_text",
    "redact_url",
    "scrub",
    "scrub_clip",
    "secret_values",
    "set_default_classifier",
    "url_secret_values",
]

REDACTED = "[REDACTED]"

#: Values shorter than this are masked where they are named (headers, query
#: parameters) but not searched for in free text: they would mangle numbers and words.
MIN_SECRET_CHARS = 4

#: Header names known to carry credentials (most also match :data:`SECRET_STEMS`).
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
        "x-auth-key",
        "x-access-token",
        "x-csrf-token",
        "x-xsrf-token",
        "x-amz-security-token",
        "x-rapidapi-key",
        "ocp-apim-subscription-key",
        "x-goog-api-key",
        "x-functions-key",
        "private-token",
        "x-vault-token",
        "x-jwt-assertion",
        "dpop",  # a proof-of-possession JWT (RFC 9449), sent beside the access token
    }
)

#: Query parameter names known to carry credentials or signatures.
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
        "api_token",
        "access_key",
        "app_key",
        "appid",
        "app_id",
        "key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "client_assertion",
        "assertion",
        "code",
        "code_verifier",
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "hmac",
        "jwt",
        "secret",
        "auth",
        "samlresponse",
    }
)

#: A name holding one of these (case-insensitive, separators ignored) is secret.
SECRET_STEMS = (
    "key",
    "token",
    "secret",
    "auth",
    "session",
    "cookie",
    "signature",
    "password",
    "passwd",
    "passphrase",
    "credential",
    "sessid",  # PHPSESSID, X-Sess-Id
)

#: A name with one of these as a whole word (``api_sig``, ``X-Api-Pass``, ``connect.sid``)
#: is secret. Whole words only: ``passenger``, ``compass``, ``bypass`` and ``side`` are not.
SECRET_WORDS = frozenset({"sig", "pwd", "passwd", "jwt", "hmac", "pass", "sid"})

#: Everyday words that hold a stem but name no secret; ignored when looking for
#: stems (``author``, ``x-author-id``, ``keywords``, ``monkey``). A name that has a
#: stem elsewhere (``author_key``) is still secret.
NOT_SECRET_WORDS = frozenset(
    {
        "author",
        "authors",
        "authored",
        "authoring",
        "authorship",
        "authority",
        "authorities",
        "keyword",
        "keywords",
        "keyboard",
        "keynote",
        "keynotes",
        "monkey",
        "donkey",
        "hockey",
        "jockey",
        "turkey",
        "whiskey",
        "turnkey",
    }
)

#: Names that hold a stem but carry no secret by definition: ``Idempotency-Key`` is a
#: unique request id (like ``X-Request-Id``), never a credential. Name it secret to hide it.
PUBLIC_NAMES = frozenset({"idempotency-key"})

#: Always secret, whatever the user declares public.
_ALWAYS = frozenset({"authorization", "proxyauthorization", "cookie", "setcookie"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_CACHE_LIMIT = 4096


def _words(name: str) -> list[str]:
    """``"X-RapidAPI-Key"`` -> ``["x", "rapid", "api", "key"]`` (camelCase split too)."""
    return [w.lower() for w in _WORD.findall(name)]


def _normal(name: str) -> str:
    """A name without case and separators: ``app_id``, ``App-ID`` and ``appId`` agree."""
    return "".join(_words(name))


def _check_names(names: Iterable[str], field: str) -> frozenset[str]:
    if isinstance(names, str):
        names = [names]
    out = set()
    for name in names:
        if not isinstance(name, str) or not _normal(name):
            from ._errors import ConfigError

            raise ConfigError(
                f"must be header or parameter names (letters or digits), got {name!r}",
                field=field,
            )
        out.add(_normal(name))
    return frozenset(out)


class SecretClassifier:
    """Decides whether a header or query-parameter name carries a secret.

    A name is secret when, ignoring case and separators (``-``, ``_``, ``.``,
    camelCase), it is

    * a known name (:data:`SECRET_HEADERS`, :data:`SECRET_PARAMS`) or one of
      ``names``;
    * or holds a stem (:data:`SECRET_STEMS`: key, token, secret, auth, session,
      cookie, signature, password, passwd, passphrase, credential, sessid) outside the
      everyday words of :data:`NOT_SECRET_WORDS`, or a whole word of
      :data:`SECRET_WORDS` (``sig``, ``pwd``, ``passwd``, ``jwt``, ``hmac``, ``pass``,
      ``sid``);

    unless it is one of ``public`` (names you know are harmless, such as a
    ``max_tokens`` parameter) or of :data:`PUBLIC_NAMES` (``Idempotency-Key``) and
    not one of ``names``. Authorization, Proxy-Authorization, Cookie and
    Set-Cookie are secret whatever ``public`` says. Headers and query
    parameters share the one rule.
    """

    __slots__ = ("_cache", "names", "public")

    def __init__(self, names: Iterable[str] = (), *, public: Iterable[str] = ()) -> None:
        known = {_normal(n) for n in SECRET_HEADERS | SECRET_PARAMS}
        added = _check_names(names, "names")
        builtin_public = frozenset(_normal(n) for n in PUBLIC_NAMES)
        self.names: frozenset[str] = frozenset(known) | added
        self.public: frozenset[str] = (
            (builtin_public - added) | _check_names(public, "public")
        ) - _ALWAYS
        self._cache: dict[str, bool] = {}

    def is_secret(self, name: str) -> bool:
        """True when a header or query parameter called ``name`` carries a secret."""
        try:
            return self._cache[name]
        except KeyError:
            pass
        verdict = self._classify(str(name))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[name] = verdict
        return verdict

    def _classify(self, name: str) -> bool:
        words = _words(name)
        joined = "".join(words)
        if joined in _ALWAYS:
            return True
        if joined in self.public:
            return False
        if joined in self.names:
            return True
        kept = [w for w in words if w not in NOT_SECRET_WORDS]
        if any(w in SECRET_WORDS for w in kept):
            return True
        rest = "".join(kept)
        return any(stem in rest for stem in SECRET_STEMS)

    def with_names(
        self, names: Iterable[str] = (), *, public: Iterable[str] = ()
    ) -> SecretClassifier:
        """A new classifier: this one's names plus ``names``, its public names plus ``public``.

        A name made public earlier and named secret here becomes secret again.
        """
        added = _check_names(names, "names")
        made_public = _check_names(public, "public")
        new = SecretClassifier()
        new.names = (self.names | added) - made_public
        new.public = ((self.public - added) | made_public) - _ALWAYS
        return new

    def __repr__(self) -> str:
        known = {_normal(n) for n in SECRET_HEADERS | SECRET_PARAMS}
        extra = sorted(self.names - known)
        return f"SecretClassifier(names={extra!r}, public={sorted(self.public)!r})"


def _env_classifier() -> SecretClassifier:
    raw = os.environ.get("LAMINA_SECRET_NAMES", "")
    names = [n for n in re.split(r"[\s,;]+", raw) if _normal(n)]
    return SecretClassifier(names)


_default = _env_classifier()


def default_classifier() -> SecretClassifier:
    """The classifier every lamina output uses (process-wide)."""
    return _default


def set_default_classifier(classifier: SecretClassifier) -> SecretClassifier:
    """Make ``classifier`` the process default; returns the previous one."""
    global _default
    if not isinstance(classifier, SecretClassifier):
        from ._errors import ConfigError

        raise ConfigError("must be a lamina.redact.SecretClassifier", field="classifier")
    previous, _default = _default, classifier
    return previous


def add_secret_names(names: Iterable[str] = (), *, public: Iterable[str] = ()) -> SecretClassifier:
    """Treat ``names`` (headers or query parameters) as secret everywhere from now on.

    ``public`` names stop matching by pattern (Authorization and cookies excepted).
    Returns the new process default. ``LAMINA_SECRET_NAMES`` (comma-separated) adds
    names at import time without code.
    """
    classifier = _default.with_names(names, public=public)
    set_default_classifier(classifier)
    return classifier


def is_secret(name: str) -> bool:
    """True when a header or query parameter called ``name`` carries a secret."""
    return _default.is_secret(name)


def is_secret_header(name: str) -> bool:
    """True when a header carries a credential (by name): :func:`is_secret`."""
    return _default.is_secret(name)


def is_secret_param(name: str) -> bool:
    """True when a query parameter carries a credential or a signature: :func:`is_secret`."""
    return _default.is_secret(name)


# -- masking by name ---------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` without user info and with the values of secret parameters masked: query
    and fragment pairs (separated by ``&`` or ``;``) and path parameters
    (``/app;jsessionid=...``); everything else is left as written."""
    return _redact_url(url, _default)


@functools.lru_cache(maxsize=1024)
def _redact_url(url: str, classifier: SecretClassifier) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    path = _redact_pairs(parts.path, classifier, path=True)
    query = _redact_pairs(parts.query, classifier)
    fragment = _redact_pairs(parts.fragment, classifier)
    if (netloc, path, query, fragment) == (parts.netloc, parts.path, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


_PAIR_SEPARATORS = re.compile(r"([&;])")
_PATH_SEPARATORS = re.compile(r"([/;])")


def _pairs(text: str, *, path: bool = False) -> list[tuple[str, str]]:
    """``(name, value)`` of each ``name=value`` in a query or fragment (``&`` or ``;``
    between pairs) or, with ``path``, each ``;name=value`` path parameter."""
    if "=" not in text or (path and ";" not in text):
        return []
    out = []
    for piece in _pieces(text, path):
        name, eq, value = piece.partition("=")
        if eq and value:
            out.append((name, value))
    return out


def _pieces(text: str, path: bool) -> list[str]:
    if not path:
        return _PAIR_SEPARATORS.split(text)[::2]
    return [p for segment in text.split("/") for p in segment.split(";")[1:]]


def _redact_pairs(text: str, classifier: SecretClassifier, *, path: bool = False) -> str:
    if "=" not in text or (path and ";" not in text):
        return text
    tokens = (_PATH_SEPARATORS if path else _PAIR_SEPARATORS).split(text)
    changed = False
    for i in range(0, len(tokens), 2):
        if path and (i == 0 or tokens[i - 1] != ";"):
            continue  # a path segment, not a ";name=value" parameter
        name, eq, value = tokens[i].partition("=")
        if eq and value and classifier.is_secret(unquote_plus(name)):
            tokens[i] = f"{name}={REDACTED}"
            changed = True
    return "".join(tokens) if changed else text


_JSON_STRING_PAIR = re.compile(r'"((?:[^"\\]|\\.){1,200})"(\s*:\s*)"((?:[^"\\]|\\.)*)"')


def redact_body(text: str) -> str:
    """A logged body with the values of secret-named fields masked: ``"access_token":
    "..."`` in JSON and ``client_secret=...`` in a form body (the classifier decides,
    :func:`is_secret`). Values the request itself carried are scrubbed separately."""
    if '":' in text or '" :' in text:
        text = _JSON_STRING_PAIR.sub(_mask_json_pair, text)
    if "=" in text and " " not in text.strip() and "\n" not in text:
        text = _redact_pairs(text, _default)
    return text


def _mask_json_pair(match: re.Match[str]) -> str:
    if not _default.is_secret(match.group(1)):
        return match.group(0)
    return f'"{match.group(1)}"{match.group(2)}"{REDACTED}"'


def redact_params(params: Mapping[str, object]) -> dict[str, object]:
    """Mask the values of secret query parameters."""
    classifier = _default
    return {k: (REDACTED if classifier.is_secret(str(k)) else v) for k, v in params.items()}


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Mask the values of credential-bearing headers."""
    classifier = _default
    return {k: (REDACTED if classifier.is_secret(k) else v) for k, v in headers}


# -- the values a request carries -------------------------------------------------------


def secret_values(request: Request) -> list[str]:
    """The secret values a request carries: secret headers (and the credential in
    ``Bearer x`` / ``Basic x``, each cookie's value), secret query parameters (in
    ``params`` and in the URL) and the URL's user info."""
    classifier = _default
    values: list[str] = []
    for name, value in request.headers.multi_items():
        if classifier.is_secret(name):
            values += _header_secrets(name, value)
    for key, value in request.params.items():
        if classifier.is_secret(str(key)):
            items = value if isinstance(value, list | tuple) else [value]
            values += [str(v) for v in items if v is not None]
    values += url_secret_values(request.url)
    return values


def _header_secrets(name: str, value: str) -> list[str]:
    out = [value]
    scheme, sep, rest = value.strip().partition(" ")
    if sep and rest.strip():
        credential = rest.strip()
        out.append(credential)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credential, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                decoded = ""
            if decoded:
                out += [decoded, *decoded.split(":", 1)]
    if _normal(name) in ("cookie", "setcookie"):
        for part in value.split(";"):
            _, eq, cookie = part.strip().partition("=")
            if eq and cookie:
                out += [cookie, unquote(cookie)]
    return out


def url_secret_values(url: str) -> list[str]:
    """User info and secret query, fragment and path-parameter values in ``url``
    (raw and decoded)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    out: list[str] = []
    classifier = _default
    pairs = [*_pairs(parts.path, path=True), *_pairs(parts.query), *_pairs(parts.fragment)]
    for name, value in pairs:
        if classifier.is_secret(unquote_plus(name)):
            out += [value, unquote_plus(value), unquote(value)]
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, _, password = userinfo.partition(":")
        for piece in (userinfo, user, password):
            if piece:
                out += [piece, unquote(piece)]
    return out


# -- scrubbing values in every encoding -------------------------------------------------------

_NAMED_ENTITIES = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos", "\xa0": "nbsp"}
_SHORT_ESCAPES = {"\n": "n", "\r": "r", "\t": "t", "\b": "b", "\f": "f", "\v": "v", "\0": "0"}


def _hex(value: int, width: int = 1) -> str:
    """Hex digits of ``value`` as a pattern that accepts either letter case."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{value:0{width}x}")


def _plain(ch: str) -> str:
    """A character of an escape sequence (``&``, ``#``, ``;``, ``+``), itself possibly
    percent-encoded or JSON-escaped when the escaped text was encoded again."""
    code = _hex(ord(ch), 2)
    return rf"(?:{re.escape(ch)}|%(?:25)*{code}|\\u00{code})"


_AMP = f"{_plain('&')}(?:amp{_plain(';')})*"  # &, &amp;amp; (escaped twice), %26, \u0026
_SEMI = _plain(";")
_HASH = _plain("#")
# A run of backslashes, each possibly encoded itself: escaped once (repr, JSON), twice
# (repr of JSON), or percent/HTML/JSON-encoded afterwards (%5Cn, \u005cn). Bounded, so
# a long run of backslashes in a text costs linear time.
_BACKSLASHES = (
    rf"(?:\\u005[cC]|\\|%(?:25)*5[cC]|{_AMP}{_HASH}(?:0*92|[xX]0*5[cC]){_SEMI})" + "{1,16}"
)


@functools.lru_cache(maxsize=4096)
def _char_pattern(ch: str) -> str:
    """A pattern for ``ch`` in any of the encodings text may hold it in."""
    if ch.isascii() and (ch.isalnum() or ch in "-._~"):
        return re.escape(ch)  # letters, digits and -._~ are never escaped or encoded
    if ch == "\\":
        return _BACKSLASHES  # as is, escaped (once or more) or encoded
    code = ord(ch)
    data = ch.encode("utf-8", "surrogatepass")
    # as is; as an HTML/XML character reference (&#39; &#x27; &apos;, also &amp;#39;);
    # percent-encoded (any safe set, either hex case, %2527 twice); "+" for a space;
    # each possibly after backslashes (\' \" \&quot; %5C%27)
    named = _NAMED_ENTITIES.get(ch)
    entity = f"{_AMP}(?:{_HASH}(?:0*{code}|[xX]0*{_hex(code)})" + (f"|{named}" if named else "")
    forms = [re.escape(ch), entity + f"){_SEMI}"]
    forms.append("".join(f"%(?:25)*{_hex(b, 2)}" for b in data))
    if ch == " ":
        forms.append(_plain("+"))
    alts = [f"(?:{_BACKSLASHES})?(?:{'|'.join(forms)})"]
    # backslash escapes: repr, unicode_escape, ascii(), JSON (\u0026), bytes reprs
    short = _SHORT_ESCAPES.get(ch)
    if short:
        alts.append(_BACKSLASHES + short)
    if code < 0x100:
        alts.append(f"{_BACKSLASHES}x{_hex(code, 2)}")
    if code < 0x10000:
        alts.append(f"{_BACKSLASHES}u{_hex(code, 4)}")
    else:
        alts.append(f"{_BACKSLASHES}U{_hex(code, 8)}")
        high = 0xD800 + ((code - 0x10000) >> 10)
        low = 0xDC00 + ((code - 0x10000) & 0x3FF)
        alts.append(f"{_BACKSLASHES}u{_hex(high, 4)}{_BACKSLASHES}u{_hex(low, 4)}")
    if code >= 0x80:
        alts.append("".join(f"{_BACKSLASHES}x{_hex(b, 2)}" for b in data))
    return "(?:" + "|".join(alts) + ")"


def _pattern(secret: str) -> str:
    """The pattern of one secret (a run of backslashes is one :data:`_BACKSLASHES`)."""
    return "".join(map(_char_pattern, re.sub(r"\\{2,}", "\\\\", secret)))


_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")


@functools.lru_cache(maxsize=1024)
def _matcher(form: str) -> tuple[str | None, re.Pattern[str]]:
    """``(core, pattern)`` of one secret. Letters and digits survive every encoding,
    so when the secret's longest run of them (its core) is not in a text, the secret
    is not either: most texts hold none and skip the pattern."""
    core = max(_ALNUM_RUN.findall(form), key=len, default="")
    return (core if len(core) >= 3 else None), re.compile(_pattern(form))


@functools.lru_cache(maxsize=256)
def _forms(secrets: frozenset[str]) -> tuple[str, ...]:
    """The forms to look for, longest first: each secret as is and stripped."""
    forms = set()
    for secret in secrets:
        if isinstance(secret, str):
            for form in (secret, secret.strip()):
                if len(form) >= MIN_SECRET_CHARS:
                    forms.add(form)
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``[REDACTED]``, in every encoding.

    Each secret is searched raw and stripped of surrounding whitespace (a token
    read from a file keeps its newline), and in any escaped form: ``repr`` and
    ``unicode_escape`` (``\\n``, ``\\x..``, ``\\u....``), JSON (``ensure_ascii`` on or
    off, ``\\u0026``), HTML (``&amp;``, ``&#39;``, ``&#x27;``, ``&quot;``, named or
    numeric, escaped twice), percent-encoding (``quote``, ``quote_plus``, any safe
    set), ``bytes`` reprs and mixtures of them. Values shorter than
    :data:`MIN_SECRET_CHARS` are skipped. The pattern for a set of secrets is
    built once per secret and cached.
    """
    if not text:
        return text
    key = secrets if isinstance(secrets, frozenset) else frozenset(secrets)
    if not key:
        return text
    for form in _forms(key):
        core, pattern = _matcher(form)
        if core is None or core in text:
            text = pattern.sub(REDACTED, text)
    return text


def scrub_clip(text: str, secrets: Iterable[str], limit: int) -> str:
    """``scrub(text)[:limit]``, scrubbing only as much of ``text`` as the cut keeps
    (plus room for a secret that starts before the cut and ends after it)."""
    key = secrets if isinstance(secrets, frozenset) else frozenset(secrets)
    longest = max((len(s) for s in key), default=0)
    window = limit + 16 * longest + 64
    return scrub(text[:window], key)[:limit]


# -- other libraries' log records ----------------------------------------------------

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+")
_HEADER_PAIR = re.compile(
    r"\((b?)(['\"])([A-Za-z0-9!#$%&*+.^_`|~-]{1,100})\2, (b?)(['\"])(.*?)\5\)"
)


def redact_text(text: str) -> str:
    """Free text with every URL redacted (:func:`redact_url`) and every
    ``(b'Name', b'value')`` header pair with a secret name masked."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    if "(" in text and ", " in text:
        text = _HEADER_PAIR.sub(_mask_pair, text)
    return text


def _mask_pair(match: re.Match[str]) -> str:
    if not is_secret(match.group(3)):
        return match.group(0)
    b1, q1, name, b2, q2, _ = match.groups()
    return f"({b1}{q1}{name}{q1}, {b2}{q2}{REDACTED}{q2})"


class RedactingLogFilter(logging.Filter):
    """Masks credentials in URLs and header pairs of the records it sees, and with
    ``secrets`` also scrubs those values (every encoding) from the message, string
    ``lamina_*`` extras and the traceback text.

    Installed without ``secrets`` on the loggers of the HTTP clients lamina drives
    (``httpx``, ``httpcore.*``, ``aiohttp.client``): httpx logs every request's full
    URL at INFO (``HTTP Request: GET http://user:pw@host/?api_token=...``) and
    httpcore the response headers (``Set-Cookie``) at DEBUG. It never drops a record.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = frozenset(s for s in secrets if isinstance(s, str) and s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            args = record.args
            if isinstance(args, tuple) and args:
                record.args = tuple(_redact_arg(a) for a in args)
            elif isinstance(args, Mapping) and args:
                record.args = {k: _redact_arg(v) for k, v in args.items()}
            if isinstance(record.msg, str):
                record.msg = redact_text(record.msg)
            if self.secrets:
                self._scrub(record)
        except Exception:  # pragma: no cover - a log filter must never break logging
            pass
        return True

    def _scrub(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        scrubbed = scrub(message, self.secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        for key, value in list(vars(record).items()):
            if key.startswith("lamina_") and isinstance(value, str):
                setattr(record, key, scrub(value, self.secrets))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self.secrets)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (as logging's last resort does)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def log_warnings_scrubbed(secrets: Iterable[str], logger: str = "lamina") -> None:
    """For command-line tools: ``logger``'s warnings reach stderr with ``secrets``
    scrubbed (and URLs redacted) instead of raw through logging's last resort.

    Does nothing when logging is configured (a handler already takes the records);
    called again, it only replaces the secrets.
    """
    target = logging.getLogger(logger)
    for handler in target.handlers:
        if isinstance(handler, _StderrHandler):
            for f in handler.filters:
                if isinstance(f, RedactingLogFilter):
                    f.secrets = frozenset(s for s in secrets if isinstance(s, str) and s)
            return
    if target.hasHandlers():
        return
    handler = _StderrHandler()
    handler.setLevel(logging.WARNING)
    handler.addFilter(RedactingLogFilter(secrets))
    target.addHandler(handler)


def _redact_arg(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | bytes):
        return value
    text = value if isinstance(value, str) else str(value)
    if "://" not in text and "(" not in text:
        return value
    redacted = redact_text(text)
    return value if redacted == text else redacted


#: Loggers of the HTTP clients lamina drives.
LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "aiohttp.client",
    "aiohttp.internal",
)
_LOG_FILTER = RedactingLogFilter()


def install_log_filters() -> None:
    """Put :class:`RedactingLogFilter` on the HTTP clients' loggers (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingLogFilter) for f in logger.filters):
            logger.addFilter(_LOG_FILTER)


install_log_filters()
