"""execute_sync() closes what it opened on its loop; aclose() afterwards is safe.

Before: 50 calls of ``execute_sync()`` left the httpx client's sockets to the
garbage collector (75 ResourceWarnings for 5 endpoints) and a Redis backend's
connection per call open for good; ``aclose()`` afterwards raised
``RuntimeError: Event loop is closed``. Both transports (the ``transport_kind``
fixture), against the real loopback server and the real Redis.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

import redis
from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
from lamina.backends.redis import RedisBackend
from lamina.testing import LocalServer

CALLS = 50
ENDPOINTS = 5


def sockets_to(port: int) -> int:
    """Open fds of this process that are TCP sockets whose peer listens on ``port``
    (the client side only: the in-process server's own sockets are not counted)."""
    inodes: set[str] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table, encoding="ascii") as rows:
                next(rows)
                for row in rows:
                    cols = row.split()
                    if int(cols[2].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except FileNotFoundError:
            continue
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


@dataclass
class Leaks:
    resource_warnings: list[str] = field(default_factory=list)
    unraisable: list[str] = field(default_factory=list)


@contextmanager
def watch_leaks() -> Iterator[Leaks]:
    """Record ResourceWarnings and unraisable exceptions (a collection runs at the end);
    earlier tests' garbage is collected first, so it is not counted here."""
    gc.collect()
    leaks = Leaks()
    hook = sys.unraisablehook

    def record(info: Any) -> None:
        leaks.unraisable.append(f"{info.exc_type.__name__}: {info.exc_value}")

    sys.unraisablehook = record
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", ResourceWarning)
            yield leaks
            gc.collect()
        leaks.resource_warnings = [
            str(w.message) for w in seen if issubclass(w.category, ResourceWarning)
        ]
    finally:
        sys.unraisablehook = hook


def endpoints(server: LocalServer) -> list[APIEndpoint]:
    return [APIEndpoint(name=f"e{i}", url=server.url_for(f"/json?i={i}")) for i in range(ENDPOINTS)]


def test_execute_sync_closes_its_connections_and_aclose_is_safe_after(
    lamina_server: LocalServer,
) -> None:
    orchestrator = APIOrchestrator(APIOrchestrationConfig(endpoints=endpoints(lamina_server)))
    gc.collect()
    before = sockets_to(lamina_server.port)
    with watch_leaks() as leaks:
        for _ in range(CALLS):
            assert orchestrator.execute_sync()["e0"]["ok"] is True
            assert sockets_to(lamina_server.port) == before  # closed before the loop ended
        asyncio.run(orchestrator.aclose())  # was: RuntimeError: Event loop is closed
    assert leaks.resource_warnings == []
    assert leaks.unraisable == []
    assert sockets_to(lamina_server.port) == before
    assert lamina_server.hits("/json") == CALLS * ENDPOINTS
    # still usable afterwards, on a loop of its own
    assert orchestrator.execute_sync()["e4"]["query"] == {"i": "4"}


def test_runs_on_successive_loops_are_closed_at_each_loop_shutdown(
    lamina_server: LocalServer,
) -> None:
    """``asyncio.run(orchestrator.run())`` without aclose(): the loop's shutdown
    closes that loop's connections; aclose() on yet another loop is a no-op."""
    orchestrator = APIOrchestrator(APIOrchestrationConfig(endpoints=endpoints(lamina_server)))
    before = sockets_to(lamina_server.port)
    with watch_leaks() as leaks:
        for _ in range(3):
            report = asyncio.run(orchestrator.run())
            assert report.ok
            assert sockets_to(lamina_server.port) == before
        asyncio.run(orchestrator.aclose())
    assert leaks.resource_warnings == []
    assert leaks.unraisable == []


async def test_aclose_in_the_running_loop_closes_the_connections(
    lamina_server: LocalServer,
) -> None:
    before = sockets_to(lamina_server.port)
    orchestrator = APIOrchestrator(APIOrchestrationConfig(endpoints=endpoints(lamina_server)))
    await orchestrator.run()
    assert sockets_to(lamina_server.port) > before  # keep-alive connections
    await orchestrator.aclose()
    await asyncio.sleep(0)  # the transports' connection_lost callbacks
    assert sockets_to(lamina_server.port) == before
    await orchestrator.aclose()  # twice is fine


@pytest.fixture
def redis_backend() -> Iterator[RedisBackend]:
    url = os.environ.get("LAMINA_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"no Redis at LAMINA_REDIS_URL ({type(exc).__name__})")
        pytest.skip(f"no Redis at LAMINA_REDIS_URL ({type(exc).__name__})")
    prefix = f"lamina-test-{uuid.uuid4().hex[:12]}"
    yield RedisBackend(url, prefix=prefix)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_execute_sync_closes_the_redis_client_of_its_loop(
    lamina_server: LocalServer, redis_backend: RedisBackend
) -> None:
    config = APIOrchestrationConfig(
        endpoints=endpoints(lamina_server),
        backend=redis_backend,
        global_rate_limit=10_000,
        cache_ttl=60,
    )
    orchestrator = APIOrchestrator(config)
    port = int(redis_backend.address.split(":")[1].split("/")[0])
    before, before_http = sockets_to(port), sockets_to(lamina_server.port)
    with watch_leaks() as leaks:
        for _ in range(CALLS):
            orchestrator.execute_sync()
            assert sockets_to(port) == before  # was: one more Redis connection per call
        asyncio.run(orchestrator.aclose())
    assert redis_backend.errors == 0
    assert leaks.resource_warnings == []
    assert leaks.unraisable == []
    assert sockets_to(port) == before
    assert sockets_to(lamina_server.port) == before_http
    assert lamina_server.hits("/json") == ENDPOINTS  # the rest came from the Redis cache
