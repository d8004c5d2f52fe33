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
