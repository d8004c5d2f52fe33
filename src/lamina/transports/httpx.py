"""The innermost service: an httpx client behind lamina's Request/Response."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from .._closeable import AsyncCloseable
from .._core import Request, Response
from .._errors import (
    CANCELLED_AFTER_WAITING,
    CANCELLED_BEFORE_SENDING,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    ParseError,
    ResponseTooLarge,
    TimeoutError,
)
from .._errors import TransportError as LaminaTransportError
from .._headers import Headers
from .._redact import is_secret_header, scrub, secret_values
from ._decoding import ACCEPT_ENCODING, BodyDecoder, content_codings

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "REDIRECT_STATUSES",
    "HttpxTransport",
    "InFlightGate",
    "check_headers",
    "send",
]

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class HttpxTransport(AsyncCloseable):
    """Send lamina requests with one pooled ``httpx.AsyncClient``.

    Pass ``client`` to use your own client (you close it), or ``transport``
    (any httpx transport, e.g. ``httpx.MockTransport``) and ``client_options``
    to have one built and owned here. Timeouts belong to ``TimeoutLayer``, so
    an owned client has no httpx timeout unless you pass ``timeout=``.

    Redirects are not followed unless ``follow_redirects=True``; when they are,
    every credential header is dropped as soon as the origin changes.
    The body is read raw while streaming and decoded here, every coding of its
    ``Content-Encoding`` (httpx decodes nothing), and stops at
    ``max_response_bytes`` decoded bytes, overridable per call with
    ``request.extensions["max_response_bytes"]``. ``Accept-Encoding`` names the
    codings lamina decodes unless the request sets its own.

    At most ``max_in_flight`` requests are inside the client at once; the rest
    wait their turn here, in order. By default that is the pool size of an
    owned client (``limits.max_connections``, 100 in httpx) and no limit for a
    client you pass. httpcore's pool rescans its whole queue on every request,
    so a queue there costs time quadratic in its length; waiting here does not.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        follow_redirects: bool = False,
        max_redirects: int = 10,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_in_flight: int | Literal["pool"] | None = "pool",
        http2: bool = False,
        **client_options: Any,
    ) -> None:
        if client is not None and (transport is not None or client_options or http2):
            raise ConfigError(
                "pass either client or transport/client options, not both", field="client"
            )
        if max_response_bytes <= 0:
            raise ConfigError("must be > 0", field="max_response_bytes")
        if max_redirects < 0:
            raise ConfigError("must be >= 0", field="max_redirects")
        if max_in_flight == "pool":
            max_in_flight = _pool_size(client_options) if client is None else None
        else:
            max_in_flight = in_flight_limit(max_in_flight)
        _warm_up()
        self._owns_client = client is None
        if client is None:
            client_options.setdefault("timeout", None)
            if "verify" not in client_options and "cert" not in client_options:
                client_options["verify"] = _default_ssl_context()
            try:
                client = httpx.AsyncClient(transport=transport, http2=http2, **client_options)
            except ImportError as exc:
                raise ConfigError(
                    f"{exc}; install lamina[http2] for HTTP/2", field="http2"
                ) from exc
        self.client = client
        # httpcore reports when a request starts to go out: a cancellation before that
        # (while connecting) sent nothing. Another httpx transport may not report it.
        self._traced = _httpcore_only(client)
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self.max_response_bytes = max_response_bytes
        self.max_in_flight = max_in_flight
        self._gate = InFlightGate(max_in_flight) if max_in_flight is not None else None

    async def __call__(self, request: Request) -> Response:
        return await send(self._send_once, request, self.follow_redirects, self.max_redirects)

    async def _send_once(self, request: Request) -> Response:
        gate = self._gate
        if gate is None:
            return await self._send_now(request)
        return await gate.send(self._send_now, request)

    async def _send_now(self, request: Request) -> Response:
        limit = request.extensions.get("max_response_bytes", self.max_response_bytes)
        sent = _SentMarker() if self._traced else None
        try:
            url: str | httpx.URL = request.url
            if request.params:  # merge: httpx would replace the URL's own query (httpx#3433)
                url = httpx.URL(request.url).copy_merge_params(request.params)
            headers = request.headers.multi_items()
            if "accept-encoding" not in request.headers:
                headers.append(("Accept-Encoding", ACCEPT_ENCODING))
            http_request = self.client.build_request(
                request.method,
                url,
                headers=headers,
                json=request.json,
                content=request.content,
                extensions={"trace": sent} if sent is not None else None,
            )
            http_response = await self.client.send(
                http_request, stream=True, follow_redirects=False
            )
        except asyncio.CancelledError:  # e.g. the attempt timed out
            if sent is not None and not sent.sent:  # still connecting, or in httpcore's pool
                raise asyncio.CancelledError(CANCELLED_BEFORE_SENDING) from None
            raise
        except httpx.HTTPError as exc:
            raise _map_error(exc, request) from exc
        except httpx.InvalidURL as exc:
            raise ConfigError(
                scrub(str(exc), secret_values(request)), field="url", endpoint=request.endpoint
            ) from exc
        response_headers = Headers.from_pairs(http_response.headers.multi_items())
        try:
            status = http_response.status_code
            skip_body = self.follow_redirects and status in REDIRECT_STATUSES
            content = (
                b""
                if skip_body
                else await _read_limited(http_response, response_headers, request, limit)
            )
        except httpx.HTTPError as exc:
            raise _map_error(exc, request) from exc
        finally:
            await http_response.aclose()
        return Response(
            status, headers=response_headers, content=content, request=request, http=http_response
        )

    async def aclose(self) -> None:
        """Close the client if this transport created it."""
        if self._owns_client:
            await self.client.aclose()

    def __repr__(self) -> str:
        owned = "owned" if self._owns_client else "borrowed"
        return f"HttpxTransport({owned} client, follow_redirects={self.follow_redirects})"


