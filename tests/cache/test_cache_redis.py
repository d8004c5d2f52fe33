"""The response cache on a real Redis, against the real local server on every transport:
``Age`` on answers served from Redis, and a late revalidation that must not overwrite a
newer entry.

Entry times live on the Redis server's clock; a test moves an entry back in time by
editing its stored time (``t``, microseconds) rather than sleeping."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import redis
from lamina import Request, Service
from lamina.backends.redis import RedisBackend
from lamina.layers.cache import CacheLayer, RedisCacheStore
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, RecordedRequest

pytestmark = pytest.mark.timeout(30)

SECRET = "cache-redis-test-key-0123456789ab"


@pytest.fixture
def sync_redis() -> Iterator[redis.Redis]:
    url = os.environ.get("LAMINA_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"no Redis at {url} ({type(exc).__name__}; CI=true: must run)")
        pytest.skip(f"no Redis at {url} ({type(exc).__name__})")
    yield client
    client.close()


@pytest.fixture
def prefix(sync_redis: redis.Redis) -> Iterator[str]:
    name = f"lamina-test-{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(sync_redis.scan_iter(match=f"{name}:*", count=500))
    if keys:
        sync_redis.delete(*keys)


@pytest.fixture
async def backend(sync_redis: redis.Redis, prefix: str) -> AsyncIterator[RedisBackend]:
    url = os.environ.get("LAMINA_REDIS_URL", "redis://127.0.0.1:6379/0")
    made = RedisBackend(url, prefix=prefix)
    yield made
    await made.aclose()


class Origin:
    """A resource with an ETag that honours If-None-Match."""

    def __init__(self, cc: str = "max-age=30") -> None:
        self.cc = cc
        self.version = 1
        self.answers: list[int] = []

    def __call__(self, req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        headers = {"Cache-Control": self.cc, "ETag": f'"v{self.version}"'}
        if req.headers.get("if-none-match") == f'"v{self.version}"':
            self.answers.append(304)
            return 304, b"", headers
        self.answers.append(200)
        return 200, {"version": self.version}, headers


def entries(sync_redis: redis.Redis, prefix: str) -> list[bytes]:
    return list(sync_redis.scan_iter(match=f"{prefix}:v1:cache:*", count=500))


def backdate(sync_redis: redis.Redis, prefix: str, seconds: float) -> None:
    """Make the one stored entry ``seconds`` older (its stored time moves back)."""
    (key,) = entries(sync_redis, prefix)
    sync_redis.hincrby(key, "t", -int(seconds * 1_000_000))


def stack(backend: RedisBackend, transport: Any, **options: Any) -> Service:
    layer = CacheLayer(ttl=300, store=RedisCacheStore(backend), key_secret=SECRET, **options)
    return layer.wrap(ParseLayer().wrap(transport))


def get(server: LocalServer, path: str) -> Request:
    return Request("GET", server.url_for(path), endpoint="redis-age")


async def test_a_hit_from_redis_carries_its_age_and_a_304_resets_it(
    backend: RedisBackend,
    sync_redis: redis.Redis,
    prefix: str,
    lamina_server: LocalServer,
    transport_factory: Any,
) -> None:
    origin = Origin("max-age=30")
    path = f"/redis-age/{transport_factory.kind}"
    lamina_server.route(path, origin)
    svc = stack(backend, transport_factory())
    first = await svc(get(lamina_server, path))
    assert "age" not in first.headers
    backdate(sync_redis, prefix, 7)
    hit = await svc(get(lamina_server, path))
    assert hit.from_cache
    # 7 s old (8 only if this machine stalled a whole second between the two lines)
    assert hit.headers.get_list("age") in (["7"], ["8"])
    backdate(sync_redis, prefix, 53)  # 60 s old: stale, revalidated with its ETag
    revalidated = await svc(get(lamina_server, path))
    assert origin.answers == [200, 304]
    assert revalidated.from_cache
    assert "age" not in revalidated.headers  # validated by the origin for this call
    again = await svc(get(lamina_server, path))
    assert again.from_cache
    assert again.headers.get_list("age") in (["0"], ["1"])  # from the 304, not 60
    assert origin.answers == [200, 304]
