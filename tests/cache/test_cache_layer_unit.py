"""CacheLayer rules with a stub inner service: config, modes, coalescing edge cases."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from lamina import (
    CircuitOpenError,
    ConfigError,
    HTTPStatusError,
    Request,
    Response,
    Service,
    TransportError,
    service_fn,
)
from lamina._events import listen
from lamina.layers.cache import CACHE_MODE, CacheEntry, CacheLayer, MemoryCacheStore, SharedCache
from lamina.testing import ManualClock

pytestmark = pytest.mark.timeout(10)


class Upstream:
    """A stub inner service that counts calls and can be told how to answer."""

    def __init__(self) -> None:
        self.calls = 0
        self.headers: dict[str, str] = {}
        self.error: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        value = {"n": self.calls, "lang": request.headers.get("accept-language")}
        return Response(200, headers=self.headers, request=request, value=value)


def make(**kw: Any) -> tuple[Service, Upstream, CacheLayer]:
    upstream = Upstream()
    layer = CacheLayer(**kw)
    return layer.wrap(service_fn(upstream)), upstream, layer


def req(method: str = "GET", **kw: Any) -> Request:
    return Request(method, "http://api.test/items", endpoint="items", **kw)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl": 0}, "ttl"),
        ({"ttl": -1}, "ttl"),
        ({"ttl": True}, "ttl"),
        ({"ttl": float("nan")}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"ttl": "60"}, "ttl"),
        ({"maxsize": 0}, "maxsize"),
        ({"maxsize": 2.5}, "maxsize"),
        ({"stale_if_error": 0}, "stale_if_error"),
        ({"stale_if_error": -5}, "stale_if_error"),
        ({"key": "url"}, "key"),
        ({"store": object()}, "store"),
        ({"cache_authorized": 1}, "cache_authorized"),
        ({"revalidate": "yes"}, "revalidate"),
        ({"methods": "GET"}, "methods"),
        ({"methods": ()}, "methods"),
        ({"methods": (1,)}, "methods"),
        ({"clock": object()}, "clock"),
        ({"ignore_headers": "X-Client-Build"}, "ignore_headers"),
        ({"ignore_headers": ["Cookie"]}, "ignore_headers"),
        ({"ignore_headers": ["X-A"], "include_headers": ["x-a"]}, "ignore_headers"),
        ({"include_headers": ["no spaces"]}, "include_headers"),
        ({"key_secret": "too-short"}, "key_secret"),
        ({"key_secret": 12345678901234567890}, "key_secret"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        CacheLayer(**kwargs)
    assert info.value.field == field


def test_repr_shows_size_and_ttl_only() -> None:
    layer = CacheLayer(ttl=60, maxsize=10, stale_if_error=5)
    assert repr(layer) == (
        "CacheLayer(size=0, ttl=60, maxsize=10, stale_if_error=5, store=MemoryCacheStore)"
    )


async def test_bypass_neither_reads_nor_stores() -> None:
    svc, upstream, _layer = make()
    await svc(req())
    bypass = req(extensions={CACHE_MODE: "bypass"})
    assert not (await svc(bypass)).from_cache
    assert upstream.calls == 2
    # bypass did not overwrite the entry (the hit still shows the first value)
    assert (await svc(req())).value["n"] == 1
    fresh, _up2, _ = make()
    await fresh(req(extensions={CACHE_MODE: "bypass"}))
    assert not (await fresh(req())).from_cache


async def test_refresh_skips_the_read_and_stores_the_new_response() -> None:
    svc, _upstream, _ = make()
    events: list[tuple[str, Mapping[str, Any]]] = []
    await svc(req())
    refreshed = await svc(
        listen(req(extensions={CACHE_MODE: "refresh"}), lambda n, a: events.append((n, a)))
    )
    assert refreshed.value["n"] == 2
    assert not refreshed.from_cache
    assert events == [("cache.miss", {"reason": "refresh"})]
    hit = await svc(req())
    assert hit.from_cache
    assert hit.value["n"] == 2


async def test_unknown_mode_is_a_config_error() -> None:
    svc, upstream, _ = make()
    with pytest.raises(ConfigError) as info:
        await svc(req(extensions={CACHE_MODE: "sometimes"}))
    assert "lamina.cache" in str(info.value.field)
    assert upstream.calls == 0


async def test_request_no_cache_goes_upstream() -> None:
    svc, upstream, _ = make()
    await svc(req())
    assert not (await svc(req(headers={"Cache-Control": "no-cache"}))).from_cache
    assert not (await svc(req(headers={"Cache-Control": "max-age=0"}))).from_cache
    assert upstream.calls == 3


async def test_methods_are_configurable_and_head_is_its_own_entry() -> None:
    svc, upstream, _ = make()
    await svc(req("HEAD"))
    await svc(req("GET"))
    assert (await svc(req("HEAD"))).from_cache
    assert upstream.calls == 2
    post_svc, post_up, _ = make(methods=(m for m in ["post"]))  # any iterable
    await post_svc(req("POST", json={"q": 1}))
    assert (await post_svc(req("POST", json={"q": 1}))).from_cache
    assert not (await post_svc(req("POST", json={"q": 2}))).from_cache
    assert not (await post_svc(req("GET"))).from_cache
    assert not (await post_svc(req("GET"))).from_cache
    assert post_up.calls == 4


async def test_leader_failure_is_shared_not_stampeded() -> None:
    svc, upstream, _ = make()
    upstream.gate = asyncio.Event()
    upstream.error = TransportError("connection reset")
    tasks = [asyncio.create_task(svc(req())) for _ in range(20)]
    await asyncio.sleep(0)
    upstream.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert upstream.calls == 1
    assert all(isinstance(r, TransportError) for r in results)


async def test_followers_with_other_vary_values_call_upstream_themselves() -> None:
    svc, upstream, _ = make()
    upstream.headers = {"Vary": "Accept-Language"}
    upstream.gate = asyncio.Event()

    def lang(value: str) -> Request:
        return req(headers={"Accept-Language": value})

    tasks = [asyncio.create_task(svc(lang(v))) for v in ("fr", "fr", "de")]
    await asyncio.sleep(0)
    upstream.gate.set()
    fr1, fr2, de = await asyncio.gather(*tasks)
    assert fr1.value["lang"] == fr2.value["lang"] == "fr"
    assert de.value["lang"] == "de"
    assert upstream.calls == 2


async def test_unstorable_responses_are_not_shared_with_followers() -> None:
    svc, upstream, _ = make()
    upstream.headers = {"Cache-Control": "no-store"}
    upstream.gate = asyncio.Event()
    tasks = [asyncio.create_task(svc(req())) for _ in range(3)]
    await asyncio.sleep(0)
    upstream.gate.set()
    results = await asyncio.gather(*tasks)
    assert upstream.calls == 3
    assert sorted(r.value["n"] for r in results) == [1, 2, 3]


async def test_followers_share_a_stale_answer() -> None:
    clock = ManualClock()
    svc, upstream, _ = make(ttl=10, stale_if_error=60, clock=clock)
    await svc(req())
    clock.advance(11)
    upstream.error = CircuitOpenError(retry_after=30.0)
    upstream.gate = asyncio.Event()
    events: list[str] = []
    tasks = [
        asyncio.create_task(svc(listen(req(), lambda n, a: events.append(n)))) for _ in range(5)
    ]
    await asyncio.sleep(0)
    upstream.gate.set()
    results = await asyncio.gather(*tasks)
    assert upstream.calls == 2
    assert all(r.stale and r.from_cache and r.value["n"] == 1 for r in results)
    assert events.count("cache.stale") == 5


@pytest.mark.parametrize(
    ("error", "headers"),
    [
        (HTTPStatusError("gone", status_code=404), {}),
        (TransportError("reset"), {"Cache-Control": "must-revalidate"}),
    ],
)
async def test_no_stale_for_client_errors_or_must_revalidate(
    error: Exception, headers: dict[str, str]
) -> None:
    clock = ManualClock()
    svc, upstream, _ = make(ttl=10, stale_if_error=60, clock=clock)
    upstream.headers = headers
    await svc(req())
    clock.advance(11)
    upstream.error = error
    with pytest.raises(type(error)):
        await svc(req())


async def test_invalidation_during_a_call_prevents_storing_its_result() -> None:
    svc, upstream, layer = make()
    upstream.gate = asyncio.Event()
    task = asyncio.create_task(svc(req()))
    await asyncio.sleep(0)
    layer.invalidate("items")
    upstream.gate.set()
    await task
    assert not (await svc(req())).from_cache
    assert (await svc(req())).from_cache
    upstream.gate.clear()
    task = asyncio.create_task(svc(req(extensions={CACHE_MODE: "refresh"})))
    await asyncio.sleep(0)
    layer.clear()
    upstream.gate.set()
    await task
    assert not (await svc(req())).from_cache


async def test_custom_key_is_scoped_by_namespace_and_credentials() -> None:
    svc, upstream, layer = make(key=lambda r: "everything")
    await svc(req())
    assert (await svc(Request("GET", "http://api.test/other", endpoint="items"))).from_cache
    assert not (await svc(Request("GET", "http://api.test/items", endpoint="else"))).from_cache
    authed = req(headers={"X-API-Key": "k-123456"})
    assert not (await svc(authed)).from_cache  # different credentials, different entry
    assert upstream.calls == 3
    assert all("k-123456" not in k for k in layer.store._cache)  # type: ignore[attr-defined]


class AsyncOnlyStore:
    """A store that needs I/O (like a network store): no *_nowait methods."""

    def __init__(self) -> None:
        self.inner = MemoryCacheStore()
        self.cleared: list[str | None] = []

    async def get(self, key: str) -> CacheEntry | None:
        return await self.inner.get(key)

    async def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        await self.inner.set(key, entry, ttl)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def clear(self, namespace: str | None = None) -> None:
        self.cleared.append(namespace)
        await self.inner.clear(namespace)


async def test_pluggable_store_and_async_invalidation() -> None:
    store = AsyncOnlyStore()
    svc, _upstream, layer = make(store=store)
    await svc(req())
    assert (await svc(req())).from_cache
    with pytest.raises(TypeError, match="ainvalidate"):
        layer.invalidate("items")
    with pytest.raises(TypeError):
        layer.clear()
    await layer.ainvalidate("items")
    await layer.aclear()
    assert store.cleared == ["items", None]
    assert not (await svc(req())).from_cache
    assert "store=AsyncOnlyStore" in repr(layer)


class BrokenStore(AsyncOnlyStore):
    async def get(self, key: str) -> CacheEntry | None:
        raise ConnectionError("store down")

    async def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        raise ConnectionError("store down")


async def test_a_failing_store_degrades_to_pass_through(caplog: pytest.LogCaptureFixture) -> None:
    svc, upstream, _ = make(store=BrokenStore())
    for _ in range(2):
        assert (await svc(req())).value["n"] == upstream.calls
    assert upstream.calls == 2
    assert "cache store get failed" in caplog.text
    assert "cache store set failed" in caplog.text


async def test_a_failed_refresh_serves_the_entry_only_with_stale_if_error() -> None:
    refresh = {CACHE_MODE: "refresh"}
    svc, upstream, _ = make()
    await svc(req())
    upstream.error = TransportError("reset")
    with pytest.raises(TransportError):
        await svc(req(extensions=refresh))
    opted, up2, _ = make(stale_if_error=30)
    await opted(req())
    up2.error = TransportError("reset")
    served = await opted(req(extensions=refresh))
    assert served.stale
    assert served.value["n"] == 1


class SecretStore(MemoryCacheStore):
    """An in-process stand-in for a shared store that keeps the key secret."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.asked = 0
        self.secret: bytes | None = None
        self.candidates: list[bytes] = []

    async def key_secret(self, candidate: bytes, request: Request | None = None) -> bytes | None:
        self.asked += 1
        self.candidates.append(candidate)
        await asyncio.sleep(0)
        return self.secret


