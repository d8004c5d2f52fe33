"""CacheLayer against the real local HTTP server (Cache -> Parse -> HttpxTransport)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from lamina import HTTPStatusError, HttpxTransport, Request, Service
from lamina._events import listen
from lamina.layers.cache import CacheLayer
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, ManualClock, RecordedRequest

pytestmark = pytest.mark.timeout(20)

TOKEN_A = "alice-token-1f2e3d"
TOKEN_B = "bob-token-9a8b7c"


@pytest.fixture
async def transport() -> AsyncIterator[HttpxTransport]:
    async with HttpxTransport() as t:
        yield t


def _cc_route(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
    """Answer with the Cache-Control and Vary given in the query."""
    headers = {}
    if "cc" in req.query:
        headers["Cache-Control"] = req.query["cc"]
    if "vary" in req.query:
        headers["Vary"] = req.query["vary"]
    return 200, {"lang": req.headers.get("accept-language"), "items": [1, 2]}, headers


@pytest.fixture
def server(lamina_server: LocalServer) -> LocalServer:
    lamina_server.route("/cc/", _cc_route)
    return lamina_server


def chain(layer: CacheLayer, transport: HttpxTransport) -> Service:
    return layer.wrap(ParseLayer().wrap(transport))


def get(server: LocalServer, path: str, endpoint: str = "ep", **kw: Any) -> Request:
    return Request("GET", server.url_for(path), endpoint=endpoint, **kw)


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, attrs: Mapping[str, Any]) -> None:
        self.seen.append((name, dict(attrs)))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.seen]


async def test_a_hit_never_reaches_the_server(
    server: LocalServer, transport: HttpxTransport
) -> None:
    svc = chain(CacheLayer(ttl=60), transport)
    events = Events()
    first = await svc(listen(get(server, "/json?x=1"), events))
    second = await svc(listen(get(server, "/json?x=1"), events))
    assert server.hits("/json") == 1
    assert not first.from_cache
    assert first.attempts == 1
    assert second.from_cache
    assert not second.stale
    assert second.attempts == 0
    assert second.value == first.value == {"ok": True, "path": "/json", "query": {"x": "1"}}
    assert second.status_code == 200
    assert second.headers["content-type"] == "application/json"
    assert second.json() == first.value
    assert events.names == ["cache.miss", "cache.hit"]
    assert events.seen[0][1] == {"reason": "absent"}


async def test_entries_expire_after_ttl_in_virtual_time(
    server: LocalServer, transport: HttpxTransport, manual_clock: ManualClock
) -> None:
    svc = chain(CacheLayer(ttl=30, clock=manual_clock), transport)
    await svc(get(server, "/json"))
    manual_clock.advance(29.9)
    assert (await svc(get(server, "/json"))).from_cache
    assert server.hits("/json") == 1
    manual_clock.advance(0.2)
    events = Events()
    again = await svc(listen(get(server, "/json"), events))
    assert not again.from_cache
    assert server.hits("/json") == 2
    assert events.seen[0] == ("cache.miss", {"reason": "absent"})  # the store dropped it


async def test_server_max_age_shorter_than_ttl_wins(
    server: LocalServer, transport: HttpxTransport, manual_clock: ManualClock
) -> None:
    svc = chain(CacheLayer(ttl=300, clock=manual_clock), transport)
    path = "/cc/short?cc=max-age%3D5"
    await svc(get(server, path))
    manual_clock.advance(4)
    assert (await svc(get(server, path))).from_cache
    manual_clock.advance(2)
    assert not (await svc(get(server, path))).from_cache
    assert server.hits("/cc/short") == 2


async def test_maxsize_evicts_the_least_recently_used(
    server: LocalServer, transport: HttpxTransport
) -> None:
    layer = CacheLayer(ttl=60, maxsize=2)
    svc = chain(layer, transport)
    for path in ("/json?p=1", "/json?p=2", "/json?p=3"):
        await svc(get(server, path))
    assert "size=2" in repr(layer)
    assert (await svc(get(server, "/json?p=3"))).from_cache
    assert not (await svc(get(server, "/json?p=1"))).from_cache  # evicted
    assert server.hits("/json") == 4


async def test_different_credentials_get_different_entries(
    server: LocalServer, transport: HttpxTransport
) -> None:
    layer = CacheLayer(ttl=60, cache_authorized=True)
    svc = chain(layer, transport)

    def as_(token: str) -> Request:
        return get(server, "/echo", headers={"Authorization": f"Bearer {token}"})

    alice = await svc(as_(TOKEN_A))
    bob = await svc(as_(TOKEN_B))
    assert server.hits("/echo") == 2
    assert alice.value["headers"]["authorization"] == f"Bearer {TOKEN_A}"
    assert bob.value["headers"]["authorization"] == f"Bearer {TOKEN_B}"
    again = await svc(as_(TOKEN_B))
    assert again.from_cache
    assert again.value == bob.value
    assert not (await svc(get(server, "/echo"))).from_cache  # anonymous: its own entry
    assert server.hits("/echo") == 3
    keys = list(layer.store._cache)  # type: ignore[attr-defined]
    assert len(keys) == 3
    for text in [*keys, repr(layer)]:
        assert TOKEN_A not in text
        assert TOKEN_B not in text
        assert "Bearer" not in text


async def test_authorized_responses_are_cached_per_caller_by_default(
    server: LocalServer, transport: HttpxTransport
) -> None:
    """Issue 14.4: a TTL caches authorized responses too, each under its caller's key."""
    auth = {"Authorization": f"Bearer {TOKEN_A}"}
    plain = chain(CacheLayer(ttl=60), transport)
    await plain(get(server, "/cc/auth", headers=auth))
    assert (await plain(get(server, "/cc/auth", headers=auth))).from_cache
    other = {"Authorization": f"Bearer {TOKEN_B}"}
    assert not (await plain(get(server, "/cc/auth", headers=other))).from_cache
    assert server.hits("/cc/auth") == 2
    # no-store still wins
    await plain(get(server, "/cc/never?cc=no-store", headers=auth))
    assert not (await plain(get(server, "/cc/never?cc=no-store", headers=auth))).from_cache
    assert server.hits("/cc/never") == 2


