"""Cache review on a real Redis, every transport: a 304 that adds Vary keeps the body in
the entry another worker reads (real short time: Redis measures entry ages)."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lamina import Request
from lamina.backends.redis import RedisBackend
from lamina.layers.cache import CacheLayer, RedisCacheStore
from lamina.testing import LocalServer, RecordedRequest

pytestmark = pytest.mark.timeout(30)

_spec = importlib.util.spec_from_file_location(
    "_lamina_transport_contract_redis_review",
    Path(__file__).resolve().parents[1] / "transports" / "conftest.py",
)
assert _spec is not None
assert _spec.loader is not None
_contract: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_contract)

SECRET = "cache-review-test-key-0123456789"


@pytest.fixture(params=list(_contract.TRANSPORTS))
async def transport_factory(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    factory = _contract.TransportFactory(request.param)
    yield factory
    for transport in factory.made:
        await transport.aclose()


async def test_a_304_adding_vary_keeps_the_body_for_the_next_worker(
    backend: RedisBackend, lamina_server: LocalServer, transport_factory: Any
) -> None:
    answers: list[int] = []

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        headers = {"ETag": '"v1"', "Cache-Control": "max-age=60"}
        if req.headers.get("if-none-match") == '"v1"':
            answers.append(304)
            return 304, b"", {**headers, "Vary": "Accept-Language", "Set-Cookie": "s=1"}
        answers.append(200)
        return 200, {"version": 1}, headers

    lamina_server.route("/rvw/", origin)

    def worker() -> Any:
        layer = CacheLayer(ttl=0.2, store=RedisCacheStore(backend), key_secret=SECRET)
        return layer.wrap(transport_factory())  # no parse layer: the body is what is served

    a, b = worker(), worker()
    request = Request("GET", lamina_server.url_for("/rvw/item"), endpoint="rvw")
    first = await a(request)
    await asyncio.sleep(0.3)
    revalidated = await a(request)
    assert answers == [200, 304]
    assert revalidated.content == first.content
    other = await b(request)  # the entry the 304 stored, read from Redis by another worker
    assert answers == [200, 304]
    assert other.from_cache
    assert other.content == first.content
    assert "set-cookie" not in other.headers


DAMAGED = [
    b"not json",
    b"[1, 2]",
    b'{"v": 2}',
    b'{"v": 1, "status": 200}',
    b'{"v": 1, "status": 200, "headers": "etag", "content": "", "value": null, "ns": "rvd",'
    b' "fresh_for": 60, "stale_for": 0, "vary": [], "vary_digest": ""}',
    b'{"v": 1, "status": 200, "headers": [], "content": "!!", "value": null, "ns": "rvd",'
    b' "fresh_for": 60, "stale_for": 0, "vary": [], "vary_digest": ""}',
    b'{"v": 1, "status": 200, "headers": [], "content": "", "value": null, "ns": "rvd",'
    b' "fresh_for": 60, "stale_for": 0, "swr_for": "soon", "vary": [], "vary_digest": ""}',
    b'{"v": 1, "status": 200, "headers": [], "content": "", "value": null, "ns": "rvd",'
    b' "fresh_for": null, "stale_for": 0, "vary": [], "vary_digest": ""}',
]


@pytest.mark.parametrize("damaged", DAMAGED, ids=range(len(DAMAGED)))
async def test_a_damaged_entry_is_a_miss_that_the_next_answer_replaces(
    backend: RedisBackend,
    sync_redis: Any,
    lamina_server: LocalServer,
    damaged: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lamina_server.route("/rvd/", lambda req: (200, {"ok": 1}, {"Cache-Control": "max-age=60"}))
    store = RedisCacheStore(backend)
    layer = CacheLayer(ttl=60, store=store, key_secret=SECRET)
    from lamina.layers.parse import ParseLayer
    from lamina.transports import HttpxTransport

    transport = HttpxTransport()
    svc = layer.wrap(ParseLayer().wrap(transport))
    request = Request("GET", lamina_server.url_for("/rvd/item"), endpoint="rvd")
    await svc(request)
    [rkey] = [k for k in sync_redis.scan_iter(match=f"{backend.key('cache', 'rvd')}:*")]
    sync_redis.hset(rkey, "d", damaged)
    answer = await svc(request)  # a miss: fetched again, not an exception
    assert not answer.from_cache
    assert answer.value == {"ok": 1}
    assert "unreadable cache entry" in caplog.text
    assert (await svc(request)).from_cache  # the good answer replaced the damaged one
    assert lamina_server.hits("/rvd/item") == 2
    await transport.aclose()
