"""Bounded decoding of a response body's ``Content-Encoding`` chain, for every transport.

A transport reads the body *raw*, as it arrives, and hands each piece to a
:class:`BodyDecoder` built from the response's headers. The decoder undoes every
coding of the chain, last applied first, as a pipeline of streaming stages:

* no stage ever produces more than :data:`STEP` bytes before the next stage has
  taken them, so a stage in the middle of ``gzip, gzip`` cannot balloon (a 2 KB
  body that inflates to 1 MiB and then to 1 GiB is stopped after ``limit``
  bytes, with a few hundred KB in memory);
* the limit (``max_response_bytes``) applies to the final, decoded bytes;
* a coding it cannot decode ends the call with
  :class:`lamina.UnsupportedContentEncoding` before the body is read, and a body
  that is not what its coding says with :class:`lamina.ParseError`.

Decoded: ``gzip`` and ``x-gzip`` (several members in a row too), ``deflate``
(zlib-wrapped, or raw as some servers send it), ``identity``; ``br`` with
``brotli`` or ``brotlicffi`` (1.2 or later, the first with a bounded decoder)
and ``zstd`` with ``zstandard``, when installed. :data:`ACCEPT_ENCODING` is what
the transports advertise: exactly these.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import AsyncIterable, Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import ParseError, ResponseTooLarge, UnsupportedContentEncoding

if TYPE_CHECKING:
    from .._core import Request
    from .._headers import Headers

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_CODINGS",
    "STEP",
    "SUPPORTED_CODINGS",
    "BodyDecoder",
    "codings_of",
    "content_codings",
]

#: The most bytes a stage produces before the next stage has consumed them.
STEP = 64 * 1024
#: The most codings in one chain (each costs a decoder's state: up to 16 MiB for br).
MAX_CODINGS = 4


class _Sink(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


def _bounded_brotli() -> ModuleType | None:
    """``brotli`` or ``brotlicffi``, if one is installed whose decoder takes an output limit."""
    for name in ("brotli", "brotlicffi"):
        try:
            module = importlib.import_module(name)
            decompressor = module.Decompressor()
            decompressor.process(b"", output_buffer_limit=1)
            decompressor.can_accept_more_data()
        except Exception:  # absent, too old to bound its output, or broken: not usable
            continue
        return module
    return None


def _zstandard() -> ModuleType | None:
    try:
        return importlib.import_module("zstandard")
    except ImportError:
        return None


_brotli = _bounded_brotli()
_zstd = _zstandard()

#: Every coding name this module decodes (``identity`` included).
SUPPORTED_CODINGS: frozenset[str] = frozenset(
    {"identity", "gzip", "x-gzip", "deflate"}
    | ({"br"} if _brotli is not None else set())
    | ({"zstd"} if _zstd is not None else set())
)
#: The ``Accept-Encoding`` the transports send: the codings decoded here.
ACCEPT_ENCODING = ", ".join(
    ["gzip", "deflate"]
    + (["br"] if _brotli is not None else [])
    + (["zstd"] if _zstd is not None else [])
)


def content_codings(headers: Headers, request: Request, status: int) -> list[str]:
    """The codings of the body in the order they were applied (``identity`` left out).

    Raises :class:`lamina.UnsupportedContentEncoding` for a coding not decoded here
    or a chain longer than :data:`MAX_CODINGS`.
    """
    return codings_of(headers.get_list("content-encoding"), request, status)


def codings_of(values: Iterable[str], request: Request, status: int) -> list[str]:
    """:func:`content_codings` from the ``Content-Encoding`` values themselves."""
    codings: list[str] = []
    for value in values:
        for token in value.split(","):
            coding = token.strip().lower()
            if coding in ("", "identity"):
                continue
            if coding not in SUPPORTED_CODINGS:
                shown = coding if len(coding) <= 40 else coding[:40] + "..."
                raise UnsupportedContentEncoding(
                    shown,
                    f"cannot decode Content-Encoding {shown!r} "
                    f"(lamina decodes {ACCEPT_ENCODING}, identity)",
                    request=request,
                    status_code=status,
                )
            codings.append(coding)
    if len(codings) > MAX_CODINGS:
        chain = ", ".join(codings)
        raise UnsupportedContentEncoding(
            chain,
            f"Content-Encoding has {len(codings)} codings; lamina decodes at most {MAX_CODINGS}",
            request=request,
            status_code=status,
        )
    return codings


class BodyDecoder:
    """Decode a body fed piece by piece; the limit applies to the decoded bytes.

    ``feed(raw)`` for each piece as it arrives, then ``finish()`` for the body.
    Raises :class:`lamina.ResponseTooLarge` as soon as the decoded bytes pass
    ``limit``, and :class:`lamina.ParseError` when a coding's data is corrupt.
    """

    __slots__ = ("_first", "_result")

    def __init__(self, codings: list[str], limit: int, request: Request, status: int) -> None:
        self._result = _Limited(limit, request, status)
        first: _Sink = self._result
        for coding in codings:  # in the order applied: the last one is undone first
            first = _STAGES[coding](coding, first, self._result)
        self._first = first

    def feed(self, raw: bytes) -> None:
        """Decode one raw piece of the body."""
        if raw:
            self._first.write(raw)

    def finish(self) -> bytes:
        """Decode what the stages still hold and return the whole decoded body."""
        self._first.close()
        return self._result.join()

    async def read(self, raw: AsyncIterable[bytes]) -> bytes:
        """Decode every raw piece of a body as it arrives; the whole decoded body."""
        async for piece in raw:
            self.feed(piece)
        return self.finish()


class _Limited:
    """The last stage: keeps the decoded bytes while they fit under the limit."""

    __slots__ = ("limit", "parts", "request", "room", "status")

    def __init__(self, limit: int, request: Request, status: int) -> None:
        self.limit = limit
        self.room = limit
        self.parts: list[bytes] = []
        self.request = request
        self.status = status

    def write(self, data: bytes) -> None:
        self.room -= len(data)
        if self.room < 0:
            raise ResponseTooLarge(limit=self.limit, request=self.request, status_code=self.status)
        self.parts.append(data)

    def close(self) -> None:
        pass

    def join(self) -> bytes:
        parts = self.parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def corrupt(self, coding: str, exc: BaseException) -> ParseError:
        return ParseError(
            f"could not decode the {coding} body ({type(exc).__name__})",
            request=self.request,
            status_code=self.status,
        )


class _ZlibStage:
    """gzip, x-gzip (members in a row) and deflate (zlib-wrapped or raw)."""

    __slots__ = ("_coding", "_d", "_done", "_gzip", "_head", "_members", "_out", "_result")

    def __init__(self, coding: str, out: _Sink, result: _Limited) -> None:
        self._coding = coding
        self._out = out
        self._result = result
        self._gzip = coding != "deflate"
        self._d: Any = None  # the decompressor of the stream being decoded
        self._head = b""  # the start of a stream, kept until it tells how to decode it
        self._members = 0
        self._done = False

    def write(self, data: bytes) -> None:
        try:
            self._write(data)
        except zlib.error as exc:
            raise self._result.corrupt(self._coding, exc) from exc

    def _write(self, data: bytes) -> None:
        out = self._out
        while data and not self._done:
            d = self._d
            if d is None:  # at the start of a stream: look at its first two bytes
                data = self._head + data
                if len(data) < 2:
                    self._head = data
                    return
                self._head = b""
                d = self._d = self._start(data)
                if d is None:  # bytes after the last gzip member: ignored, as browsers do
                    self._done = True
                    return
            chunk = d.decompress(data, STEP)
            if chunk:
                out.write(chunk)
            if d.eof:
                data = d.unused_data
                self._d = None
                self._done = not self._gzip  # deflate: one stream; what follows is ignored
            else:
                data = d.unconsumed_tail
                while not data and len(chunk) == STEP:  # output may be waiting inside zlib
                    chunk = d.decompress(b"", STEP)
                    if chunk:
                        out.write(chunk)
                    if d.eof:
                        data = d.unused_data
                        self._d = None
                        self._done = not self._gzip
                        break
                    data = d.unconsumed_tail

    def _start(self, data: bytes) -> Any:
        self._members += 1
        if self._gzip:
            if self._members > 1 and data[:2] != b"\x1f\x8b":
                return None
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        zlib_wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)

    def close(self) -> None:
        if self._head and self._members == 0:  # a body of one byte cannot be this coding
            raise self._result.corrupt(self._coding, ValueError("truncated"))
        d = self._d
        if d is not None:  # every piece was pumped through: this is nothing, or little
            try:
                rest = d.flush()
            except zlib.error as exc:
                raise self._result.corrupt(self._coding, exc) from exc
            if rest:
                self._out.write(rest)
        self._out.close()


class _BrotliStage:
    __slots__ = ("_coding", "_d", "_errors", "_out", "_result")

    def __init__(self, coding: str, out: _Sink, result: _Limited) -> None:
        assert _brotli is not None
        self._coding = coding
        self._out = out
        self._result = result
        self._d = _brotli.Decompressor()
        self._errors: tuple[type[BaseException], ...] = (_brotli.error,)

    def write(self, data: bytes) -> None:
        d = self._d
        try:
            while True:
                chunk = d.process(data, output_buffer_limit=STEP)
                data = b""
                if chunk:
                    self._out.write(chunk)
                elif d.can_accept_more_data():
                    return
        except self._errors as exc:
            raise self._result.corrupt(self._coding, exc) from exc

    def close(self) -> None:
        self._out.close()


class _ZstdStage:
    """zstandard's stream writer hands out what it decodes in pieces of ``STEP`` bytes."""

    __slots__ = ("_coding", "_errors", "_out", "_result", "_writer")

    def __init__(self, coding: str, out: _Sink, result: _Limited) -> None:
        assert _zstd is not None
        self._coding = coding
        self._out = out
        self._result = result
        # 8 MiB: the window RFC 8878 asks HTTP decoders to support, and what browsers allow.
        decompressor = _zstd.ZstdDecompressor(max_window_size=8 * 2**20)
        self._writer = decompressor.stream_writer(_Forward(out), write_size=STEP, closefd=False)
        self._errors: tuple[type[BaseException], ...] = (_zstd.ZstdError,)

    def write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
        except self._errors as exc:
            raise self._result.corrupt(self._coding, exc) from exc

    def close(self) -> None:
        self._out.close()


class _Forward:
    """What zstandard writes to: passes each piece on to the next stage."""

    __slots__ = ("_out",)

    def __init__(self, out: _Sink) -> None:
        self._out = out

    def write(self, data: Any) -> int:
        self._out.write(bytes(data))
        return len(data)


_STAGES: dict[str, Callable[[str, _Sink, _Limited], _Sink]] = {
    "gzip": _ZlibStage,
    "x-gzip": _ZlibStage,
    "deflate": _ZlibStage,
    "br": _BrotliStage,
    "zstd": _ZstdStage,
}