async def test_cache_authorized_false_keeps_rfc_shared_cache_rules(
    server: LocalServer, transport: HttpxTransport
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN_A}"}
    strict = chain(CacheLayer(ttl=60, cache_authorized=False), transport)
    await strict(get(server, "/cc/auth", headers=auth))
    assert not (await strict(get(server, "/cc/auth", headers=auth))).from_cache
    assert server.hits("/cc/auth") == 2
    # The response allows it (RFC 9111 §3.5).
    await strict(get(server, "/cc/public?cc=public", headers=auth))
    assert (await strict(get(server, "/cc/public?cc=public", headers=auth))).from_cache
    assert server.hits("/cc/public") == 1


@pytest.mark.parametrize("cache_control", ["no-store", "private", "no-cache", "max-age=0"])
async def test_responses_that_forbid_storing_are_not_cached(
    server: LocalServer, transport: HttpxTransport, cache_control: str
) -> None:
    svc = chain(CacheLayer(ttl=60), transport)
    path = f"/cc/forbid?cc={cache_control}"
    for _ in range(2):
        assert not (await svc(get(server, path))).from_cache
    assert server.hits("/cc/forbid") == 2


async def test_private_is_cached_per_credential_with_opt_in(
    server: LocalServer, transport: HttpxTransport
) -> None:
    svc = chain(CacheLayer(ttl=60, cache_authorized=True), transport)
    auth = {"Authorization": f"Bearer {TOKEN_A}"}
    await svc(get(server, "/cc/mine?cc=private", headers=auth))
    assert (await svc(get(server, "/cc/mine?cc=private", headers=auth))).from_cache
    assert not (await svc(get(server, "/cc/mine?cc=private"))).from_cache  # no credentials
    assert not (await svc(get(server, "/cc/mine?cc=private"))).from_cache
    assert server.hits("/cc/mine") == 3


async def test_vary_records_request_headers(server: LocalServer, transport: HttpxTransport) -> None:
    svc = chain(CacheLayer(ttl=60), transport)
    path = "/cc/lang?vary=Accept-Language"

    def lang(value: str) -> Request:
        return get(server, path, headers={"Accept-Language": value})

    events = Events()
    assert (await svc(lang("fr"))).value["lang"] == "fr"
    same = await svc(lang("fr"))
    assert same.from_cache
    other = await svc(listen(lang("de"), events))
    assert not other.from_cache
    assert other.value["lang"] == "de"
    assert events.seen[0] == ("cache.miss", {"reason": "vary"})
    assert server.hits("/cc/lang") == 2
    await svc(get(server, "/cc/star?vary=*"))
    assert not (await svc(get(server, "/cc/star?vary=*"))).from_cache
    assert server.hits("/cc/star") == 2


async def test_post_is_not_cached(server: LocalServer, transport: HttpxTransport) -> None:
    svc = chain(CacheLayer(ttl=60), transport)
    for _ in range(2):
        response = await svc(Request("POST", server.url_for("/echo"), json={"a": 1}))
        assert not response.from_cache
    assert server.hits("/echo") == 2


