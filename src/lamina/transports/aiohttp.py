"""AiohttpTransport: lamina's requests on one ``aiohttp.ClientSession``, faster per call
than httpx on loopback. Install with ``pip install lamina[aiohttp]``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import inspect
import json as jsonlib
import re
import sys
from collections.abc import AsyncGenerator
from typing import Any, Literal

import httpx

try:
    import aiohttp
    from yarl import URL
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("AiohttpTransport needs aiohttp: pip install 'lamina[aiohttp]'") from exc

from .._clock import running_loop
from .._core import Request, Response
from .._errors import ConfigError, ConnectTimeout, TimeoutError
from .._headers import Headers
from ._decoding import BodyDecoder
from ._shared import (
    DEFAULT_MAX_RESPONSE_BYTES,
    REDIRECT_STATUSES,
    SentMarker,
    has_body,
    map_error,
    open_body_of,
    request_headers,
)
from .base import BaseTransport

__all__ = ["AiohttpTransport"]

_SESSION_OPTIONS = frozenset(inspect.signature(aiohttp.ClientSession.__init__).parameters) - {
    "self",
    "base_url",
}
_NO_CONTENT_TYPE = frozenset({"Content-Type"})
#: What aiohttp raises that lamina maps (:data:`lamina.transports._shared.ERRORS`).
_CLIENT_ERRORS = (aiohttp.ClientError, builtins.TimeoutError, OSError, httpx.InvalidURL)


class AiohttpTransport(BaseTransport):
    """Send lamina requests with one ``aiohttp.ClientSession``.

    The session is created lazily inside the running event loop (a new loop gets
    a new one) with ``auto_decompress=False`` and no aiohttp timeout (timeouts
    belong to ``TimeoutLayer``); ``session_options`` are passed to it. Pass
    ``session`` to use your own (you close it; it must have
    ``auto_decompress=False``). aiohttp's hidden resend of a request dropped by a
    reused connection is switched off: every attempt is one the retry layer counted.
    ``Response.http`` is the ``aiohttp.ClientResponse``.

    The contract is HttpxTransport's (redirects, the bounded decoder for every
    Content-Encoding chain, error mapping, header checks). At most ``max_in_flight``
    requests are inside the session at once, by default the connector's ``limit``
    (100 in aiohttp), and at most its ``limit_per_host`` to one (scheme, host, port)
    (``max_in_flight_per_host``); the rest wait their turn here. A call whose timeout
    fires while it waits here, or in an owned session's pool, has sent nothing
    (``TimeoutError.request_sent`` is False): it is retried whatever its method and a
    circuit breaker does not count it. One whose timeout fires while an owned session
    connects is a ``ConnectTimeout``: nothing sent either, but the breaker counts it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        follow_redirects: bool = False,
        max_redirects: int = 10,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_in_flight: int | Literal["pool"] | None = "pool",
        **session_options: Any,
    ) -> None:
        if session is not None and session_options:
            raise ConfigError("pass either session or session options, not both", field="session")
        if session is not None and session.auto_decompress:
            raise ConfigError(
                "create the session with auto_decompress=False so that "
                "max_response_bytes applies to decoded bytes",
                field="session",
            )
        for name in session_options:
            if name not in _SESSION_OPTIONS:
                raise ConfigError("not an aiohttp.ClientSession option", field=name)
        if session_options.get("auto_decompress", False):
            raise ConfigError("must be False (lamina decodes the body)", field="auto_decompress")
        if session is None:  # aiohttp's default connector holds 100 connections
            connector = session_options.get("connector")
            pool = getattr(connector, "limit", 100) if connector is not None else 100
        else:
            connector = session.connector
            pool = getattr(connector, "limit", 0)
        per_host = getattr(connector, "limit_per_host", 0)
        super().__init__(
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
            max_response_bytes=max_response_bytes,
            max_in_flight=max_in_flight,
            pool=pool if isinstance(pool, int) and pool > 0 else None,
            per_host=per_host if isinstance(per_host, int) and per_host > 0 else None,
        )
        if session is not None:
            _no_hidden_retries(session)
        self._owns_session = session is None
        self._session = session
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keeper: AsyncGenerator[None, None] | None = None
        self._options = session_options

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session (None until the first call when this transport owns it)."""
        return self._session

    async def _session_for(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        session = self._session
        if not self._owns_session:
            assert session is not None
            return session
        if session is not None and not session.closed:  # its loop ended without closing it
            _drop(session)
        options = dict(self._options)
        options["auto_decompress"] = False
        options.setdefault("timeout", aiohttp.ClientTimeout(total=None))
        session = aiohttp.ClientSession(**options)
        # The connector reports when a request has its connection: a cancellation before
        # that (waiting in the pool, connecting) sent nothing. A session passed in has no
        # such report. (Not an aiohttp TraceConfig: any trace makes aiohttp send every
        # request event, about a tenth of a call's CPU.)
        _mark_connections(session.connector)
        _no_hidden_retries(session)
        # A started async generator is closed by the loop's shutdown_asyncgens()
        # (asyncio.run, pytest-asyncio): the session is closed before its loop is.
        self._keeper = _close_at_shutdown(session)
        await anext(self._keeper)
        self._session = session
        self._loop = loop
        return session

    async def _send_now(self, request: Request) -> Response:
        loop = running_loop()
        session = self._session
        if session is None or loop is not self._loop:
            session = await self._session_for(loop)
        limit = request.extensions.get("max_response_bytes", self.max_response_bytes)
        headers = request_headers(request)
        content = request.content
        skip: frozenset[str] | None = None  # None: aiohttp's fast path, no set to merge
        if request.json is not None and content is None:
            content = jsonlib.dumps(
                request.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            if "content-type" not in request.headers:
                headers.append(("Content-Type", "application/json"))
        elif content is not None and "content-type" not in request.headers:
            skip = _NO_CONTENT_TYPE  # like httpx: raw bytes get no Content-Type
        sent: SentMarker | None = None
        task: asyncio.Task[Any] | None = None
        send: Any = session.request  # a session passed in (maybe a subclass), as its owner calls it
        if self._owns_session:  # our own ClientSession: its coroutine, without the wrapper
            sent = SentMarker()
            task = _current_task(loop)
            if task is not None:
                _MARKERS[task] = sent
            # its coroutine without the wrapper (private in aiohttp 3.x: the public one if gone)
            send = getattr(session, "_request", session.request)
        try:
            http_response = await send(
                request.method,
                _url(request),
                headers=headers,
                data=content,
                allow_redirects=False,
                skip_auto_headers=skip,
            )
        except asyncio.CancelledError:  # e.g. the attempt timed out
            marked = sent.cancellation() if sent is not None else None
            if marked is not None:  # connecting, or waiting in aiohttp's pool
                raise marked from None
            raise
        except _CLIENT_ERRORS as exc:
            error = map_error(exc, request)
            if isinstance(error, ConnectTimeout) and sent is not None and not sent.connecting:
                # aiohttp's own connect timeout also covers waiting in its pool: not the upstream's
                error = TimeoutError(str(error), request=request, request_sent=False)
            raise error from exc
        finally:
            if task is not None:
                del _MARKERS[task]
        response_headers = Headers.from_pairs(list(http_response.headers.items()))
        try:
            status = http_response.status
            if self.follow_redirects and status in REDIRECT_STATUSES:
                body = b""
            else:  # read here, not in a coroutine of its own: one object less per call
                how = _open_body(http_response, request, limit)
                if how is True:
                    body = await http_response.read()
                elif how is False:  # left unread: the connection cannot be reused
                    http_response.close()
                    body = b""
                else:
                    body = await how.read(http_response.content.iter_any())
        except _CLIENT_ERRORS as exc:
            http_response.close()
            raise map_error(exc, request) from exc
        except BaseException:  # limit passed, cancelled: the connection cannot be reused
            http_response.close()
            raise
        http_response.release()
        return Response(
            status,
            headers=response_headers,
            content=body,
            request=request,
            http=http_response,
        )

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            keeper, self._keeper = self._keeper, None
            if self._loop is asyncio.get_running_loop() and keeper is not None:
                if getattr(keeper, "ag_running", False):  # shutdown_asyncgens() is closing it
                    return
                await keeper.aclose()  # closes the session
            elif not session.closed:
                _drop(session)

    def __repr__(self) -> str:
        owned = "owned" if self._owns_session else "borrowed"
        return f"AiohttpTransport({owned} session, follow_redirects={self.follow_redirects})"


#: The marker of the request each task is sending on an owned session (set around the
#: request): a task sends one request at a time, and aiohttp gets its connection in the
#: task that sends. A dict entry per request costs less than a context variable's
#: set and reset (no token, no new context mapping: fewer objects for the collector).
_MARKERS: dict[asyncio.Task[Any], SentMarker] = {}

if sys.version_info >= (3, 12):

    def _current_task(loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
        return asyncio.current_task(loop)

else:  # asyncio.current_task(loop) is a Python function on 3.11: its dict, directly
    _current_task = asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]


def _marker() -> SentMarker | None:
    """The marker of the request the running task is sending, if lamina's."""
    if not _MARKERS:
        return None
    task = _current_task(asyncio.get_running_loop())
    return None if task is None else _MARKERS.get(task)


