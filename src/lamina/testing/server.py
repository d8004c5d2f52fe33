"""A real HTTP/1.1 server on 127.0.0.1 for tests, demos and benchmarks.

It runs its own event loop in a background thread (or in a subprocess with
``python -m lamina.testing``), so any test, sync or async, can use it.
Routes (every route also takes ``?ms=N`` to wait N milliseconds first):

=========================  =====================================================
``/echo``                  JSON: method, path, query, headers, body
``/json``                  JSON: ``{"ok": true, "path": ..., "query": ...}``
``/status/{code}``         that status, JSON body
``/flaky/{key}``           first ``fail`` (default 2) calls per key answer
                           ``status`` (default 503), then 200
``/retry-after/{key}``     first ``fail`` calls answer 429 with Retry-After
                           ``seconds`` (or an HTTP-date with ``date=1``)
``/reset``                 connection reset (RST), no response
``/hang``                  never answers
``/drip``                  ``bytes`` bytes, one every ``interval`` ms
``/large``                 ``bytes`` bytes of text (``gzip=1`` to compress)
``/gzip-bomb``             gzip body inflating to ``bytes`` bytes; ``layers=N``
                           gzips it N times (``Content-Encoding: gzip, gzip``;
                           ``bytes`` defaults to 1 GiB then, ~2 KB on the wire)
``/text``                  an HTML page (not JSON)
``/invalid-json``          says JSON, is not
``/redirect``              ``status`` (302) to ``to``
``/__stats``               hits and arrival offsets per route, as JSON
``/slow-some/{key}``       the first ``first`` arrivals per key, and a seeded
                           ``rate`` of the later ones (``seed``), wait
                           ``slow_ms`` (1000); the others ``fast_ms`` (0);
                           an ``Idempotency-Key`` still in progress is a 409
``/capacity/{key}``        at most ``limit`` (8) requests per key served at
                           once, each for ``service_ms`` (10); the rest queue
=========================  =====================================================

Custom routes: ``server.route("/users/", handler)`` where
``handler(req: RecordedRequest) -> (status, body, headers)`` and ``body`` is
bytes, str or anything JSON-serialisable.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import random
import socket
import struct
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["LocalServer", "RecordedRequest", "Reply", "RouteHandler"]

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    arrived: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Reply = tuple[int, Any, dict[str, str]]  # status, body, headers
RouteHandler = Callable[[RecordedRequest], Reply]


class _Reset(Exception):
    pass


class _Hang(Exception):
    pass


class LocalServer:
    """Start with ``LocalServer().start()`` or ``with LocalServer() as server:``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._routes: dict[str, RouteHandler] = {}
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._counts: dict[str, int] = defaultdict(int)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._bombs: dict[tuple[int, int], bytes] = {}
        self._capacity: dict[str, asyncio.Semaphore] = {}  # /capacity/{key}, server loop only
        self._in_progress: set[tuple[str, str]] = set()  # /slow-some/ (path, idempotency key)
        self.started_at = time.monotonic()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> LocalServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # surfaced to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name="lamina-local-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    async def _open(self) -> None:
        self._stopping = asyncio.Event()
        # a large backlog: soak tests open hundreds of connections at once
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None
        assert self._stopping is not None
        self._stopping.set()
        self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:  # idle keep-alive connections
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests read ---------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + path

    def route(self, prefix: str, handler: RouteHandler) -> None:
        """Serve every path starting with ``prefix`` with ``handler``."""
        self._routes[prefix] = handler

    def hits(self, path: str | None = None) -> int:
        """Requests received for ``path`` (exact, query excluded), or in total."""
        with self._lock:
            if path is None:
                return len(self._log)
            return sum(1 for r in self._log if r.path == path)

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, in arrival order, optionally for one path."""
        with self._lock:
            return [r for r in self._log if path is None or r.path == path]

    def arrivals(self, path: str | None = None) -> list[float]:
        """Arrival times (``time.monotonic()``) of the requests for ``path``."""
        return [r.arrived for r in self.requests(path)]

    def reset(self) -> None:
        """Forget recorded requests and per-key failure counters."""
        with self._lock:
            self._log.clear()
            self._counts.clear()

    # -- serving -----------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                with self._lock:
                    self._log.append(request)
                keep_alive = request.headers.get("connection", "").lower() != "close"
                try:
                    await self._respond(request, writer)
                except _Reset:
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    writer.transport.abort()
                    return
                except _Hang:
                    assert self._stopping is not None
                    waits = {
                        asyncio.ensure_future(self._stopping.wait()),
                        asyncio.ensure_future(reader.read(1)),  # the client went away
                    }
                    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for task in pending:
                        task.cancel()
                    return
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _respond(self, req: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        ms = float(req.query.get("ms", 0) or 0)
        if ms > 0:
            await asyncio.sleep(ms / 1000)
        path = req.path
        if path == "/drip":
            await self._drip(req, writer)
            return
        if path.startswith(("/slow-some/", "/capacity/")):
            try:
                if path.startswith("/slow-some/"):
                    await self._slow_some(req, writer)
                else:
                    await self._at_capacity(req, writer)
            except asyncio.CancelledError:
                if self._stopping is not None and self._stopping.is_set():
                    raise _Hang from None  # the server stops: end this connection quietly
                raise
            return
        status, body, headers = self._dispatch(req)
        _write(writer, status, body, headers, head=req.method == "HEAD")
        await writer.drain()

    def _dispatch(self, req: RecordedRequest) -> Reply:
        path, q = req.path, req.query
        for prefix, handler in sorted(self._routes.items(), key=lambda kv: -len(kv[0])):
            if path.startswith(prefix):
                return handler(req)
        if path == "/echo":
            return (
                200,
                {
                    "method": req.method,
                    "path": path,
                    "query": q,
                    "headers": req.headers,
                    "body": req.body.decode("utf-8", "replace"),
                },
                {},
            )
        if path == "/json":
            return 200, {"ok": True, "path": path, "query": q}, {}
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            return code, {"status": code}, {}
        if path.startswith("/flaky/"):
            n = self._count(path)
            if n <= int(q.get("fail", 2)):
                if q.get("mode") == "reset":
                    raise _Reset
                code = int(q.get("status", 503))
                return code, {"attempt": n, "status": code}, {}
            return 200, {"attempt": n, "ok": True}, {}
        if path.startswith("/retry-after/"):
            n = self._count(path)
            if n <= int(q.get("fail", 1)):
                seconds = float(q.get("seconds", 1))
                value = (
                    formatdate(time.time() + seconds, usegmt=True)
                    if q.get("date")
                    else str(int(seconds) if seconds.is_integer() else seconds)
                )
                return 429, {"attempt": n}, {"Retry-After": value}
            return 200, {"attempt": n, "ok": True}, {}
        if path == "/reset":
            raise _Reset
        if path == "/hang":
            raise _Hang
        if path == "/large":
            raw = b"x" * int(q.get("bytes", 1024))
            if q.get("gzip"):
                return (
                    200,
                    gzip.compress(raw),
                    {"Content-Type": "text/plain", "Content-Encoding": "gzip"},
                )
            return 200, raw, {"Content-Type": "text/plain"}
        if path == "/gzip-bomb":
            layers = max(1, int(q.get("layers", 1)))
            size = int(q.get("bytes", 50_000_000 if layers == 1 else 2**30))
            return (
                200,
                self._bomb(size, layers),
                {
                    "Content-Type": "application/json",
                    "Content-Encoding": ", ".join(["gzip"] * layers),
                },
            )
        if path == "/text":
            return 200, "<html><body>not json</body></html>", {"Content-Type": "text/html"}
        if path == "/invalid-json":
            return 200, b'{"broken": tru', {"Content-Type": "application/json"}
        if path == "/redirect":
            return int(q.get("status", 302)), b"", {"Location": q.get("to", "/echo")}
        if path == "/__stats":
            with self._lock:
                by_path: dict[str, list[float]] = defaultdict(list)
                for r in self._log:
                    by_path[r.path].append(r.arrived - self.started_at)
            return 200, {p: {"hits": len(a), "arrivals": a} for p, a in by_path.items()}, {}
        return 404, {"error": "no such route", "path": path}, {}

    def _count(self, path: str) -> int:
        with self._lock:
            self._counts[path] += 1
            return self._counts[path]

    def _bomb(self, size: int, layers: int = 1) -> bytes:
        """``size`` zero bytes gzipped ``layers`` times, built without ever holding them:
        one deflate block of 1 MiB of zeros (full flush, so it does not depend on what
        came before) is repeated, and each outer layer compresses the stream below it
        piece by piece."""
        key = (size, layers)
        if key not in self._bombs:
            stream = _gzipped_zeros(size)
            for _ in range(layers - 1):
                stream = _gzipped(stream)
            self._bombs[key] = b"".join(stream)
        return self._bombs[key]

    async def _slow_some(self, req: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        """An upstream with a slow tail: which arrivals are slow depends only on their
        rank per key and the seed, so a run can be repeated exactly."""
        n = self._count(req.path)
        key = req.headers.get("idempotency-key")
        if key is not None:
            # as draft-ietf-httpapi-idempotency-key-header: a duplicate of a request
            # still being processed is a conflict
            if (req.path, key) in self._in_progress:
                _write(writer, 409, {"arrival": n, "error": "idempotency key in use"}, {})
                await writer.drain()
                return
            self._in_progress.add((req.path, key))
        try:
            await self._slow_some_answer(req, writer, n)
        finally:
            if key is not None:
                self._in_progress.discard((req.path, key))

    async def _slow_some_answer(
        self, req: RecordedRequest, writer: asyncio.StreamWriter, n: int
    ) -> None:
        q = req.query
        rate = float(q.get("rate", 0))
        slow = n <= int(q.get("first", 0)) or (
            rate > 0 and random.Random(f"{q.get('seed', 0)}:{n}").random() < rate
        )
        ms = float(q.get("slow_ms" if slow else "fast_ms", 1000 if slow else 0))
        if ms > 0:
            await asyncio.sleep(ms / 1000)
        _write(writer, 200, {"arrival": n, "slow": slow}, {})
        await writer.drain()

    async def _at_capacity(self, req: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        """An upstream that serves ``limit`` requests at once and queues the rest (FIFO)."""
        q = req.query
        gate = self._capacity.get(req.path)
        if gate is None:
            gate = self._capacity[req.path] = asyncio.Semaphore(int(q.get("limit", 8)))
        queued = time.monotonic()
        async with gate:
            waited = time.monotonic() - queued
            await asyncio.sleep(float(q.get("service_ms", 10)) / 1000)
        _write(writer, 200, {"queued_ms": round(waited * 1000, 3)}, {})
        await writer.drain()

    async def _drip(self, req: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        n = int(req.query.get("bytes", 10))
        interval = float(req.query.get("interval", 100)) / 1000
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {n}\r\n\r\n".encode()
        )
        for _ in range(n):
            await writer.drain()
            await asyncio.sleep(interval)
            writer.write(b"x")
        await writer.drain()


def _gzipped_zeros(size: int) -> Iterator[bytes]:
    """A gzip member inflating to ``size`` zero bytes, in pieces of about 1 KB."""
    mib = 2**20
    zeros = bytes(mib)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(size, mib)
    yield gzip.compress(b"", mtime=0)[:10]  # the gzip header
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
        yield block
    last = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    yield last.compress(zeros[:rest]) + last.flush()
    yield struct.pack("<II", zlib.crc32(zeros[:rest], crc), size & 0xFFFFFFFF)


def _gzipped(stream: Iterator[bytes]) -> Iterator[bytes]:
    """``stream`` gzipped, piece by piece."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for piece in stream:
        out = deflate.compress(piece)
        if out:
            yield out
    yield deflate.flush()


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    line = await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("content-length"):
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(chunks)
    parts = urlsplit(target)
    return RecordedRequest(
        method=method,
        path=parts.path,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers=headers,
        body=body,
    )


def _write(
    writer: asyncio.StreamWriter,
    status: int,
    body: Any,
    headers: dict[str, str],
    *,
    head: bool = False,
) -> None:
    """One response; to a HEAD request, the headers a GET would get and no body."""
    if isinstance(body, bytes):
        data = body
        headers.setdefault("Content-Type", "application/octet-stream")
    elif isinstance(body, str):
        data = body.encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    else:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    if status in (204, 304) or status < 200:  # no content by definition (RFC 9110)
        data, head = b"", True
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-type"]
    else:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(data)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else data))
