"""PyreqwestTransport: lamina's requests on one ``pyreqwest.client.Client`` (Rust reqwest),
the fastest per call. Install with ``pip install lamina[pyreqwest]``.
"""

from __future__ import annotations

import asyncio
import functools
import json as jsonlib
from datetime import timedelta
from typing import Any, Literal

import httpx

try:
    from pyreqwest.client import Client, ClientBuilder
    from pyreqwest.exceptions import PyreqwestError
    from pyreqwest.response import Response as PyreqwestResponse
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "PyreqwestTransport needs pyreqwest: pip install 'lamina[pyreqwest]'"
    ) from exc

from .._clock import running_loop
from .._core import Request, Response
from .._errors import CANCELLED_BEFORE_SENDING, ConfigError
from .._expiry import ATTEMPT_EXPIRY
from .._headers import Headers
from ._shared import (
    DEFAULT_MAX_RESPONSE_BYTES,
    REDIRECT_STATUSES,
    map_error,
    open_body,
    request_headers,
)
from .base import BaseTransport

__all__ = ["PyreqwestTransport"]

#: What pyreqwest raises that lamina maps (:data:`lamina.transports._shared.ERRORS`).
_CLIENT_ERRORS = (PyreqwestError, ValueError, httpx.InvalidURL)
#: The builder options lamina owns: decoding (the bounded decoder) and redirects (its loop).
_OWNED = frozenset(
    {"gzip", "brotli", "zstd", "deflate", "follow_redirects", "max_redirects", "base_url"}
)
_OPTIONS = frozenset(n for n in dir(ClientBuilder) if not n.startswith("_")) - _OWNED - {"build"}
#: How long pyreqwest's own timeout outlives the attempt's (seconds): by then a request
#: whose attempt timed out (it goes on in Rust) has ended, its connection free again.
GRACE = 0.02


class PyreqwestTransport(BaseTransport):
    """Send lamina requests with one ``pyreqwest`` client (``pip install lamina[pyreqwest]``).

    The client is built lazily inside the running event loop (a new loop gets a new one)
    with no decompression (lamina's bounded decoder reads the raw body) and no redirects
    (lamina's loop follows them when ``follow_redirects``); ``client_options`` name
    ``pyreqwest.client.ClientBuilder`` methods and their argument (``http2=True`` for
    HTTP/2, ``max_connections=10``, ``connect_timeout=timedelta(...)``).
    ``Response.http`` is the ``pyreqwest.response.Response``.

    Cancelling a task does not stop pyreqwest's request: it goes on until it ends, holding
    its connection. So each attempt carries pyreqwest's own timeout, the attempt's
    (``TimeoutLayer``) plus ``GRACE``; a request with no ``TimeoutLayer`` above it has
    none and, cancelled, runs on until the upstream answers.

    At most ``max_in_flight`` requests are inside the client at once (default: its
    ``max_connections``, else 100); the rest wait in lamina's gate, which is then the
    only pool: the client opens a connection for every request it is given, so one still
    running after its task was cancelled holds no other request up. With
    ``max_connections`` the client waits for a connection itself; an attempt that times
    out there waits ``GRACE`` for pyreqwest's verdict (a pool wait: nothing sent).

    pyreqwest does not say whether a request was still connecting when its attempt
    timed out: that is a ``TimeoutError`` with ``request_sent=True`` (not a
    ``ConnectTimeout``), unless its own ``connect_timeout=`` fired first.
    """

    def __init__(
        self,
        *,
        follow_redirects: bool = False,
        max_redirects: int = 10,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_in_flight: int | Literal["pool"] | None = "pool",
        **client_options: Any,
    ) -> None:
        for name in client_options:
            if name not in _OPTIONS:
                reason = (
                    "set by lamina" if name in _OWNED else "not a pyreqwest ClientBuilder option"
                )
                raise ConfigError(reason, field=name)
        pool = client_options.get("max_connections") or 100
        super().__init__(
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
            max_response_bytes=max_response_bytes,
            max_in_flight=max_in_flight,
            pool=pool,
        )
        self._options = client_options
        #: the client's own limit of requests in flight, if any (its pool waits)
        self._client_pool: int | None = client_options.get("max_connections")
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> Client | None:
        """The client (None until the first call)."""
        return self._client

    def _client_for(self, loop: asyncio.AbstractEventLoop) -> Client:
        builder = (
            ClientBuilder()
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .follow_redirects(False)
        )
        for name, value in self._options.items():
            builder = getattr(builder, name)(value)
        self._client = client = builder.build()
        self._loop = loop
        return client

    async def _send_now(self, request: Request) -> Response:
        loop = running_loop()
        client = self._client
        if client is None or loop is not self._loop:
            client = self._client_for(loop)
        limit = request.extensions.get("max_response_bytes", self.max_response_bytes)
        try:
            builder = client.request(request.method, _url(request))
            headers = request_headers(request)
            if request.json is not None and request.content is None:
                content = jsonlib.dumps(
                    request.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False
                ).encode()
                if "content-type" not in request.headers:
                    headers.append(("Content-Type", "application/json"))
                builder.body_bytes(content)
            elif request.content is not None:
                builder.body_bytes(request.content)
            builder.headers(headers)
            expiry = ATTEMPT_EXPIRY.get()
            if expiry is not None:
                builder.timeout(timedelta(seconds=max(expiry - loop.time(), 0.0) + GRACE))
            streamed = builder.build_streamed()
        except _CLIENT_ERRORS as exc:
            raise map_error(exc, request) from exc
        try:
            if self._client_pool is None:  # lamina's gate is the pool: no wait in the client
                http_response = await _open(streamed)
            else:
                http_response = await _open_shielded(streamed, expiry, loop)
        except _CLIENT_ERRORS as exc:
            raise map_error(exc, request) from exc
        try:
            response_headers = Headers.from_pairs(list(http_response.headers.items()))
            status = http_response.status
            skip_body = self.follow_redirects and status in REDIRECT_STATUSES
            body = (
                b""
                if skip_body
                else await _read_body(http_response, response_headers, request, limit)
            )
        except _CLIENT_ERRORS as exc:
            raise map_error(exc, request) from exc
        finally:
            await streamed.__aexit__(None, None, None)
        return Response(
            status, headers=response_headers, content=body, request=request, http=http_response
        )

    async def aclose(self) -> None:
        """Close the client."""
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.close()

    def __repr__(self) -> str:
        return f"PyreqwestTransport(follow_redirects={self.follow_redirects})"


