"""What every transport does the same way, in one place.

The redirect loop (:func:`send`, with the header check and the credential rules),
the in-flight gate, the not-sent marker, the headers and body rules, and the one
table that maps a client's exceptions to lamina's errors (:data:`ERRORS`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urljoin, urlsplit

from .._clock import running_loop
from .._core import Request, Response
from .._errors import (
    CANCELLED_AFTER_WAITING,
    CANCELLED_BEFORE_SENDING,
    CANCELLED_WHILE_CONNECTING,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    ParseError,
    ResponseTooLarge,
    TimeoutError,
    TransportError,
    UnsupportedContentEncoding,
)
from .._headers import Headers
from .._redact import is_secret_header, scrub, secret_values
from ._decoding import ACCEPT_ENCODING, BodyDecoder, codings_of

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ERRORS",
    "REDIRECT_STATUSES",
    "InFlightGate",
    "SentMarker",
    "check_headers",
    "has_body",
    "map_error",
    "open_body",
    "open_body_of",
    "origin",
    "request_headers",
    "send",
]

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Statuses whose response never has a body (RFC 9110 15.3.5, 15.4.5).
BODILESS_STATUSES = frozenset({204, 304})

SendOnce = Callable[[Request], Awaitable[Response]]


async def send(
    send_once: SendOnce, request: Request, follow_redirects: bool, max_redirects: int
) -> Response:
    """Check ``request``'s headers, send it with ``send_once`` and follow redirects if
    asked, dropping every credential header as soon as the origin changes."""
    check_headers(request)
    started = time.perf_counter()
    current = request
    for _ in range(max_redirects + 1):
        response = await send_once(current)
        location = (
            response.headers.get("location")
            if follow_redirects and response.status_code in REDIRECT_STATUSES
            else None
        )
        if not location:
            response.elapsed = time.perf_counter() - started
            return response
        current = _redirected(current, response.status_code, location)
    raise TransportError(f"more than max_redirects={max_redirects} redirects", request=request)


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, the port filled in for http and https."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), parts.port or default)


def _redirected(request: Request, status: int, location: str) -> Request:
    target = urljoin(request.url, location)
    method, json_body, content = request.method, request.json, request.content
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, json_body, content = "GET", None, None
    headers = request.headers
    if origin(target) != origin(request.url):
        headers = headers.copy_with(remove=[k for k in headers if is_secret_header(k)])
    if json_body is None and content is None:
        headers = headers.copy_with(remove=["content-type", "content-length"])
    # The query of the new location replaces ours: never carry params to another URL.
    return request.replace(
        method=method, url=target, headers=headers, params={}, json=json_body, content=content
    )


# Control characters a header must not hold (RFC 9110 5.5: HTAB is the only one allowed).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_NAMES = {"\r": "carriage return (CR)", "\n": "line feed (LF)", "\x00": "NUL byte"}


def check_headers(request: Request) -> None:
    """Refuse a header holding CR, LF, NUL, another control character or a character
    outside ASCII before anything is sent: :class:`lamina.ConfigError` naming the
    header, never its value (e.g. a token read from a file with its trailing newline,
    or pasted with a no-break space). HTTP field values are ASCII; httpx would refuse
    other characters with a bare ``UnicodeEncodeError`` and aiohttp send them as UTF-8."""
    for name, value in request.headers.multi_items():
        problem = _problem(value)
        part = "value"
        if problem is None:
            problem = _problem(name)
            if problem is None:
                continue
            part, name = "name", name.encode("unicode_escape").decode("ascii")
        what, hint = problem
        raise ConfigError(
            f"header {part} holds {what}; nothing was sent ({hint})",
            field=name,
            endpoint=request.endpoint,
        )


def _problem(text: str) -> tuple[str, str] | None:
    """What is wrong with a header's name or value, and what to do about it."""
    found = _CONTROL.search(text)
    if found is not None:
        char = found.group()
        what = _CONTROL_NAMES.get(char, f"control character 0x{ord(char):02x}")
        return f"a {what}", "strip it, e.g. token.strip()"
    if not text.isascii():
        return "a non-ASCII character", "HTTP headers are ASCII: percent-encode or base64 it"
    return None


def request_headers(request: Request) -> list[tuple[str, str]]:
    """The headers to send: the request's, and ``Accept-Encoding`` naming the codings
    lamina decodes unless the request sets its own."""
    headers = request.headers.multi_items()
    if "accept-encoding" not in request.headers:
        headers.append(("Accept-Encoding", ACCEPT_ENCODING))
    return headers


def has_body(request: Request, status: int) -> bool:
    """False for a response that never has a body: to a HEAD, or a 1xx, 204 or 304."""
    return request.method != "HEAD" and status >= 200 and status not in BODILESS_STATUSES


