"""HttpxTransport: lamina's requests on one pooled ``httpx.AsyncClient`` (the default)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import ssl
from collections.abc import AsyncGenerator
from typing import Any, Literal

import httpx

from .._clock import running_loop
from .._core import Request, Response
from .._errors import ConfigError
from .._headers import Headers
from ._decoding import BodyDecoder
from ._shared import (
    DEFAULT_MAX_RESPONSE_BYTES,
    REDIRECT_STATUSES,
    SentMarker,
    map_error,
    open_body,
    request_headers,
)
from .base import BaseTransport

__all__ = ["HttpxTransport"]

#: What httpx raises that lamina maps (:data:`lamina.transports._shared.ERRORS`).
_CLIENT_ERRORS = (httpx.HTTPError, httpx.InvalidURL)


class HttpxTransport(BaseTransport):
    """Send lamina requests with one pooled ``httpx.AsyncClient``.

    Pass ``client`` to use your own client (you close it), or ``transport``
    (any httpx transport, e.g. ``httpx.MockTransport``) and ``client_options``
    to have one built and owned here. Timeouts belong to ``TimeoutLayer``, so
    an owned client has no httpx timeout unless you pass ``timeout=``.

    An owned client belongs to the event loop it first runs on (its connections do):
    another loop gets a new client, built with the same options, and each is closed
    when its loop shuts down (``asyncio.run``, ``execute_sync()``) or by ``aclose()``.
    ``client`` is the latest one.

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
        super().__init__(
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
            max_response_bytes=max_response_bytes,
            max_in_flight=max_in_flight,
            pool=_pool_size(client_options) if client is None else None,
        )
        _warm_up()
        self._owns_client = client is None
        self._options: dict[str, Any] = {}
        if client is None:
            client_options.setdefault("timeout", None)
            if "verify" not in client_options and "cert" not in client_options:
                client_options["verify"] = _default_ssl_context()
            self._options = {"transport": transport, "http2": http2, **client_options}
            client = self._new_client()
        self.client = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keeper: AsyncGenerator[None, bool] | None = None
        # httpcore reports when a request starts to connect and to go out: a cancellation
        # before that sent nothing. Another httpx transport may not report it.
        self._traced = _httpcore_only(client)

    def _new_client(self) -> httpx.AsyncClient:
        try:
            return httpx.AsyncClient(**self._options)
        except ImportError as exc:
            raise ConfigError(f"{exc}; install lamina[http2] for HTTP/2", field="http2") from exc

    async def _client_for(self, loop: asyncio.AbstractEventLoop) -> httpx.AsyncClient:
        """The owned client of ``loop``: the first one, unused so far, or a new one."""
        client = self.client
        if self._loop is not None or client.is_closed:
            if not client.is_closed:  # its loop ended without closing it
                _drop(client, self._keeper)
            client = self.client = self._new_client()
        # A started async generator is closed by the loop's shutdown_asyncgens()
        # (asyncio.run, pytest-asyncio): the client is closed before its loop is.
        self._keeper = _close_at_shutdown(client)
        await anext(self._keeper)
        self._loop = loop
        return client

    async def _send_now(self, request: Request) -> Response:
        limit = request.extensions.get("max_response_bytes", self.max_response_bytes)
        client = self.client
        if self._owns_client:
            loop = running_loop()
            if loop is not self._loop:
                client = await self._client_for(loop)
        sent = _HttpcoreTrace() if self._traced else None
        try:
            url: str | httpx.URL = request.url
            if request.params:  # merge: httpx would replace the URL's own query (httpx#3433)
                url = httpx.URL(request.url).copy_merge_params(request.params)
            http_request = client.build_request(
                request.method,
                url,
                headers=request_headers(request),
                json=request.json,
                content=request.content,
                extensions={"trace": sent} if sent is not None else None,
            )
            http_response = await client.send(http_request, stream=True, follow_redirects=False)
        except asyncio.CancelledError:  # e.g. the attempt timed out
            marked = sent.cancellation() if sent is not None else None
            if marked is not None:  # connecting, or waiting in httpcore's pool
                raise marked from None
            raise
        except _CLIENT_ERRORS as exc:
            raise map_error(exc, request) from exc
        response_headers = Headers.from_pairs(http_response.headers.multi_items())
        try:
            status = http_response.status_code
            skip_body = self.follow_redirects and status in REDIRECT_STATUSES
            content = (
                b""
                if skip_body
                else await _read_body(http_response, response_headers, request, limit)
            )
        except _CLIENT_ERRORS as exc:
            raise map_error(exc, request) from exc
        finally:
            await http_response.aclose()
        return Response(
            status, headers=response_headers, content=content, request=request, http=http_response
        )

    async def aclose(self) -> None:
        """Close the client if this transport created it (a later call makes a new one)."""
        if not self._owns_client:
            return
        keeper, self._keeper = self._keeper, None
        bound, self._loop = self._loop, None
        client = self.client
        if bound is not None and bound is not asyncio.get_running_loop():
            if not client.is_closed:  # its loop ended without closing it
                _drop(client, keeper)
        elif keeper is not None:
            if getattr(keeper, "ag_running", False):  # shutdown_asyncgens() is closing it now
                return
            await keeper.aclose()  # closes the client
        else:
            await client.aclose()

    def __repr__(self) -> str:
        owned = "owned" if self._owns_client else "borrowed"
        return f"HttpxTransport({owned} client, follow_redirects={self.follow_redirects})"