async def send(
    send_once: Callable[[Request], Awaitable[Response]],
    request: Request,
    follow_redirects: bool,
    max_redirects: int,
) -> Response:
    """Send ``request`` with ``send_once``, following redirects if asked (every
    transport shares this, so the header checks and the credential rules on
    redirects hold for all)."""
    check_headers(request)
    started = time.perf_counter()
    current = request
    for _ in range(max_redirects + 1):
        response = await send_once(current)
        location = response.headers.get("location")
        if not (follow_redirects and response.status_code in REDIRECT_STATUSES and location):
            response.elapsed = time.perf_counter() - started
            return response
        current = _redirected(current, response.status_code, location)
    raise LaminaTransportError(
        f"more than max_redirects={max_redirects} redirects", request=request
    )


class InFlightGate:
    """At most ``size`` requests inside a client at once; the others wait here, in order.

    Every transport puts one in front of its connection pool, sized to the pool,
    so a request that waits for a connection waits here, where lamina knows it:

    * cancelled while waiting (the attempt's timeout fired), nothing was sent:
      ``CancelledError(CANCELLED_BEFORE_SENDING, waited)``, which ``TimeoutLayer``
      turns into a ``TimeoutError`` with ``request_sent=False``;
    * cancelled after it waited and was sent: ``CancelledError(CANCELLED_AFTER_WAITING,
      waited)``, a ``TimeoutError`` whose ``waited`` says how much of the attempt
      the upstream never had.

    A circuit breaker counts neither (waiting for a connection is not the
    upstream failing). A semaphore belongs to one event loop: a new loop gets a new one.
    """

    __slots__ = ("_loop", "_semaphore", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore = asyncio.Semaphore(size)

    async def send(
        self, send_now: Callable[[Request], Awaitable[Response]], request: Request
    ) -> Response:
        """``send_now(request)`` once there is room."""
        semaphore = self._semaphore
        loop = asyncio.get_running_loop()
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
        else:
            await semaphore.acquire()  # returns at once
        try:
            return await send_now(request)
        except asyncio.CancelledError as exc:
            if waited and not exc.args:
                raise asyncio.CancelledError(CANCELLED_AFTER_WAITING, waited) from exc
            if waited and exc.args == (CANCELLED_BEFORE_SENDING,):
                raise asyncio.CancelledError(CANCELLED_BEFORE_SENDING, waited) from exc
            raise
        finally:
            semaphore.release()

    def __repr__(self) -> str:
        return f"InFlightGate(size={self.size})"


class _SentMarker:
    """httpcore's ``trace`` extension: notes when the request's headers start to go
    out, so a cancellation before that (connecting) is known to have sent nothing."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        if name.endswith("send_request_headers.started"):  # http11. or http2.
            self.sent = True


def _httpcore_only(client: httpx.AsyncClient) -> bool:
    """True if every transport of ``client`` is httpx's own (httpcore, which traces)."""
    transports = [getattr(client, "_transport", None)]
    transports += list(getattr(client, "_mounts", {}).values())
    return all(t is None or type(t) is httpx.AsyncHTTPTransport for t in transports) and any(
        t is not None for t in transports
    )


def in_flight_limit(value: object) -> int | None:
    """Check a ``max_in_flight`` given as a number (or None: no gate)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError("must be an int > 0, None or 'pool'", field="max_in_flight")
    return value


# Control characters a header must not hold (RFC 9110 5.5: HTAB is the only one allowed).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_NAMES = {"\r": "carriage return (CR)", "\n": "line feed (LF)", "\x00": "NUL byte"}


def check_headers(request: Request) -> None:
    """Refuse a header holding CR, LF, NUL or another control character before
    anything is sent: :class:`lamina.ConfigError` naming the header, never its value
    (e.g. a token read from a file with its trailing newline)."""
    for name, value in request.headers.multi_items():
        found = _CONTROL.search(value)
        part = "value"
        if found is None:
            found = _CONTROL.search(name)
            if found is None:
                continue
            part, name = "name", name.encode("unicode_escape").decode("ascii")
        char = found.group()
        what = _CONTROL_NAMES.get(char, f"control character 0x{ord(char):02x}")
        raise ConfigError(
            f"header {part} holds a {what}; nothing was sent (strip it, e.g. token.strip())",
            field=name,
            endpoint=request.endpoint,
        )


async def _read_limited(
    http_response: httpx.Response, headers: Headers, request: Request, limit: int
) -> bytes:
    """Read the raw body, decoding it here so that the limit applies to decoded bytes."""
    status = http_response.status_code
    codings = content_codings(headers, request, status)
    if not codings:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLarge(limit=limit, request=request, status_code=status)
    if http_response.is_stream_consumed:  # built in memory (MockTransport): httpx decoded it
        decoder = BodyDecoder([], limit, request, status)
        decoder.feed(http_response.content)
        return decoder.finish()
    decoder = BodyDecoder(codings, limit, request, status)
    async for raw in http_response.aiter_raw():
        decoder.feed(raw)
    return decoder.finish()


def _pool_size(client_options: dict[str, Any]) -> int | None:
    """The connection limit of a client built with ``client_options``."""
    limits = client_options.get("limits", httpx.Limits(max_connections=100))
    size = getattr(limits, "max_connections", None)
    return size if isinstance(size, int) and size > 0 else None


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once: loading the CA bundle takes ~100 ms."""
    return httpx.create_ssl_context()


@functools.cache
def _warm_up() -> None:
    """Import what httpcore imports lazily on its first request (anyio's asyncio
    backend, ~100 ms), so that cost is paid here and not inside a call's timeout."""
    for module in ("sniffio", "anyio._backends._asyncio"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), parts.port or default)


