"""The bounded decoder (``lamina.transports._decoding``) on its own: every transport reads
the body raw and hands it to one ``BodyDecoder``, which undoes every coding of the
``Content-Encoding`` chain, the limit applying to the final bytes and no stage holding
more than a step of output (issue 12, item 1). On the wire: test_contract.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lamina import (
    LaminaError,
    ParseError,
    Request,
    ResponseTooLarge,
    UnsupportedContentEncoding,
)
from lamina._headers import Headers
from lamina.testing import LocalServer
from lamina.transports._decoding import (
    ACCEPT_ENCODING,
    MAX_CODINGS,
    STEP,
    SUPPORTED_CODINGS,
    BodyDecoder,
    content_codings,
)

GIB = 2**30
REQUEST = Request("GET", "http://api.test/x", endpoint="things")


def decode(codings: list[str], body: bytes, limit: int = 10**8, piece: int = 4096) -> bytes:
    decoder = BodyDecoder(codings, limit, REQUEST, 200)
    for i in range(0, len(body), piece):
        decoder.feed(body[i : i + piece])
    return decoder.finish()


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


PAYLOAD = json.dumps([{"id": i, "name": f"item {i}"} for i in range(3000)]).encode()


# -- the decoder ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codings", "encode"),
    [
        ([], lambda b: b),
        (["gzip"], gzip.compress),
        (["x-gzip"], gzip.compress),
        (["deflate"], zlib.compress),
        (["deflate"], deflate_raw),  # raw deflate, as some servers send it
        (["gzip", "gzip"], lambda b: gzip.compress(gzip.compress(b))),
        (["deflate", "gzip"], lambda b: gzip.compress(zlib.compress(b))),
        (["gzip", "deflate", "gzip"], lambda b: gzip.compress(zlib.compress(gzip.compress(b)))),
    ],
)
@pytest.mark.parametrize("piece", [1, 7, 4096, 10**7])
def test_every_chain_decodes(
    codings: list[str], encode: Callable[[bytes], bytes], piece: int
) -> None:
    body = encode(PAYLOAD)
    if piece == 1 and len(body) > 20_000:
        body = encode(PAYLOAD[:2000])
        assert decode(codings, body, piece=piece) == PAYLOAD[:2000]
        return
    assert decode(codings, body, piece=piece) == PAYLOAD


def test_gzip_members_in_a_row_and_trailing_garbage() -> None:
    body = gzip.compress(b"hello ") + gzip.compress(b"world")
    assert decode(["gzip"], body, piece=3) == b"hello world"
    assert decode(["gzip"], body + b"\0\0junk") == b"hello world"


def test_an_empty_body_with_a_coding_is_empty() -> None:
    assert decode(["gzip"], b"") == b""
    assert decode(["gzip", "deflate"], b"") == b""


def test_a_one_byte_body_is_not_gzip() -> None:
    with pytest.raises(ParseError, match="gzip"):
        decode(["gzip"], b"\x1f")


def test_the_limit_applies_to_the_final_bytes() -> None:
    inner = gzip.compress(b"a" * 50_000)
    body = gzip.compress(inner)
    assert len(inner) < 1000
    assert decode(["gzip", "gzip"], body, limit=50_000) == b"a" * 50_000
    with pytest.raises(ResponseTooLarge) as info:
        decode(["gzip", "gzip"], body, limit=49_999)
    assert info.value.limit == 49_999
    assert info.value.endpoint == "things"


def test_a_stacked_bomb_stays_small_in_memory(lamina_server: LocalServer) -> None:
    """1 GiB of zeros gzipped twice (~2.5 KB): stopped at the limit, a step per stage held."""
    body = lamina_server._bomb(GIB, 2)
    assert len(body) < 4096
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge):
            decode(["gzip", "gzip"], body, limit=1_000_000, piece=len(body))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000 + 8 * STEP, peak


def test_corrupt_data_is_a_parse_error_naming_the_coding() -> None:
    with pytest.raises(ParseError, match="gzip"):
        decode(["gzip"], b"this is not gzip at all")
    good = gzip.compress(PAYLOAD)
    with pytest.raises(ParseError, match="deflate"):
        decode(["gzip", "deflate"], gzip.compress(b"\xff" * 40))
    assert decode(["gzip"], good) == PAYLOAD


def test_codings_are_read_in_order_and_identity_is_dropped() -> None:
    headers = Headers([("Content-Encoding", "identity, GZIP"), ("content-encoding", " deflate ")])
    assert content_codings(headers, REQUEST, 200) == ["gzip", "deflate"]
    assert content_codings(Headers({}), REQUEST, 200) == []


def test_an_unknown_coding_is_a_typed_error_naming_it_and_the_endpoint() -> None:
    with pytest.raises(UnsupportedContentEncoding) as info:
        content_codings(Headers({"Content-Encoding": "gzip, lzma"}), REQUEST, 200)
    error = info.value
    assert isinstance(error, ParseError)
    assert isinstance(error, LaminaError)
    assert error.encoding == "lzma"
    assert error.endpoint == "things"
    assert "'lzma'" in str(error)
    assert "[things]" in str(error)


def test_a_chain_longer_than_the_limit_is_refused() -> None:
    chain = ", ".join(["gzip"] * (MAX_CODINGS + 1))
    with pytest.raises(UnsupportedContentEncoding, match="at most"):
        content_codings(Headers({"Content-Encoding": chain}), REQUEST, 200)


def test_accept_encoding_names_exactly_the_decoded_codings() -> None:
    advertised = {c.strip() for c in ACCEPT_ENCODING.split(",")}
    assert advertised == SUPPORTED_CODINGS - {"identity", "x-gzip"}
    assert {"gzip", "deflate"} <= advertised


def test_br_when_installed() -> None:
    brotli = pytest.importorskip("brotli")
    assert "br" in SUPPORTED_CODINGS
    assert decode(["br"], brotli.compress(PAYLOAD), piece=100) == PAYLOAD
    assert decode(["gzip", "br"], brotli.compress(gzip.compress(PAYLOAD))) == PAYLOAD
    bomb = brotli.compress(bytes(200_000_000), quality=5)
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge):
            decode(["br"], bomb, limit=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000 + 8 * STEP, peak
    with pytest.raises(ParseError, match="br"):
        decode(["br"], b"\xff\xff\xff not brotli")


def test_zstd_when_installed() -> None:
    zstandard = pytest.importorskip("zstandard")
    assert "zstd" in SUPPORTED_CODINGS
    compress = zstandard.ZstdCompressor().compress
    assert decode(["zstd"], compress(PAYLOAD), piece=100) == PAYLOAD
    frames = compress(b"hello ") + compress(b"world")
    assert decode(["zstd"], frames, piece=3) == b"hello world"
    bomb = compress(bytes(200_000_000))
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge):
            decode(["zstd"], bomb, limit=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000 + 8 * STEP, peak
    with pytest.raises(ParseError, match="zstd"):
        decode(["zstd"], b"not zstd data here")


def test_without_the_libraries_br_and_zstd_are_neither_advertised_nor_decoded() -> None:
    """A fresh interpreter in which importing brotli, brotlicffi and zstandard fails."""
    code = (
        "import sys\n"
        "for name in ('brotli', 'brotlicffi', 'zstandard'): sys.modules[name] = None\n"
        "from lamina.transports import _decoding as d\n"
        "from lamina import Request, UnsupportedContentEncoding\n"
        "from lamina._headers import Headers\n"
        "print(d.ACCEPT_ENCODING)\n"
        "headers = Headers({'Content-Encoding': 'br'})\n"
        "try:\n"
        "    d.content_codings(headers, Request('GET', 'http://x'), 200)\n"
        "except UnsupportedContentEncoding as e:\n"
        "    print(e.encoding)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["gzip,", "deflate", "br"]


# -- peak memory of a whole call, per transport ------------------------------------------


PROBE = Path(__file__).with_name("rss_probe.py")
RSS_GROWTH_LIMIT_KIB = 64 * 1024  # the target; measured: about 10 MiB (the limit)


async def test_stacked_bomb_peak_rss_growth_is_bounded(
    transport_factory: Any, lamina_server: LocalServer
) -> None:
    """1 GiB behind ``gzip, gzip`` (~2.5 KB on the wire), default limit (10 MiB), measured
    as the growth of the peak RSS of a fresh interpreter (before: 2 GiB on httpx)."""
    url = lamina_server.url_for("/gzip-bomb?layers=2")
    name = transport_factory.cls.__name__
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(PROBE), name, url, lamina_server.url_for("/json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout)
    print(f"\nstacked bomb [{name}]: peak RSS growth {result['growth_kib'] / 1024:.1f} MiB")
    assert result["error"] == "ResponseTooLarge"
    assert result["growth_kib"] < RSS_GROWTH_LIMIT_KIB