async def test_a_shared_secret_is_asked_once_then_hourly_and_a_local_key_stands_in() -> None:
    clock = ManualClock()
    store = SecretStore(clock)

    def tenant() -> Request:
        return req(headers={"X-Tenant-ID": "acme"})

    svc, upstream, layer = make(store=store, clock=clock, ttl=10_000)
    await asyncio.gather(*(svc(tenant()) for _ in range(20)))
    assert store.asked == 1  # concurrent first calls share one ask
    assert upstream.calls == 1
    assert (await svc(tenant())).from_cache  # unreachable: a local key, still a working cache
    assert store.asked == 1
    clock.advance(1.5)  # asked again a second later
    store.secret = b"s" * 32
    assert not (await svc(tenant())).from_cache  # the shared key: other keys
    assert store.asked == 2
    assert (await svc(tenant())).from_cache
    clock.advance(3599)
    assert (await svc(tenant())).from_cache
    assert store.asked == 2
    clock.advance(2)  # renewed after an hour; the same secret keeps every entry
    assert (await svc(tenant())).from_cache
    assert store.asked == 3
    assert store.candidates[-1] == b"s" * 32  # offers the secret it holds, to put it back
    assert upstream.calls == 2
    assert b"s" * 32 not in repr(layer).encode()


def test_an_empty_store_passed_in_is_the_one_used() -> None:
    store = MemoryCacheStore(maxsize=5)  # len() == 0: falsy, and was silently replaced before
    assert CacheLayer(store=store).store is store