def open_body(headers: Headers, request: Request, status: int, limit: int) -> BodyDecoder | bool:
    """Check a response's head before its body is read: the decoder to feed the raw body
    to; True to read it whole, undecoded (no coding and a ``Content-Length`` within the
    limit, or a response that has no body: :func:`has_body`); False to leave it unread
    (the content is empty): a status outside 2xx whose ``Content-Encoding`` lamina does
    not decode, so that its status is judged (retried, counted by a breaker) and not
    hidden by an error about its body.

    Raises :class:`lamina.UnsupportedContentEncoding` for a coding lamina does not
    decode on a 2xx, :class:`lamina.ResponseTooLarge` for a declared length over
    ``limit``."""
    if not has_body(request, status):
        return True
    encodings = headers.get_list("content-encoding")
    return open_body_of(encodings, headers.get("content-length", ""), request, status, limit)


def open_body_of(
    encodings: Iterable[str], declared: str, request: Request, status: int, limit: int
) -> BodyDecoder | bool:
    """:func:`open_body` of a response that has a body, from its ``Content-Encoding``
    values and its ``Content-Length`` (``""`` if none), for a client whose own headers
    look them up faster."""
    try:
        codings = codings_of(encodings, request, status)
    except UnsupportedContentEncoding:
        if 200 <= status < 300:
            raise
        return False
    if not codings and declared.isdigit():
        if int(declared) > limit:
            raise ResponseTooLarge(limit=limit, request=request, status_code=status)
        return True
    return BodyDecoder(codings, limit, request, status)


class InFlightGate:
    """At most ``size`` requests inside a client at once; the others wait here, in order.

    Every transport puts one in front of its connection pool, sized to the pool (and
    one per host in front of a per-host limit), so a request that waits for a
    connection waits here, where lamina knows it:

    * cancelled while waiting (the attempt's timeout fired), nothing was sent:
      ``CancelledError(CANCELLED_BEFORE_SENDING, waited)``, which ``TimeoutLayer``
      turns into a ``TimeoutError`` with ``request_sent=False``;
    * cancelled after it waited, while connecting:
      ``CancelledError(CANCELLED_WHILE_CONNECTING, waited)``, a ``ConnectTimeout``;
    * cancelled after it waited and was sent: ``CancelledError(CANCELLED_AFTER_WAITING,
      waited)``, a ``TimeoutError`` whose ``waited`` says how much of the attempt
      the upstream never had.

    Waiting for a connection is not the upstream failing: a circuit breaker does not
    count the first, and the others in full only when the wait took less than half
    the attempt (:func:`lamina.breaker.exception_outcome`). Gates nest: the waits add
    up. A semaphore belongs to one event loop: a new loop gets a new one.
    """

    __slots__ = ("_loop", "_semaphore", "size", "users")

    def __init__(self, size: int) -> None:
        self.size = size
        #: callers inside or waiting (a transport drops an idle gate per host)
        self.users = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore = asyncio.Semaphore(size)

    async def send(self, send_now: SendOnce, request: Request) -> Response:
        """``send_now(request)`` once there is room."""
        semaphore = self._semaphore
        loop = running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                semaphore = self._semaphore = asyncio.Semaphore(self.size)
            self._loop = loop
        waited = 0.0
        if semaphore.locked():
            started = loop.time()
            try:
                await semaphore.acquire()
            except asyncio.CancelledError:  # e.g. the attempt timed out while queued here
                waited = loop.time() - started
                raise asyncio.CancelledError(CANCELLED_BEFORE_SENDING, waited) from None
            waited = loop.time() - started
        else:  # what acquire() does when not locked() (3.11-3.13), without its coroutine
            semaphore._value -= 1
        try:
            return await send_now(request)
        except asyncio.CancelledError as exc:
            marked = _waited_more(exc, waited) if waited else None
            if marked is not None:
                raise marked from exc
            raise
        finally:
            semaphore.release()

    def __repr__(self) -> str:
        return f"InFlightGate(size={self.size})"


_MARKS = (CANCELLED_BEFORE_SENDING, CANCELLED_WHILE_CONNECTING, CANCELLED_AFTER_WAITING)


def _waited_more(exc: asyncio.CancelledError, waited: float) -> asyncio.CancelledError | None:
    """``exc`` with ``waited`` seconds more of waiting for a connection: a transport's
    mark keeps its kind, a bare cancellation becomes ``CANCELLED_AFTER_WAITING``;
    None for someone else's cancellation (raise it unchanged)."""
    args = exc.args
    if not args:
        return asyncio.CancelledError(CANCELLED_AFTER_WAITING, waited)
    if args[0] in _MARKS and len(args) <= 2:
        before = float(args[1]) if len(args) == 2 else 0.0
        return asyncio.CancelledError(args[0], before + waited)
    return None


