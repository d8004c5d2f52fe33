"""Hostile upstreams: every misbehaviour ends in a typed error with bounded memory."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from lamina import (
    LaminaError,
    ParseError,
    Request,
    ResponseTooLarge,
    TimeoutError,
    TransportError,
)
from lamina.layers.parse import ParseLayer
from lamina.layers.timeout import TimeoutLayer
from lamina.testing import LocalServer

from .conftest import RawUpstream, make_transport

LIMIT = 1_000_000
SECRET = "hostile-SECRET-3a4b5c6d"


def bomb_parts(inflated: int) -> tuple[bytes, bytes, int]:
    """A gzip header, one deflate block of 1 MiB zeros that can be repeated, and the count."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflate.compress(b"\0" * 2**20) + deflate.flush(zlib.Z_FULL_FLUSH)
    return gzip.compress(b"", mtime=0)[:10], block, inflated // 2**20


async def measured(coro: Any) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    try:
        try:
            await coro
        except BaseException as exc:
            return exc, tracemalloc.get_traced_memory()[1]
        return None, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_gzip_bomb_10mb_to_10gb(transport_kind: str) -> None:
    header, block, count = bomb_parts(10 * 2**30)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = len(header) + len(block) * count
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode()
            + header
        )
        for _ in range(count):
            writer.write(block)
            await writer.drain()

    async with (
        RawUpstream(serve) as upstream,
        make_transport(transport_kind, max_response_bytes=LIMIT) as transport,
    ):
        error, peak = await measured(transport(Request("GET", upstream.url + "/bomb")))
    print(
        f"\nbomb[{transport_kind}]: {len(block) * count / 2**20:.1f} MiB on the wire, "
        f"peak traced memory {peak / 2**20:.1f} MiB"
    )
    assert isinstance(error, ResponseTooLarge)
    assert peak < 5 * LIMIT


async def test_100mb_body_without_length(transport_kind: str) -> None:
    chunk = b"x" * 65536

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        for _ in range(100 * 2**20 // len(chunk)):
            writer.write(chunk)
            await writer.drain()

    async with (
        RawUpstream(serve) as upstream,
        make_transport(transport_kind, max_response_bytes=LIMIT) as transport,
    ):
        error, peak = await measured(transport(Request("GET", upstream.url + "/big")))
    assert isinstance(error, ResponseTooLarge)
    assert peak < 5 * LIMIT


async def test_truncated_body(transport_kind: str) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()

    async with RawUpstream(serve) as upstream, make_transport(transport_kind) as transport:
        with pytest.raises(TransportError) as info:
            await transport(Request("GET", upstream.url + "/cut"))
    assert info.value.request_sent is True


async def test_huge_headers(transport_kind: str) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        await writer.drain()

    async with RawUpstream(serve) as upstream, make_transport(transport_kind) as transport:
        with pytest.raises(TransportError):
            await transport(Request("GET", upstream.url + "/headers"))


@pytest.mark.parametrize(
    "path", ["/invalid-json", "/text", "/large?bytes=5000"], ids=["invalid", "html", "big"]
)
async def test_wrong_bodies_are_typed(
    transport_kind: str, lamina_server: LocalServer, path: str
) -> None:
    def expect_json(response: Any) -> Any:
        return response.json()

    async with make_transport(transport_kind, max_response_bytes=4000) as transport:
        service = ParseLayer(expect_json).wrap(transport)
        with pytest.raises(ParseError):
            await service(Request("GET", lamina_server.url_for(path)))


async def test_slow_drip_is_cut_by_the_timeout(
    transport_kind: str, lamina_server: LocalServer
) -> None:
    async with make_transport(transport_kind) as transport:
        service = TimeoutLayer(0.15).wrap(transport)
        with pytest.raises(TimeoutError):
            await service(Request("GET", lamina_server.url_for("/drip?bytes=50&interval=20")))


@pytest.fixture
def other_host() -> Iterator[LocalServer]:
    server = LocalServer(host="127.0.0.2") if _has_loopback_alias() else LocalServer()
    with server:
        yield server


def _has_loopback_alias() -> bool:
    import socket

    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


async def test_redirect_to_another_host_forwards_no_secret(
    transport_kind: str, lamina_server: LocalServer, other_host: LocalServer
) -> None:
    async with make_transport(transport_kind, follow_redirects=True) as transport:
        response = await transport(
            Request(
                "GET",
                lamina_server.url_for("/redirect"),
                params={"to": other_host.url_for("/echo"), "token": SECRET},
                headers={"Authorization": f"Bearer {SECRET}", "X-API-Key": SECRET},
            )
        )
    assert response.status_code == 200
    seen = other_host.requests("/echo")[0]
    assert SECRET not in repr(seen.headers) + repr(seen.query)


async def test_errors_are_lamina_errors_without_secrets(transport_kind: str) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with RawUpstream(serve) as upstream, make_transport(transport_kind) as transport:
        with pytest.raises(LaminaError) as info:
            await transport(
                Request("GET", f"{upstream.url}/x?token={SECRET}", headers={"Cookie": SECRET})
            )
    assert SECRET not in str(info.value) + repr(info.value)