def _mark_connections(connector: aiohttp.BaseConnector | None) -> None:
    """Make ``connector`` mark the current request's :class:`SentMarker` (``_MARKERS``):
    ``connecting`` when it starts to make a connection (DNS, TCP, TLS), ``sent`` once
    it hands a connection over (new or reused). Anyone else's requests carry no marker
    and go through unchanged."""
    if connector is None or getattr(connector, "_lamina_marks", False):
        return
    connect = connector.connect
    create_connection = connector._create_connection

    async def marking_connect(*args: Any, **kwargs: Any) -> Any:
        marker = _marker()
        connection = await connect(*args, **kwargs)
        if marker is not None:
            marker.sent = True
        return connection

    async def marking_create_connection(*args: Any, **kwargs: Any) -> Any:
        marker = _marker()
        if marker is not None:
            marker.connecting = True
        return await create_connection(*args, **kwargs)

    connector.connect = marking_connect  # type: ignore[method-assign]
    connector._create_connection = marking_create_connection  # type: ignore[method-assign]
    connector._lamina_marks = True  # type: ignore[attr-defined]


def _no_hidden_retries(session: aiohttp.ClientSession) -> None:
    """aiohttp silently resends an idempotent request once when a reused connection
    drops it. Retries belong to RetryLayer, which counts them (attempts, breaker,
    metrics), so that one is switched off (there is no public option for it)."""
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False