class SentMarker:
    """Set by the client's tracing as a request goes: ``connecting`` once it starts to
    connect to the server (TCP, TLS; httpcore's ``connect_tcp``, aiohttp's
    connector making one), ``sent`` once it may have started to go out
    (httpcore starts writing its headers, aiohttp has its connection). A transport
    cancelled before that raises :meth:`cancellation`: nothing was sent."""

    __slots__ = ("connecting", "sent")

    def __init__(self) -> None:
        self.connecting = False
        self.sent = False

    def cancellation(self) -> asyncio.CancelledError | None:
        """The cancellation to raise instead of the client's (None once sent):
        ``CANCELLED_WHILE_CONNECTING`` while connecting (a ``ConnectTimeout``: the
        upstream, or the way to it, is what the attempt waited for), else
        ``CANCELLED_BEFORE_SENDING`` (waiting for a connection in the client's pool:
        not the upstream's)."""
        if self.sent:
            return None
        if self.connecting:
            return asyncio.CancelledError(CANCELLED_WHILE_CONNECTING)
        return asyncio.CancelledError(CANCELLED_BEFORE_SENDING)


Outcome = Callable[[str, Request], Exception]


def _connect_timeout(detail: str, request: Request) -> Exception:
    return ConnectTimeout(detail, request=request)


def _connect(detail: str, request: Request) -> Exception:
    return ConnectError(detail, request=request)


def _timeout(detail: str, request: Request) -> Exception:
    return TimeoutError(detail, request=request, request_sent=True)


def _timeout_waiting(detail: str, request: Request) -> Exception:
    return TimeoutError(detail, request=request, request_sent=False)


def _late_or_connecting(detail: str, request: Request) -> Exception:
    """pyreqwest's ``ConnectTimeoutError`` is also what a late reply raises: a connect
    timeout only when its causes name the connect step (``client error (Connect)``)."""
    if _PYREQWEST_CONNECTING in detail:
        return ConnectTimeout(detail, request=request)
    return TimeoutError(detail, request=request, request_sent=True)


def _reset_or_connecting(detail: str, request: Request) -> Exception:
    """pyreqwest's ``ConnectError`` is also what a reset raises: no connection made only
    when its causes name the connect step."""
    if _PYREQWEST_CONNECTING in detail:
        return ConnectError(detail, request=request)
    return TransportError(detail, request=request)


_PYREQWEST_CONNECTING = "client error (Connect)"


def _undecodable(detail: str, request: Request) -> Exception:
    return ParseError(f"could not decode the body ({detail})", request=request)


def _bad_url(detail: str, request: Request) -> Exception:
    return ConfigError(detail, field="url", endpoint=request.endpoint)


ERRORS: dict[str, Outcome] = {
    # connecting timed out (the server, or the way to it, failed): nothing sent
    "httpx.ConnectTimeout": _connect_timeout,
    "aiohttp.client_exceptions.ConnectionTimeoutError": _connect_timeout,
    "pyreqwest.exceptions.ConnectTimeoutError": _late_or_connecting,
    # no connection made (refused, DNS): nothing sent
    "httpx.ConnectError": _connect,
    "aiohttp.client_exceptions.ClientConnectorError": _connect,
    "pyreqwest.exceptions.ConnectError": _reset_or_connecting,
    # the client's own timeouts after connecting: sent
    "httpx.TimeoutException": _timeout,
    "aiohttp.client_exceptions.ServerTimeoutError": _timeout,
    "pyreqwest.exceptions.RequestTimeoutError": _timeout,
    "builtins.TimeoutError": _timeout,
    # no room in the client's pool: nothing sent
    "httpx.PoolTimeout": _timeout_waiting,
    "pyreqwest.exceptions.PoolTimeoutError": _timeout_waiting,
    "httpx.DecodingError": _undecodable,
    "httpx.InvalidURL": _bad_url,
    "httpx.UnsupportedProtocol": _bad_url,
    "aiohttp.client_exceptions.InvalidURL": _bad_url,
    "aiohttp.client_exceptions.NonHttpUrlClientError": _bad_url,
    "pyreqwest.exceptions.BuilderError": _bad_url,
}
"""What a client's exception becomes, by the ``module.qualname`` of its class or of
the nearest class in its MRO listed here (in the manner of httpx's ``HTTPCORE_EXC_MAP``);
anything else is a :class:`lamina.TransportError` (a reset, a disconnect, a truncated
body, a malformed head: sent). Names, not classes, so that one table serves every client
without importing the optional ones."""


def map_error(exc: BaseException, request: Request) -> Exception:
    """The lamina error for a client's exception (raise it ``from exc``), its message
    scrubbed of the request's secret values."""
    text = str(exc) or "connection closed or reset by the peer"
    detail = scrub(f"{type(exc).__name__}: {text}", secret_values(request))
    for cls in type(exc).__mro__:
        outcome = ERRORS.get(f"{cls.__module__}.{cls.__qualname__}")
        if outcome is not None:
            return outcome(detail, request)
    return TransportError(detail, request=request)