# -- a SharedCache handed to several layers ---------------------------------------------


async def test_layers_handed_one_shared_cache_share_entries_and_invalidation() -> None:
    clock = ManualClock()
    shared = SharedCache(clock=clock)
    upstream = Upstream()
    short = CacheLayer(ttl=5, cache=shared).wrap(service_fn(upstream))
    long = CacheLayer(ttl=60, cache=shared).wrap(service_fn(upstream))
    first = await short(req())
    assert (await long(req())).value == first.value  # stored by the other layer
    assert upstream.calls == 1
    assert shared.invalidate("items") == 1
    await long(req())
    assert upstream.calls == 2


async def test_concurrent_misses_through_two_layers_on_one_shared_cache_make_one_call() -> None:
    shared = SharedCache()
    upstream = Upstream()
    upstream.gate = asyncio.Event()
    a = CacheLayer(cache=shared).wrap(service_fn(upstream))
    b = CacheLayer(cache=shared).wrap(service_fn(upstream))
    calls = [asyncio.ensure_future(svc(req())) for svc in (a, b, a)]
    await asyncio.sleep(0)
    upstream.gate.set()
    answers = await asyncio.gather(*calls)
    assert upstream.calls == 1
    assert {r.value["n"] for r in answers} == {1}


@pytest.mark.parametrize(
    "kwargs",
    [{"store": MemoryCacheStore()}, {"key": lambda r: "k"}, {"ignore_headers": ["X-A"]}],
)
def test_cache_and_the_options_it_holds_are_exclusive(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        CacheLayer(cache=SharedCache(), **kwargs)
    assert info.value.field == "cache"
    with pytest.raises(ConfigError) as info:
        CacheLayer(cache=MemoryCacheStore())  # type: ignore[arg-type]
    assert info.value.field == "cache"


def test_repr_names_the_non_default_cache_rules() -> None:
    assert "cache_authorized" not in repr(CacheLayer(ttl=60))
    text = repr(CacheLayer(ttl=60, cache_authorized=False, revalidate=False))
    assert "cache_authorized=False" in text
    assert "revalidate=False" in text
