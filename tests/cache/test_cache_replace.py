"""A late 304 on a memory store shared by two layers (each its own SharedCache, so no
single-flight between them): it must not overwrite, nor delete, an entry the other stored
after the one it revalidated. Real server on every transport, virtual time, interleaved
with events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lamina import Request
from lamina.layers.cache import CacheLayer, MemoryCacheStore
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, ManualClock, RecordedRequest

from .conftest import HoldConditional

pytestmark = pytest.mark.timeout(30)


def get(server: LocalServer, path: str) -> Request:
    return Request("GET", server.url_for(path), endpoint="cas")


@pytest.mark.parametrize("no_store", [False, True], ids=["304", "304-no-store"])
async def test_a_late_304_leaves_an_entry_another_layer_stored_meanwhile(
    lamina_server: LocalServer, transport_factory: Any, no_store: bool
) -> None:
    answers: list[int] = []
    state = {"version": 1}

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        version = state["version"]
        etag = f'"v{version}"'
        if req.headers.get("if-none-match") == etag:
            answers.append(304)
            cc = "no-store" if no_store else "max-age=30"
            return 304, b"", {"Cache-Control": cc, "ETag": etag}
        answers.append(200)
        return 200, {"version": version}, {"Cache-Control": "max-age=30", "ETag": etag}

    path = f"/memory-late-304/{no_store}"
    lamina_server.route(path, origin)
    clock = ManualClock()
    store = MemoryCacheStore(clock=clock)
    held = HoldConditional(transport_factory())
    slow = CacheLayer(ttl=300, store=store, clock=clock).wrap(ParseLayer().wrap(held))
    other = CacheLayer(ttl=300, store=store, clock=clock).wrap(
        ParseLayer().wrap(transport_factory())
    )
    await slow(get(lamina_server, path))
    clock.advance(31)
    late = asyncio.create_task(slow(get(lamina_server, path)))
    await held.arrived.wait()  # the origin said 304 for v1: held here
    state["version"] = 2
    assert (await other(get(lamina_server, path))).value == {"version": 2}  # stored
    held.release.set()
    answer = await late
    assert (answer.from_cache, answer.value) == (True, {"version": 1})  # its caller's answer
    hit = await other(get(lamina_server, path))
    assert (hit.from_cache, hit.value) == (True, {"version": 2})
    assert answers == [200, 304, 200]


class PlainStore:
    """A store of the user's own: get, set, delete and clear only (no compare-and-set)."""

    def __init__(self, clock: ManualClock) -> None:
        self.inner = MemoryCacheStore(clock=clock)

    async def get(self, key: str) -> Any:
        return self.inner.get_nowait(key)

    async def set(self, key: str, entry: Any, ttl: float) -> None:
        self.inner.set_nowait(key, entry, ttl)

    async def delete(self, key: str) -> None:
        self.inner.delete_nowait(key)

    async def clear(self, namespace: str | None = None) -> None:
        self.inner.clear_nowait(namespace)


@pytest.mark.parametrize("kind", ["memory", "plain"])
async def test_a_304_no_store_drops_its_own_variant_not_the_one_under_the_key(
    lamina_server: LocalServer, transport_factory: Any, kind: str
) -> None:
    """Vary on a header the key leaves out: each variant is kept under its own key too,
    and the key holds the last one stored. A 304 saying no-store for "en" drops the "en"
    entry, wherever it lives, and not "fr" under the key. Was: the key's entry ("fr")
    deleted and "en" kept, revalidated again on the next call."""
    seen: list[tuple[str, str | None]] = []

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        lang = req.headers.get("accept-language", "")
        inm = req.headers.get("if-none-match")
        seen.append((lang, inm))
        headers = {"Cache-Control": "max-age=10", "ETag": f'"{lang}"', "Vary": "Accept-Language"}
        if inm == f'"{lang}"':
            if lang == "en":
                headers["Cache-Control"] = "no-store"
            return 304, b"", headers
        return 200, {"lang": lang}, headers

    path = f"/memory-vary-no-store-{kind}"
    lamina_server.route(path, origin)
    clock = ManualClock()
    store = MemoryCacheStore(clock=clock) if kind == "memory" else PlainStore(clock)
    layer = CacheLayer(ttl=300, clock=clock, store=store)
    svc = layer.wrap(ParseLayer().wrap(transport_factory()))

    def call(lang: str) -> Any:
        request = Request(
            "GET", lamina_server.url_for(path), headers={"Accept-Language": lang}, endpoint="cas"
        )
        return svc(request)

    await call("en")
    await call("fr")  # the key now holds "fr"; "en" under its own key
    clock.advance(11)
    assert (await call("en")).value == {"lang": "en"}  # 304 no-store: served, dropped
    assert (await call("en")).value == {"lang": "en"}  # gone: asked without a validator
    assert (await call("fr")).from_cache  # still stored: revalidated, a 304
    assert seen == [("en", None), ("fr", None), ("en", '"en"'), ("en", None), ("fr", '"fr"')]
