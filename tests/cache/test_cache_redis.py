"""The response cache on a real Redis, against the real local server on every transport:
``Age`` on answers served from Redis, and a late revalidation that must not overwrite a
newer entry.

Entry times live on the Redis server's clock; a test moves an entry back in time by
editing its stored time (``t``, microseconds) rather than sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

import redis
from lamina import Request, Service
from lamina._events import listen
from lamina.backends.redis import RedisBackend
from lamina.layers.cache import CacheLayer, RedisCacheStore
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, RecordedRequest

from .conftest import HoldConditional

pytestmark = pytest.mark.timeout(30)

SECRET = "cache-redis-test-key-0123456789ab"


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


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, attrs: Mapping[str, Any]) -> None:
        self.seen.append((name, dict(attrs)))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [attrs for seen, attrs in self.seen if seen == name]


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


# -- a late 304 does not overwrite a newer entry ----------------------------------------


async def test_a_late_304_does_not_overwrite_an_entry_stored_meanwhile(
    backend: RedisBackend,
    sync_redis: redis.Redis,
    prefix: str,
    lamina_server: LocalServer,
    transport_factory: Any,
) -> None:
    origin = Origin("max-age=30")
    path = f"/redis-late-304/{transport_factory.kind}"
    lamina_server.route(path, origin)

    def layer() -> CacheLayer:  # each its own SharedCache: as in two processes
        return CacheLayer(ttl=300, store=RedisCacheStore(backend), key_secret=SECRET)

    held = HoldConditional(transport_factory())
    slow = layer().wrap(ParseLayer().wrap(held))
    other = layer().wrap(ParseLayer().wrap(transport_factory()))
    assert (await slow(get(lamina_server, path))).json() == {"version": 1}
    backdate(sync_redis, prefix, 60)  # stale: the next call revalidates with "v1"
    events = Events()
    late = asyncio.create_task(slow(listen(get(lamina_server, path), events)))
    await held.arrived.wait()  # the origin said 304 for v1; the answer is held here
    origin.version = 2
    newer = await other(get(lamina_server, path))  # revalidates too: v2 comes back, stored
    assert newer.json() == {"version": 2}
    assert origin.answers == [200, 304, 200]
    held.release.set()
    revalidated = await late  # the 304 is served to its caller...
    assert revalidated.json() == {"version": 1}
    assert revalidated.from_cache
    # ... but it does not replace the entry stored after the one it revalidated
    assert events.named("cache.skip") == [{"reason": "a newer entry was stored meanwhile"}]
    for svc in (slow, other, layer().wrap(ParseLayer().wrap(transport_factory()))):
        answer = await svc(get(lamina_server, path))
        assert answer.from_cache
        assert answer.json() == {"version": 2}
    assert origin.answers == [200, 304, 200]


async def test_a_304_still_renews_the_entry_it_revalidated(
    backend: RedisBackend,
    sync_redis: redis.Redis,
    prefix: str,
    lamina_server: LocalServer,
    transport_factory: Any,
) -> None:
    origin = Origin("max-age=30")
    path = f"/redis-renew/{transport_factory.kind}"
    lamina_server.route(path, origin)
    svc = stack(backend, transport_factory())
    await svc(get(lamina_server, path))
    backdate(sync_redis, prefix, 60)
    assert (await svc(get(lamina_server, path))).from_cache  # a 304
    assert (await svc(get(lamina_server, path))).from_cache  # renewed: a plain hit
    assert origin.answers == [200, 304]


async def test_replace_is_a_compare_and_set_on_the_version_read(backend: RedisBackend) -> None:
    from lamina._headers import Headers
    from lamina.layers.cache import CacheEntry

    def entry(body: bytes) -> CacheEntry:
        return CacheEntry(
            status_code=200,
            headers=Headers({"ETag": '"e"'}),
            content=body,
            value=body.decode(),
            namespace="cas",
            stored_at=0.0,
            fresh_for=30,
        )

    store = RedisCacheStore(backend)
    await store.set("cas|k", entry(b"one"), 60)
    read = await store.get("cas|k")
    assert read is not None
    assert read.stamp is not None
    await store.set("cas|k", entry(b"two"), 60)  # another writer, meanwhile
    assert not await store.replace("cas|k", entry(b"late"), 60, read)
    again = await store.get("cas|k")
    assert again is not None
    assert again.content == b"two"
    assert await store.replace("cas|k", entry(b"three"), 60, again)  # still the one read
    last = await store.get("cas|k")
    assert last is not None
    assert last.content == b"three"
    assert last.stamp not in (None, again.stamp)  # a new version
    await store.delete("cas|k")
    assert await store.replace("cas|k", entry(b"back"), 60, again)  # gone: stored again


async def test_a_store_never_reads_an_entry_over_its_own_max_value_bytes(
    backend: RedisBackend, lamina_server: LocalServer, transport_factory: Any
) -> None:
    def layer(max_value_bytes: int) -> CacheLayer:
        store = RedisCacheStore(backend, max_value_bytes=max_value_bytes)
        return CacheLayer(ttl=300, store=store, key_secret=SECRET)

    roomy, tight = layer(1 << 20), layer(4000)
    big = roomy.wrap(ParseLayer().wrap(transport_factory()))
    small = tight.wrap(ParseLayer().wrap(transport_factory()))
    path = f"/large?bytes=5000&k={transport_factory.kind}"
    before = lamina_server.hits("/large")
    assert not (await big(get(lamina_server, path))).from_cache  # stored (about 7 KB)
    assert (await big(get(lamina_server, path))).from_cache
    answer = await small(get(lamina_server, path))  # over 4000 bytes: not read, not stored
    assert not answer.from_cache
    assert len(answer.content) == 5000
    assert lamina_server.hits("/large") - before == 2
    assert isinstance(tight.store, RedisCacheStore)
    assert tight.store.skipped == 2  # the read, then the write
    assert (await big(get(lamina_server, path))).from_cache  # still there for the roomy one


# -- compare-and-set against writers of an older lamina, and a late 304 saying no-store ------

#: The SET script of lamina before entry versions (a3e604a): HSET of 'd' and 't' only, so
#: a version ('n') written before stays in the hash beside the older lamina's entry.
OLD_SET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', KEYS[1], 'd', ARGV[1], 't', string.format('%.0f', now - tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


def cas_entry(body: bytes) -> Any:
    from lamina._headers import Headers
    from lamina.layers.cache import CacheEntry

    return CacheEntry(
        status_code=200,
        headers=Headers({"ETag": '"e"'}),
        content=body,
        value=body.decode(),
        namespace="cas",
        stored_at=0.0,
        fresh_for=30,
    )


def old_lamina_set(sync_redis: redis.Redis, store: RedisCacheStore, key: str, body: bytes) -> None:
    """Store as a process running lamina before entry versions does."""
    import json

    from lamina.layers.cache.redis import _encode

    blob = json.dumps(_encode(cas_entry(body)), separators=(",", ":"))
    sync_redis.eval(OLD_SET, 1, store.key(key, "cas"), blob, 0, 60_000)


async def test_replace_refuses_an_entry_an_older_lamina_stored_meanwhile(
    backend: RedisBackend, sync_redis: redis.Redis
) -> None:
    """A rolling upgrade: this process read v1 (with a version), a process still on the
    older lamina stored v2 (leaving v1's version in the hash). Was: the version matched,
    and the late 304 wrote v1 back over v2."""
    store = RedisCacheStore(backend)
    await store.set("cas|k", cas_entry(b"one"), 60)
    read = await store.get("cas|k")
    assert read is not None
    old_lamina_set(sync_redis, store, "cas|k", b"two")
    assert not await store.replace("cas|k", cas_entry(b"late"), 60, read)
    now = await store.get("cas|k")
    assert now is not None
    assert now.content == b"two"


async def test_replace_of_an_entry_an_older_lamina_stored_is_a_compare_and_set_too(
    backend: RedisBackend, sync_redis: redis.Redis
) -> None:
    """An entry without a version (an older lamina's) is told apart by its stored time.
    Was: stored unconditionally, over a newer one."""
    store = RedisCacheStore(backend)
    old_lamina_set(sync_redis, store, "cas|k", b"one")
    read = await store.get("cas|k")
    assert read is not None
    old_lamina_set(sync_redis, store, "cas|k", b"two")  # another old process, meanwhile
    assert not await store.replace("cas|k", cas_entry(b"late"), 60, read)
    now = await store.get("cas|k")
    assert now is not None
    assert now.content == b"two"
    assert await store.replace("cas|k", cas_entry(b"three"), 60, now)  # still the one read
    last = await store.get("cas|k")
    assert last is not None
    assert last.content == b"three"


async def test_a_late_304_saying_no_store_does_not_delete_an_entry_stored_meanwhile(
    backend: RedisBackend,
    sync_redis: redis.Redis,
    prefix: str,
    lamina_server: LocalServer,
    transport_factory: Any,
) -> None:
    """The 304 forbids storing what it revalidated, not what another process stored
    after. Was: deleted unconditionally; the next call went to the origin."""
    answers: list[int] = []
    state = {"version": 1}

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        version = state["version"]
        if req.headers.get("if-none-match") == f'"v{version}"':
            answers.append(304)
            return 304, b"", {"Cache-Control": "no-store", "ETag": f'"v{version}"'}
        answers.append(200)
        return 200, {"version": version}, {"Cache-Control": "max-age=30", "ETag": f'"v{version}"'}

    path = f"/redis-late-no-store/{transport_factory.kind}"
    lamina_server.route(path, origin)

    def layer() -> CacheLayer:  # each its own SharedCache: as in two processes
        return CacheLayer(ttl=300, store=RedisCacheStore(backend), key_secret=SECRET)

    held = HoldConditional(transport_factory())
    slow = layer().wrap(ParseLayer().wrap(held))
    other = layer().wrap(ParseLayer().wrap(transport_factory()))
    await slow(get(lamina_server, path))
    backdate(sync_redis, prefix, 60)
    late = asyncio.create_task(slow(get(lamina_server, path)))
    await held.arrived.wait()  # the origin said 304 no-store for v1; held here
    state["version"] = 2
    assert (await other(get(lamina_server, path))).json() == {"version": 2}  # stored
    held.release.set()
    assert (await late).json() == {"version": 1}  # the 304 still answers its caller
    hit = await layer().wrap(ParseLayer().wrap(transport_factory()))(get(lamina_server, path))
    assert (hit.from_cache, hit.json()) == (True, {"version": 2})
    assert answers == [200, 304, 200]


async def test_a_304_saying_no_store_deletes_the_entry_it_revalidated(
    backend: RedisBackend,
    sync_redis: redis.Redis,
    prefix: str,
    lamina_server: LocalServer,
    transport_factory: Any,
) -> None:
    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        if req.headers.get("if-none-match") == '"v1"':
            return 304, b"", {"Cache-Control": "no-store", "ETag": '"v1"'}
        return 200, {"version": 1}, {"Cache-Control": "max-age=30", "ETag": '"v1"'}

    path = f"/redis-no-store-304/{transport_factory.kind}"
    lamina_server.route(path, origin)
    svc = stack(backend, transport_factory())
    await svc(get(lamina_server, path))
    backdate(sync_redis, prefix, 60)
    assert (await svc(get(lamina_server, path))).from_cache  # the 304
    assert entries(sync_redis, prefix) == []


@pytest.mark.parametrize("no_store", [False, True], ids=["renewed", "no-store"])
async def test_a_304_while_redis_is_down_renews_or_drops_the_local_fallback_entry(
    lamina_server: LocalServer, transport_factory: Any, no_store: bool
) -> None:
    """on_error="local": the entry lives in the fallback store; a 304 renews it there (the
    compare-and-set has nothing to compare with), a 304 saying no-store drops it."""
    from lamina.testing import ManualClock

    answers: list[int] = []

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        if req.headers.get("if-none-match") == '"v1"':
            answers.append(304)
            cc = "no-store" if no_store else "max-age=30"
            return 304, b"", {"Cache-Control": cc, "ETag": '"v1"'}
        answers.append(200)
        return 200, {"version": 1}, {"Cache-Control": "max-age=30", "ETag": '"v1"'}

    path = f"/redis-down-304/{transport_factory.kind}-{no_store}"
    lamina_server.route(path, origin)
    backend = RedisBackend(
        "redis://127.0.0.1:1/0", prefix="lamina-test-dead", on_error="local", retry_interval=30
    )
    try:
        clock = ManualClock()
        layer = CacheLayer(ttl=300, store=backend, key_secret=SECRET, clock=clock)
        svc = layer.wrap(ParseLayer().wrap(transport_factory()))
        await svc(get(lamina_server, path))
        clock.advance(31)
        revalidated = await svc(get(lamina_server, path))
        assert (revalidated.from_cache, revalidated.json()) == (True, {"version": 1})
        after = await svc(get(lamina_server, path))
        assert after.from_cache is (not no_store)
        assert answers == ([200, 304, 200] if no_store else [200, 304])
    finally:
        await backend.aclose()


def backdate_all(sync_redis: redis.Redis, prefix: str, seconds: float) -> None:
    """Make every stored entry ``seconds`` older, as if written then: its stored time and
    the time its version names move together (the version stays the same)."""
    for key in entries(sync_redis, prefix):
        n, t = sync_redis.hmget(key, "n", "t")
        assert n is not None
        assert t is not None
        version, _, at = n.decode().rpartition(":")
        assert at == t.decode()  # a version of this lamina
        moved = int(t) - int(seconds * 1_000_000)
        sync_redis.hset(key, mapping={"t": moved, "n": f"{version}:{moved}"})


async def test_a_304_renews_each_vary_variant_under_both_its_keys(
    backend: RedisBackend,
    sync_redis: redis.Redis,
    prefix: str,
    lamina_server: LocalServer,
    transport_factory: Any,
) -> None:
    """Vary on a header the key leaves out: a variant is kept under the key and its own
    key, both with one version. A 304 renews it under each key that still holds it, and
    not the key another variant took meanwhile."""
    answers: list[tuple[str, int]] = []

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        lang = req.headers.get("accept-language", "")
        headers = {"Cache-Control": "max-age=30", "ETag": f'"{lang}"', "Vary": "Accept-Language"}
        if req.headers.get("if-none-match") == f'"{lang}"':
            answers.append((lang, 304))
            return 304, b"", headers
        answers.append((lang, 200))
        return 200, {"lang": lang}, headers

    path = f"/redis-vary-304/{transport_factory.kind}"
    lamina_server.route(path, origin)

    def call(svc: Service, lang: str) -> Any:
        return svc(
            Request(
                "GET", lamina_server.url_for(path), headers={"Accept-Language": lang}, endpoint="v"
            )
        )

    svc = stack(backend, transport_factory())
    await call(svc, "en")
    await call(svc, "fr")  # the key now holds fr; en stays under its own key
    assert len(entries(sync_redis, prefix)) == 3
    backdate_all(sync_redis, prefix, 60)
    for lang in ("en", "fr"):
        revalidated = await call(svc, lang)
        assert (revalidated.from_cache, revalidated.json()) == (True, {"lang": lang})
    seconds, micros = sync_redis.time()
    now_us = seconds * 1_000_000 + micros
    for key in entries(sync_redis, prefix):  # all three renewed (none 60 s old any more)
        assert now_us - int(sync_redis.hget(key, "t") or 0) < 30_000_000
    for lang in ("en", "fr", "en", "fr"):  # another process: every variant renewed
        hit = await call(stack(backend, transport_factory()), lang)
        assert (hit.from_cache, hit.json()) == (True, {"lang": lang})
    assert answers == [("en", 200), ("fr", 200), ("en", 304), ("fr", 304)]
