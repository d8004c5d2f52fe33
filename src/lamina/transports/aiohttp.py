"""The innermost service on aiohttp: faster per call than httpx on loopback.

Install with ``pip install lamina[aiohttp]``. The contract is HttpxTransport's:
same error mapping, redirects off by default (credential headers dropped when
the origin changes), the same bounded decoder for every Content-Encoding chain
(the body limit applies to *decoded* bytes while streaming).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import inspect
import json as jsonlib
from collections.abc import AsyncGenerator
from typing import Any, Literal

import httpx

try:
    import aiohttp
    from yarl import URL
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("AiohttpTransport needs aiohttp: pip install 'lamina[aiohttp]'") from exc

from .._closeable import AsyncCloseable
from .._core import Request, Response
from .._errors import ConfigError, ConnectError, ConnectTimeout, ResponseTooLarge, TimeoutError
from .._errors import TransportError as LaminaTransportError
from .._headers import Headers
from .._redact import scrub, secret_values
from ._decoding import ACCEPT_ENCODING, BodyDecoder, content_codings
from .httpx import (
    DEFAULT_MAX_RESPONSE_BYTES,
    REDIRECT_STATUSES,
    InFlightGate,
    in_flight_limit,
    send,
)

__all__ = ["AiohttpTransport"]

_SESSION_OPTIONS = frozenset(inspect.signature(aiohttp.ClientSession.__init__).parameters) - {
    "self",
    "base_url",
}
_NO_CONTENT_TYPE = frozenset({"Content-Type"})


class AiohttpTransport(AsyncCloseable):
    """Send lamina requests with one ``aiohttp.ClientSession``.

    The session is created lazily inside the running event loop (a new loop gets
    a new one) with ``auto_decompress=False`` and no aiohttp timeout (timeouts
    belong to ``TimeoutLayer``); ``session_options`` are passed to it. Pass
    ``session`` to use your own (you close it; it must have
    ``auto_decompress=False``). aiohttp's hidden resend of a request dropped by a
    reused connection is switched off: every attempt is one the retry layer counted.
    ``Response.http`` is the ``aiohttp.ClientResponse``.

    At most ``max_in_flight`` requests are inside the session at once, by default
    the connector's ``limit`` (100 in aiohttp); the rest wait their turn here, as
    on HttpxTransport. A call whose timeout fires while it waits here has sent
    nothing (``TimeoutError.request_sent`` is False): it is retried whatever its
    method and a circuit breaker does not count it. Inside aiohttp's pool that
    would not be known.
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
        if max_response_bytes <= 0:
            raise ConfigError("must be > 0", field="max_response_bytes")
        if max_redirects < 0:
            raise ConfigError("must be >= 0", field="max_redirects")
        if max_in_flight == "pool":
            if session is None:  # aiohttp's default connector holds 100 connections
                limit = getattr(session_options.get("connector"), "limit", 100)
            else:
                limit = getattr(session.connector, "limit", 0)
            max_in_flight = limit if isinstance(limit, int) and limit > 0 else None
        else:
            max_in_flight = in_flight_limit(max_in_flight)
        if session is not None:
            _no_hidden_retries(session)
        self._owns_session = session is None
        self._session = session
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keeper: AsyncGenerator[None, None] | None = None
        self._options = session_options
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self.max_response_bytes = max_response_bytes
        self.max_in_flight = max_in_flight
        self._gate = InFlightGate(max_in_flight) if max_in_flight is not None else None

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
        _no_hidden_retries(session)
        # A started async generator is closed by the loop's shutdown_asyncgens()
        # (asyncio.run, pytest-asyncio): the session is closed before its loop is.
        self._keeper = _close_at_shutdown(session)
        await anext(self._keeper)
        self._session = session
        self._loop = loop
        return session

    async def __call__(self, request: Request) -> Response:
        return await send(self._send_once, request, self.follow_redirects, self.max_redirects)

    async def _send_once(self, request: Request) -> Response:
        gate = self._gate
        if gate is None:
            return await self._send_now(request)
        return await gate.send(self._send_now, request)

    async def _send_now(self, request: Request) -> Response:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or loop is not self._loop:
            session = await self._session_for(loop)
        limit = request.extensions.get("max_response_bytes", self.max_response_bytes)
        headers = request.headers.multi_items()
        if "accept-encoding" not in request.headers:
            headers.append(("Accept-Encoding", ACCEPT_ENCODING))
        content = request.content
        skip: frozenset[str] = frozenset()
        if request.json is not None and content is None:
            content = jsonlib.dumps(
                request.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            if "content-type" not in request.headers:
                headers = [*headers, ("Content-Type", "application/json")]
        elif content is not None and "content-type" not in request.headers:
            skip = _NO_CONTENT_TYPE  # like httpx: raw bytes get no Content-Type
        try:
            url = _url(request)
            http_response = await session.request(
                request.method,
                url,
                headers=headers,
                data=content,
                allow_redirects=False,
                skip_auto_headers=skip,
            )
        except (httpx.InvalidURL, aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise ConfigError(
                scrub(f"invalid URL ({type(exc).__name__})", secret_values(request)),
                field="url",
                endpoint=request.endpoint,
            ) from exc
        except (aiohttp.ClientError, builtins.TimeoutError, OSError) as exc:
            raise _map_error(exc, request) from exc
        response_headers = Headers.from_pairs(list(http_response.headers.items()))
        try:
            status = http_response.status
            skip_body = self.follow_redirects and status in REDIRECT_STATUSES
            body = (
                b""
                if skip_body
                else await _read_limited(http_response, response_headers, request, limit)
            )
        except (aiohttp.ClientError, builtins.TimeoutError, OSError) as exc:
            http_response.close()
            raise _map_error(exc, request) from exc
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
                await keeper.aclose()  # closes the session
            elif not session.closed:
                _drop(session)

    def __repr__(self) -> str:
        owned = "owned" if self._owns_session else "borrowed"
        return f"AiohttpTransport({owned} session, follow_redirects={self.follow_redirects})"


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
    return URL(str(httpx.URL(url)), encoded=True)


async def _read_limited(
    http_response: aiohttp.ClientResponse, headers: Headers, request: Request, limit: int
) -> bytes:
    """Read the raw body, decoding it here so that the limit applies to decoded bytes."""
    status = http_response.status
    codings = content_codings(headers, request, status)
    if not codings:
        declared = headers.get("content-length", "")
        if declared.isdigit():
            if int(declared) > limit:
                raise ResponseTooLarge(limit=limit, request=request, status_code=status)
            return await http_response.read()  # framed by a Content-Length within the limit
    decoder = BodyDecoder(codings, limit, request, status)
    async for raw in http_response.content.iter_any():
        decoder.feed(raw)
    return decoder.finish()


def _map_error(exc: BaseException, request: Request) -> Exception:
    text = str(exc) or "connection closed or reset by the peer"
    detail = scrub(f"{type(exc).__name__}: {text}", secret_values(request))
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # connecting timed out: nothing sent
        return ConnectTimeout(detail, request=request)
    if isinstance(exc, builtins.TimeoutError):  # ServerTimeoutError, SocketTimeoutError
        return TimeoutError(detail, request=request, request_sent=True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(detail, request=request)
    return LaminaTransportError(detail, request=request)
