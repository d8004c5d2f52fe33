"""HttpxTransport: lamina's requests on one pooled ``httpx.AsyncClient`` (the default)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import ssl
from typing import Any, Literal

import httpx

from .._core import Request, Response
from .._errors import CANCELLED_BEFORE_SENDING, ConfigError
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

    async def _send_now(self, request: Request) -> Response:
        limit = request.extensions.get("max_response_bytes", self.max_response_bytes)
        sent = _HttpcoreTrace() if self._traced else None
        try:
            url: str | httpx.URL = request.url
            if request.params:  # merge: httpx would replace the URL's own query (httpx#3433)
                url = httpx.URL(request.url).copy_merge_params(request.params)
            http_request = self.client.build_request(
                request.method,
                url,
                headers=request_headers(request),
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
        """Close the client if this transport created it."""
        if self._owns_client:
            await self.client.aclose()

    def __repr__(self) -> str:
        owned = "owned" if self._owns_client else "borrowed"
        return f"HttpxTransport({owned} client, follow_redirects={self.follow_redirects})"


class _HttpcoreTrace(SentMarker):
    """httpcore's ``trace`` extension: notes when the request's headers start to go out."""

    __slots__ = ()

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


async def _read_body(
    http_response: httpx.Response, headers: Headers, request: Request, limit: int
) -> bytes:
    """Read the raw body, decoding it here so that the limit applies to decoded bytes."""
    status = http_response.status_code
    decoder = open_body(headers, request, status, limit)
    if http_response.is_stream_consumed:  # built in memory (MockTransport): httpx decoded it
        decoder = BodyDecoder([], limit, request, status)
        decoder.feed(http_response.content)
        return decoder.finish()
    if decoder is None:
        return await http_response.aread()
    return await decoder.read(http_response.aiter_raw())


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
