"""The transports under test. Every test that takes ``transport_factory`` runs once per
transport in :data:`TRANSPORTS`: adding a transport to the contract suite is one line."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import pytest

import lamina.transports
from lamina.testing import LocalServer


async def arrived(server: LocalServer, path: str, count: int = 1) -> None:
    """Wait until ``server`` has received ``count`` requests for ``path`` (it records one
    before its ``ms`` pause): a holder then has its connection. A fixed 50 ms sleep
    was a race on a loaded machine."""
    async with asyncio.timeout(10):
        while server.hits(path) < count:  # noqa: ASYNC110 - polls another thread
            await asyncio.sleep(0.002)


#: kind -> class name in ``lamina.transports``.
TRANSPORTS = {
    "httpx": "HttpxTransport",
    "aiohttp": "AiohttpTransport",
    "pyreqwest": "PyreqwestTransport",
}

#: (kind, test) -> why that transport cannot keep that part of the contract (strict xfail).
KNOWN_GAPS = {
    ("pyreqwest", test): "pyreqwest's timeout does not say whether the request was still "
    "connecting: a timeout while connecting is a TimeoutError with request_sent=True"
    for test in (
        "test_a_timeout_while_connecting_is_a_connect_timeout",
        "test_an_upstream_that_cannot_be_reached_opens_the_breaker",
    )
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("transport_factory") if callspec is not None else None
        reason = KNOWN_GAPS.get((kind, item.originalname))  # type: ignore[attr-defined]
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


class TransportFactory:
    """Builds the transport under test (``kind``) with the options given; the fixture
    closes every transport it built after the test."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.cls: Any = getattr(lamina.transports, TRANSPORTS[kind])
        self.made: list[Any] = []

    def __call__(self, *args: Any, **options: Any) -> Any:
        transport = self.cls(*args, **options)
        self.made.append(transport)
        return transport

    def pooled(self, size: int) -> Any:
        """The transport with a client whose own pool holds ``size`` connections and no
        gate of lamina's in front: a request waits for a connection inside the client."""
        if self.kind == "httpx":
            return self(limits=httpx.Limits(max_connections=size), max_in_flight=None)
        if self.kind == "pyreqwest":
            return self(max_connections=size, max_in_flight=None)
        return self(connector=aiohttp.TCPConnector(limit=size), max_in_flight=None)


@pytest.fixture(params=list(TRANSPORTS))
async def transport_factory(request: pytest.FixtureRequest) -> AsyncIterator[TransportFactory]:
    factory = TransportFactory(request.param)
    yield factory
    for transport in factory.made:
        await transport.aclose()


@pytest.fixture(params=list(TRANSPORTS))
def sync_transport_factory(request: pytest.FixtureRequest) -> TransportFactory:
    """``transport_factory`` for a test that runs outside an event loop (and so can use
    ``asyncio.run`` or ``execute_sync``); the test closes what it makes."""
    return TransportFactory(request.param)


@pytest.fixture
def other_server() -> Iterator[LocalServer]:
    """A second server: another origin for redirects."""
    with LocalServer() as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def full_listener() -> Iterator[int]:
    """The port of a listener whose accept queue is full: a connect to it waits (for a
    SYN retry), so a request is cancelled while still connecting."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in [*fillers, listener]:
            sock.close()