async def test_100_concurrent_identical_calls_make_one_upstream_call(
    server: LocalServer, transport: HttpxTransport
) -> None:
    layer = CacheLayer(ttl=60)
    svc = chain(layer, transport)
    results = await asyncio.gather(*(svc(get(server, "/json?ms=50")) for _ in range(100)))
    assert server.hits("/json") == 1
    assert all(r.value == results[0].value for r in results)
    assert len({id(r.value) for r in results}) == 100  # each caller owns its copy
    results[1].value["ok"] = False
    assert results[2].value["ok"] is True
    assert layer.cache.flights.in_flight() == 0
    assert (await svc(get(server, "/json?ms=50"))).from_cache


async def test_cancelled_leader_hands_over_to_a_follower(
    server: LocalServer, transport: HttpxTransport
) -> None:
    layer = CacheLayer(ttl=60)
    svc = chain(layer, transport)
    # 400 ms answers: the leader is still waiting when it is cancelled, however slowly a
    # loaded machine runs the 10 ms below (with 100 ms, it could have been answered)
    leader = asyncio.create_task(svc(get(server, "/json?ms=400")))
    for _ in range(400):  # until the leader's request has reached the server
        if server.hits("/json"):
            break
        await asyncio.sleep(0.005)
    followers = [asyncio.create_task(svc(get(server, "/json?ms=400"))) for _ in range(10)]
    await asyncio.sleep(0.01)
    leader.cancel()
    results = await asyncio.gather(*followers)
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert server.hits("/json") == 2  # the cancelled call, then one follower's
    assert all(r.value == {"ok": True, "path": "/json", "query": {"ms": "400"}} for r in results)
    assert layer.cache.flights.in_flight() == 0


