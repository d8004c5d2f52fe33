"""MemoryCacheStore (cachetools TLRUCache on an injectable clock) and CacheEntry copies."""

from __future__ import annotations

from typing import Any

import pytest

from lamina import ConfigError, Request
from lamina._headers import Headers
from lamina.layers.cache.store import CacheEntry, CacheStore, MemoryCacheStore, SyncCacheStore
from lamina.testing import ManualClock


def entry(namespace: str | None = "users", value: Any = None, **kw: Any) -> CacheEntry:
    kw.setdefault("stored_at", 0.0)
    kw.setdefault("fresh_for", 10.0)
    return CacheEntry(
        status_code=200,
        headers=Headers({"content-type": "application/json"}),
        content=b"{}",
        value={"items": [1, 2]} if value is None else value,
        namespace=namespace,
        **kw,
    )


def test_memory_store_satisfies_both_protocols() -> None:
    store = MemoryCacheStore()
    assert isinstance(store, CacheStore)
    assert isinstance(store, SyncCacheStore)


@pytest.mark.parametrize("maxsize", [0, -1, 1.5, True, "10"])
def test_maxsize_is_validated(maxsize: Any) -> None:
    with pytest.raises(ConfigError) as info:
        MemoryCacheStore(maxsize)
    assert info.value.field == "maxsize"


async def test_entries_expire_after_their_own_ttl_in_virtual_time(
    manual_clock: ManualClock,
) -> None:
    store = MemoryCacheStore(clock=manual_clock)
    short, long = entry(), entry()
    await store.set("short", short, 5)
    await store.set("long", long, 50)
    assert await store.get("short") is short
    manual_clock.advance(4.9)
    assert await store.get("short") is short
    manual_clock.advance(0.2)
    assert await store.get("short") is None
    assert await store.get("long") is long
    assert len(store) == 1
    manual_clock.advance(50)
    assert len(store) == 0
    await store.set("gone", entry(), 0)
    assert await store.get("gone") is None


async def test_maxsize_evicts_least_recently_used(manual_clock: ManualClock) -> None:
    store = MemoryCacheStore(2, clock=manual_clock)
    await store.set("a", entry(), 60)
    await store.set("b", entry(), 60)
    assert await store.get("a") is not None  # a is now the most recently used
    await store.set("c", entry(), 60)
    assert await store.get("b") is None
    assert await store.get("a") is not None
    assert await store.get("c") is not None
    assert len(store) == 2


def test_namespace_index_drives_clear_and_is_pruned(manual_clock: ManualClock) -> None:
    store = MemoryCacheStore(3, clock=manual_clock)
    store.set_nowait("u1", entry("users"), 60)
    store.set_nowait("u2", entry("users"), 5)
    store.set_nowait("p1", entry("posts"), 60)
    store.set_nowait("n1", entry(None), 60)  # evicts u1 (least recently used)
    index = store._cache.index
    assert index == {"users": {"u2"}, "posts": {"p1"}, None: {"n1"}}
    manual_clock.advance(6)
    store.set_nowait("p2", entry("posts"), 60)  # expiry of u2 happens on this write
    assert "users" not in index
    assert store.clear_nowait("users") == 0
    assert store.clear_nowait("posts") == 2
    assert store.get_nowait("p1") is None
    assert store.get_nowait("n1") is not None
    assert store.clear_nowait() == 1
    assert len(store) == 0
    assert index == {}


async def test_overwrite_moves_key_between_namespaces_and_delete() -> None:
    store = MemoryCacheStore()
    await store.set("k", entry("a"), 60)
    await store.set("k", entry("b"), 60)
    assert store._cache.index == {"b": {"k"}}
    await store.delete("k")
    await store.delete("missing")
    assert store._cache.index == {}
    await store.set("k", entry("b"), 60)
    await store.clear("b")
    assert await store.get("k") is None


def test_repr_shows_size_not_keys() -> None:
    store = MemoryCacheStore(8)
    store.set_nowait("users|GET http://secret.example/", entry(), 60)
    assert repr(store) == "MemoryCacheStore(size=1, maxsize=8)"


def test_entry_value_is_a_new_copy_each_time() -> None:
    original = {"items": [1, 2], "nested": {"a": 1}}
    e = entry(value=original)
    original["items"].append(3)  # the caller's object is not the stored one
    first = e.value
    first["items"].append(99)
    first["nested"]["a"] = 2
    assert e.value == {"items": [1, 2], "nested": {"a": 1}}
    assert e.value is not e.value


def test_immutable_values_are_shared_and_unpicklable_ones_deep_copied() -> None:
    text = "a" * 100
    assert entry(value=text).value is text
    local = {"fn": lambda: 1, "data": [1]}  # lambdas do not pickle: deepcopy fallback
    e = entry(value=local)
    got = e.value
    got["data"].append(2)
    assert e.value["data"] == [1]
    assert local["data"] == [1]
    assert e.value["fn"] is local["fn"]  # deepcopy shares functions


def test_entry_freshness_vary_and_response() -> None:
    e = entry(stored_at=100.0, fresh_for=10.0, stale_for=5.0)
    assert e.is_fresh(109.9)
    assert not e.is_fresh(110.0)
    assert e.is_usable_stale(114.9)
    assert not e.is_usable_stale(115.0)
    assert e.age(103.0) == 3.0
    request = Request("GET", "http://api.test/")
    response = e.to_response(request, stale=True)
    assert response.from_cache
    assert response.stale
    assert response.attempts == 0
    assert response.request is request
    assert response.value == {"items": [1, 2]}
    assert "secret" not in repr(e)