async def _close_at_shutdown(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await session.close()


def _drop(session: aiohttp.ClientSession) -> None:
    """Close a session that belongs to another (maybe closed) loop, without awaiting."""
    connector = session.connector
    session.detach()
    if connector is not None:
        with contextlib.suppress(Exception):
            connector._close()


def _url(request: Request) -> URL:
    """The URL exactly as HttpxTransport would send it.

    httpx normalises and merges ``params``; yarl then takes it as already encoded,
    so that ``%2E%2E`` stays a literal segment and is never resolved to ``..``.
    """
    if not request.params:
        return _parse_url(request.url)
    url = httpx.URL(request.url).copy_merge_params(request.params)
    return URL(str(url), encoded=True)


@functools.lru_cache(maxsize=2048)
def _parse_url(url: str) -> URL:
    if _is_plain(url):  # httpx would send it unchanged: skip its parser (~20x the cost)
        return URL(url, encoded=True)
    return URL(str(httpx.URL(url)), encoded=True)


# A URL that httpx leaves exactly as it is: http(s), a lower-case host name or a valid
# IPv4 address, a port that is not the scheme's default, a path and query of characters
# that need no encoding, no percent sign and no dot segment (checked against httpx on
# random URLs of these characters). Anything else goes through httpx.URL.
_PLAIN_URL = re.compile(
    r"(?P<scheme>https?)://(?P<host>[a-z0-9-]+(?:\.[a-z0-9-]+)*)(?::(?P<port>[0-9]{1,5}))?"
    r"(?:/[A-Za-z0-9\-_~!$&'()*+,;=:@.]*)+(?:\?[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*)?"
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_plain(url: str) -> bool:
    match = _PLAIN_URL.fullmatch(url)
    if match is None or "/." in url:
        return False
    host = match.group("host")
    if host[-1].isdigit() and _IPV4.fullmatch(host) is None:
        return False
    port = match.group("port")
    return port is None or (
        port[0] != "0" and int(port) <= 65535 and int(port) != _DEFAULT_PORTS[match.group("scheme")]
    )


def _open_body(
    http_response: aiohttp.ClientResponse, request: Request, limit: int
) -> BodyDecoder | bool:
    """How to read the body (:func:`lamina.transports._shared.open_body`): True to read
    it whole, False to leave it unread, else the decoder that reads it, so that the
    limit applies to decoded bytes. The head is checked on aiohttp's own headers (their
    lookups cost less)."""
    if not has_body(request, http_response.status):
        return True
    raw = http_response.headers
    return open_body_of(
        raw.getall("Content-Encoding", ()),
        raw.get("Content-Length", ""),
        request,
        http_response.status,
        limit,
    )
