"""Revalidation, stale-while-revalidate and stale-if-error on a real Redis, every transport.

Entry ages run on the Redis server's clock, so these tests use real (short) time: the
layer's ``ttl`` caps freshness at 0.2 s while the response's ``stale-if-error`` keeps the
entry in Redis long enough to be revalidated."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import redis
from lamina import Request, Service
from lamina.backends.redis import RedisBackend
from lamina.layers.cache import CacheLayer, RedisCacheStore
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, RecordedRequest

pytestmark = pytest.mark.timeout(30)

_spec = importlib.util.spec_from_file_location(
    "_lamina_transport_contract_redis",
    Path(__file__).resolve().parents[1] / "transports" / "conftest.py",
)
assert _spec is not None
assert _spec.loader is not None
_contract: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_contract)

SECRET = "revalidation-test-key-0123456789"
FRESH = 0.2  # the layer's ttl: how long an entry stays fresh here
STALE = 0.3  # a sleep past it


@pytest.fixture(params=list(_contract.TRANSPORTS))
async def transport_factory(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    factory = _contract.TransportFactory(request.param)
    yield factory
    for transport in factory.made:
        await transport.aclose()


class Origin:
    """A resource with an ETag that honours If-None-Match (503 when ``down``)."""

    def __init__(self, cc: str) -> None:
        self.cc = cc
        self.version = 1
        self.down = False
        self.delay = 0.0  # seconds the server thread takes to answer
        self.answers: list[int] = []

    def __call__(self, req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        time.sleep(self.delay)
        if self.down:
            self.answers.append(503)
            return 503, {"error": "down"}, {}
        headers = {"Cache-Control": self.cc, "ETag": f'"v{self.version}"'}
        if req.headers.get("if-none-match") == f'"v{self.version}"':
            self.answers.append(304)
            return 304, b"", headers
        self.answers.append(200)
        return 200, {"version": self.version}, headers


def route(server: LocalServer, cc: str) -> Origin:
    origin = Origin(cc)
    server.route("/rvr/", origin)
    return origin


def layer(backend: RedisBackend) -> CacheLayer:
    return CacheLayer(ttl=FRESH, store=RedisCacheStore(backend), key_secret=SECRET)


def wrap(cache: CacheLayer, transport: Any) -> Service:
    return cache.wrap(ParseLayer().wrap(transport))


def get(server: LocalServer) -> Request:
    return Request("GET", server.url_for("/rvr/item"), endpoint="rvr")


async def test_an_entry_stored_by_one_worker_is_revalidated_by_another(
    backend: RedisBackend,
    sync_redis: redis.Redis,
    prefix: str,
    lamina_server: LocalServer,
    transport_factory: Any,
) -> None:
    origin = route(lamina_server, "max-age=60, stale-if-error=60")
    a = wrap(layer(backend), transport_factory())
    b = wrap(layer(backend), transport_factory())  # another layer, its own SharedCache
    first = await a(get(lamina_server))
    await asyncio.sleep(STALE)
    again = await b(get(lamina_server))
    # b revalidated a's entry, read from Redis: it sent a's ETag and got a 304
    assert origin.answers == [200, 304]
    assert lamina_server.requests("/rvr/item")[1].headers["if-none-match"] == '"v1"'
    assert again.from_cache
    assert again.value == first.value == {"version": 1}
    # a sees the renewed entry (a hit, or one more 304 on a slow machine): never a refetch
    assert (await a(get(lamina_server))).from_cache
    assert origin.answers.count(200) == 1
    stored = [k.decode() for k in sync_redis.scan_iter(match=f"{prefix}:v1:cache:*")]
    assert stored  # the entry lives in Redis


async def test_stale_while_revalidate_on_redis_refreshes_once(
    backend: RedisBackend, lamina_server: LocalServer, transport_factory: Any
) -> None:
    origin = route(lamina_server, "max-age=60, stale-while-revalidate=60")
    cache = layer(backend)
    svc = wrap(cache, transport_factory())
    await svc(get(lamina_server))
    origin.version = 2
    origin.delay = 0.2  # the refresh is slow: every caller meanwhile is served stale
    await asyncio.sleep(STALE)
    answers = await asyncio.gather(*(svc(get(lamina_server)) for _ in range(20)))
    assert all(a.stale for a in answers)
    assert all(a.value == {"version": 1} for a in answers)
    await cache.drain()
    assert origin.answers == [200, 200]  # one background refresh for 20 callers
    refreshed = await svc(get(lamina_server))
    assert refreshed.value == {"version": 2}  # the background call stored version 2


async def test_stale_if_error_on_redis_serves_the_entry_when_the_upstream_fails(
    backend: RedisBackend, lamina_server: LocalServer, transport_factory: Any
) -> None:
    origin = route(lamina_server, "max-age=60, stale-if-error=60")
    svc = wrap(layer(backend), transport_factory())
    await svc(get(lamina_server))
    origin.down = True
    await asyncio.sleep(STALE)
    stale = await svc(get(lamina_server))
    assert stale.stale
    assert stale.value == {"version": 1}
    assert origin.answers == [200, 503]