def _redirected(request: Request, status: int, location: str) -> Request:
    target = urljoin(request.url, location)
    method, json_body, content = request.method, request.json, request.content
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, json_body, content = "GET", None, None
    headers = request.headers
    if _origin(target) != _origin(request.url):
        headers = headers.copy_with(remove=[k for k in headers if is_secret_header(k)])
    if json_body is None and content is None:
        headers = headers.copy_with(remove=["content-type", "content-length"])
    # The query of the new location replaces ours: never carry params to another URL.
    return request.replace(
        method=method, url=target, headers=headers, params={}, json=json_body, content=content
    )


def _map_error(exc: httpx.HTTPError, request: Request) -> Exception:
    text = str(exc) or "connection closed or reset by the peer"
    detail = scrub(f"{type(exc).__name__}: {text}", secret_values(request))
    if isinstance(exc, httpx.ConnectTimeout):  # the server (or the way to it) failed
        return ConnectTimeout(detail, request=request)
    if isinstance(exc, httpx.TimeoutException):  # a pool timeout: nothing was sent
        sent = not isinstance(exc, httpx.PoolTimeout)
        return TimeoutError(detail, request=request, request_sent=sent)
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(detail, request=request)
    if isinstance(exc, httpx.DecodingError):
        return ParseError(f"could not decode the body ({detail})", request=request)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ConfigError(detail, field="url", endpoint=request.endpoint)
    return LaminaTransportError(detail, request=request)