_CONNECTING = ("connect_tcp.started", "connect_unix_socket.started", "start_tls.started")


class _HttpcoreTrace(SentMarker):
    """httpcore's ``trace`` extension: notes when the request starts to connect (a new
    connection) and when its headers start to go out."""

    __slots__ = ()

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        if name.endswith("send_request_headers.started"):  # http11. or http2.
            self.sent = True
        elif name.endswith(_CONNECTING):  # connection., or a proxy's
            self.connecting = True


def _httpcore_only(client: httpx.AsyncClient) -> bool:
    """True if every transport of ``client`` is httpx's own (httpcore, which traces)."""
    transports = [getattr(client, "_transport", None)]
    transports += list(getattr(client, "_mounts", {}).values())
    return all(t is None or type(t) is httpx.AsyncHTTPTransport for t in transports) and any(
        t is not None for t in transports
    )


async def _read_body(
    http_response: httpx.Response, headers: Headers, request: Request, limit: int
) -> bytes:
    """Read the raw body, decoding it here so that the limit applies to decoded bytes."""
    status = http_response.status_code
    decoder = open_body(headers, request, status, limit)
    if decoder is False:  # left unread: aclose() then closes the connection
        return b""
    if http_response.is_stream_consumed:  # built in memory (MockTransport): httpx decoded it
        decoder = BodyDecoder([], limit, request, status)
        decoder.feed(http_response.content)
        return decoder.finish()
    if decoder is True:
        return await http_response.aread()
    return await decoder.read(http_response.aiter_raw())


def _pool_size(client_options: dict[str, Any]) -> int | None:
    """The connection limit of a client built with ``client_options``."""
    limits = client_options.get("limits", httpx.Limits(max_connections=100))
    size = getattr(limits, "max_connections", None)
    return size if isinstance(size, int) and size > 0 else None


async def _close_at_shutdown(client: httpx.AsyncClient) -> AsyncGenerator[None, bool]:
    dropped = False
    try:
        dropped = yield
    finally:
        if not dropped:
            await client.aclose()


def _drop(client: httpx.AsyncClient, keeper: AsyncGenerator[None, bool] | None) -> None:
    """Forget a client whose loop ended without closing it (nothing can be awaited
    there): end its keeper without awaiting, close its sockets as far as httpcore lets
    them be reached."""
    if keeper is not None:
        with contextlib.suppress(StopAsyncIteration, RuntimeError):
            keeper.asend(True).send(None)
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        for connection in list(getattr(pool, "connections", ())):
            stream = getattr(getattr(connection, "_connection", None), "_network_stream", None)
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


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