async def _open(streamed: Any) -> PyreqwestResponse:
    try:
        response: PyreqwestResponse = await streamed.__aenter__()
    except asyncio.CancelledError:  # pyreqwest's says "Request was cancelled": the task's
        raise asyncio.CancelledError() from None  # has no arguments (the gate adds its own)
    return response


async def _open_shielded(
    streamed: Any, expiry: float | None, loop: asyncio.AbstractEventLoop
) -> PyreqwestResponse:
    """Open the response in a task of its own, so that pyreqwest's verdict on a request
    whose attempt timed out can still be read (a wait for the client's pool: nothing sent)."""
    opening = loop.create_task(_open(streamed))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:  # e.g. the attempt timed out: pyreqwest goes on
        opening.add_done_callback(functools.partial(_forget, streamed))
        raise await _cancellation(opening, expiry, loop) from None


async def _cancellation(
    opening: asyncio.Task[PyreqwestResponse],
    expiry: float | None,
    loop: asyncio.AbstractEventLoop,
) -> asyncio.CancelledError:
    """The cancellation to raise: when the attempt's timeout fired, pyreqwest's own
    timeout ends the request within ``GRACE`` and says whether it was still waiting for
    a connection (nothing sent); otherwise the task's cancellation as is."""
    if expiry is None or loop.time() < expiry:  # someone else cancelled: do not wait
        return asyncio.CancelledError()
    done, _ = await asyncio.wait((opening,), timeout=GRACE * 5)  # pyreqwest's timeout: GRACE
    if done and type(opening.exception()).__name__ == "PoolTimeoutError":
        return asyncio.CancelledError(CANCELLED_BEFORE_SENDING)
    return asyncio.CancelledError()


def _forget(streamed: Any, task: asyncio.Task[PyreqwestResponse]) -> None:
    """Collect the outcome of a request nobody waits for, closing what it opened."""
    if not task.cancelled() and task.exception() is None:
        task.get_loop().create_task(streamed.__aexit__(None, None, None))


def _url(request: Request) -> str:
    """The URL as HttpxTransport would send it (``params`` merged the way httpx does)."""
    if not request.params:
        return _parse_url(request.url)
    return str(httpx.URL(request.url).copy_merge_params(request.params))


@functools.lru_cache(maxsize=2048)
def _parse_url(url: str) -> str:
    return str(httpx.URL(url))


async def _read_body(
    http_response: PyreqwestResponse, headers: Headers, request: Request, limit: int
) -> bytes:
    """Read the raw body, decoding it here so that the limit applies to decoded bytes."""
    decoder = open_body(headers, request, http_response.status, limit)
    if decoder is False:  # left unread
        return b""
    reader = http_response.body_reader
    if decoder is True:
        return bytes(await reader.bytes())
    return await decoder.read(_chunks(reader))


async def _chunks(reader: Any) -> Any:
    while (chunk := await reader.read_chunk()) is not None:
        yield bytes(chunk)