async def test_stale_if_error_when_the_route_flips_to_503(
    lamina_server: LocalServer, transport: HttpxTransport, manual_clock: ManualClock
) -> None:
    state = {"status": 200, "n": 0}

    def flip(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        state["n"] += 1
        return state["status"], {"n": state["n"]}, {}

    lamina_server.route("/flip/", flip)
    svc = chain(CacheLayer(ttl=10, stale_if_error=30, clock=manual_clock), transport)
    url = "/flip/users"
    assert (await svc(get(lamina_server, url))).value == {"n": 1}
    state["status"] = 503
    manual_clock.advance(11)
    events = Events()
    stale = await svc(listen(get(lamina_server, url), events))
    assert stale.stale
    assert stale.from_cache
    assert stale.value == {"n": 1}
    assert events.names == ["cache.miss", "cache.stale"]
    assert events.seen[0][1] == {"reason": "expired"}  # kept for the stale window
    assert events.seen[1][1] == {"age": 11.0, "error": "HTTPStatusError"}
    assert lamina_server.hits(url) == 2  # the server was asked, and failed
    manual_clock.advance(29)  # past the stale window
    with pytest.raises(HTTPStatusError) as info:
        await svc(get(lamina_server, url))
    assert info.value.status_code == 503
    state["status"] = 200
    fresh = await svc(get(lamina_server, url))
    assert not fresh.stale
    assert fresh.value == {"n": 4}


async def test_without_stale_if_error_the_failure_surfaces(
    lamina_server: LocalServer, transport: HttpxTransport, manual_clock: ManualClock
) -> None:
    state = {"status": 200}
    lamina_server.route("/flip2/", lambda req: (state["status"], {"ok": 1}, {}))
    svc = chain(CacheLayer(ttl=10, clock=manual_clock), transport)
    await svc(get(lamina_server, "/flip2/x"))
    state["status"] = 503
    manual_clock.advance(11)
    with pytest.raises(HTTPStatusError):
        await svc(get(lamina_server, "/flip2/x"))


async def test_mutating_a_returned_value_does_not_change_the_cache(
    server: LocalServer, transport: HttpxTransport
) -> None:
    svc = chain(CacheLayer(ttl=60), transport)
    first = await svc(get(server, "/cc/mut"))
    first.value["items"].append("mine")  # the caller of the miss owns its value
    hit = await svc(get(server, "/cc/mut"))
    assert hit.value == {"lang": None, "items": [1, 2]}
    hit.value["items"].clear()
    hit.value["new"] = True
    assert (await svc(get(server, "/cc/mut"))).value == {"lang": None, "items": [1, 2]}
    assert server.hits("/cc/mut") == 1


async def test_invalidate_one_namespace_and_clear_all(
    server: LocalServer, transport: HttpxTransport
) -> None:
    layer = CacheLayer(ttl=60)
    svc = chain(layer, transport)
    await svc(get(server, "/json?u=1", endpoint="user_service"))
    await svc(get(server, "/json?u=2", endpoint="user_service"))
    await svc(get(server, "/json?p=1", endpoint="post_service"))
    assert layer.invalidate("user_service") == 2
    assert layer.invalidate("user_service") == 0
    assert not (await svc(get(server, "/json?u=1", endpoint="user_service"))).from_cache
    assert (await svc(get(server, "/json?p=1", endpoint="post_service"))).from_cache
    assert server.hits("/json") == 4
    assert layer.clear() == 2
    assert not (await svc(get(server, "/json?p=1", endpoint="post_service"))).from_cache
    await layer.ainvalidate("post_service")
    assert not (await svc(get(server, "/json?p=1", endpoint="post_service"))).from_cache
    await layer.aclear()
    assert "size=0" in repr(layer)
    assert server.hits("/json") == 6


# -- a cached response never crosses callers (issue 12, item 2) -------------------------

TENANT_HEADERS = ["X-RapidAPI-Key", "Ocp-Apim-Subscription-Key", "X-Auth-Key", "X-Tenant-ID"]
TENANT_A = "tenant-acme-7f3e"
TENANT_B = "tenant-globex-2c9d"


@pytest.mark.parametrize("header", TENANT_HEADERS)
async def test_tenants_never_get_each_others_cached_answer(
    server: LocalServer, transport: HttpxTransport, header: str
) -> None:
    layer = CacheLayer(ttl=60)
    svc = chain(layer, transport)

    def as_(tenant: str) -> Request:
        return get(server, "/echo?q=1", headers={header: tenant})

    a = await svc(as_(TENANT_A))
    b = await svc(as_(TENANT_B))
    assert not b.from_cache
    assert server.hits("/echo") == 2
    assert a.value["headers"][header.lower()] == TENANT_A
    assert b.value["headers"][header.lower()] == TENANT_B
    for tenant, first in ((TENANT_A, a), (TENANT_B, b)):
        again = await svc(as_(tenant))
        assert again.from_cache
        assert again.value == first.value
    assert server.hits("/echo") == 2
    keys = list(layer.store._cache)  # type: ignore[attr-defined]
    assert len(keys) == 2
    for key in keys:
        assert TENANT_A not in key
        assert TENANT_B not in key


async def test_ignored_headers_still_share_the_cache(
    server: LocalServer, transport: HttpxTransport
) -> None:
    svc = chain(CacheLayer(ttl=60), transport)
    for i in range(4):
        headers = {
            "X-Tenant-ID": TENANT_A,
            "traceparent": f"00-{i:032x}-{i + 1:016x}-01",
            "User-Agent": f"app/{i}",
            "X-Request-ID": f"req-{i}",
            "Accept": "application/json",
        }
        response = await svc(get(server, "/echo?q=2", headers=headers))
        assert response.from_cache == (i > 0)
    assert server.hits("/echo") == 1


async def test_users_extend_the_ignored_set_both_ways(
    server: LocalServer, transport: HttpxTransport
) -> None:
    ignore = chain(CacheLayer(ttl=60, ignore_headers=["X-Client-Build"]), transport)
    for build in ("101", "102"):
        await ignore(get(server, "/echo?p=ignore", headers={"X-Client-Build": build}))
    assert server.hits("/echo") == 1
    include = chain(CacheLayer(ttl=60, include_headers=["user-agent"]), transport)
    for agent in ("tenant-a-bot/1", "tenant-b-bot/1", "tenant-a-bot/1"):
        await include(get(server, "/echo?p=include", headers={"User-Agent": agent}))
    assert server.hits("/echo") == 3  # two agents, two entries; the third call hit


async def test_vary_keeps_one_entry_per_variant(
    server: LocalServer, transport: HttpxTransport
) -> None:
    svc = chain(CacheLayer(ttl=60), transport)
    path = "/cc/variants?vary=Accept-Language"
    for lang in ("fr", "de", "fr", "de", None):
        headers = {"Accept-Language": lang} if lang else {}
        response = await svc(get(server, path, headers=headers))
        assert response.value["lang"] == lang
    assert server.hits("/cc/variants") == 3  # fr, de and no Accept-Language


async def test_custom_key_functions_stay_per_caller(
    server: LocalServer, transport: HttpxTransport
) -> None:
    svc = chain(CacheLayer(ttl=60, key=lambda request: "one-key-for-all"), transport)
    for tenant in (TENANT_A, TENANT_B, TENANT_A, TENANT_B):
        response = await svc(get(server, "/echo?q=3", headers={"X-Tenant-ID": tenant}))
        assert response.value["headers"]["x-tenant-id"] == tenant
    assert server.hits("/echo") == 2
