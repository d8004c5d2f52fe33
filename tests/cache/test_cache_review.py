"""Review of the cache's caller isolation and revalidation (hostile tenants, hishel users):
each test pins a defect found in review, against the real loopback server on every
transport, in virtual time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lamina import HTTPStatusError, Request
from lamina.layers.cache import CacheLayer, MemoryCacheStore
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, ManualClock, RecordedRequest

pytestmark = pytest.mark.timeout(30)


def get(server: LocalServer, path: str, **headers: str) -> Request:
    return Request("GET", server.url_for(path), headers=headers, endpoint="rv")


async def test_set_cookie_issued_to_one_anonymous_caller_is_never_served_to_another(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    sessions = iter(range(1, 100))

    def login(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        return 200, {"hello": "guest"}, {"Set-Cookie": f"session=s{next(sessions)}; HttpOnly"}

    lamina_server.route("/review/cookie", login)
    svc = CacheLayer(ttl=60, clock=ManualClock()).wrap(ParseLayer().wrap(transport_factory()))
    first = await svc(get(lamina_server, "/review/cookie"))
    assert first.headers["set-cookie"].startswith("session=s1")
    second = await svc(get(lamina_server, "/review/cookie"))  # another anonymous caller
    assert "set-cookie" not in second.headers


class VaryingOrigin:
    """ETag "v1"; answers 304 to If-None-Match "v1" with ``not_modified`` headers."""

    def __init__(self, not_modified: dict[str, str]) -> None:
        self.not_modified = not_modified
        self.answers: list[int] = []

    def __call__(self, req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        if req.headers.get("if-none-match") == '"v1"':
            self.answers.append(304)
            return 304, b"", {"ETag": '"v1"', "Cache-Control": "max-age=10", **self.not_modified}
        self.answers.append(200)
        return 200, {"version": 1}, {"ETag": '"v1"', "Cache-Control": "max-age=10"}


@pytest.mark.parametrize("parse", [True, False], ids=["parse", "bare"])
async def test_a_304_that_adds_vary_keeps_the_stored_body(
    lamina_server: LocalServer, transport_factory: Any, parse: bool
) -> None:
    origin = VaryingOrigin({"Vary": "Accept-Language"})
    lamina_server.route("/review/vary304", origin)
    clock = ManualClock()
    inner = transport_factory()
    svc = CacheLayer(ttl=60, clock=clock).wrap(ParseLayer().wrap(inner) if parse else inner)
    first = await svc(get(lamina_server, "/review/vary304"))
    clock.advance(11)
    again = await svc(get(lamina_server, "/review/vary304"))
    assert origin.answers == [200, 304]
    assert again.content == first.content
    third = await svc(get(lamina_server, "/review/vary304"))  # the entry the 304 stored
    assert origin.answers == [200, 304]
    assert third.from_cache
    assert third.content == first.content
    if parse:
        assert third.value == {"version": 1}


async def test_a_cached_post_is_never_made_conditional(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    """RFC 9110 §13.1.2: If-None-Match on a POST is a precondition (412 when it matches),
    not a revalidation, so a stale POST entry is fetched again plainly."""
    seen: list[dict[str, str]] = []

    def search(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        seen.append(req.headers)
        headers = {"ETag": '"r1"', "Cache-Control": "max-age=10"}
        if req.method != "GET" and req.headers.get("if-none-match") == '"r1"':
            return 412, {"error": "precondition failed"}, {}
        return 200, {"hits": [1, 2]}, headers

    lamina_server.route("/review/search", search)
    clock = ManualClock()
    svc = CacheLayer(ttl=60, clock=clock, methods=("GET", "POST")).wrap(
        ParseLayer().wrap(transport_factory())
    )

    def post() -> Request:
        return Request(
            "POST", lamina_server.url_for("/review/search"), json={"q": "x"}, endpoint="rv"
        )

    await svc(post())
    clock.advance(11)
    again = await svc(post())
    assert again.status_code == 200
    assert again.value == {"hits": [1, 2]}
    assert all("if-none-match" not in h and "if-modified-since" not in h for h in seen)


async def test_a_set_cookie_on_a_304_reaches_its_caller_only(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    origin = VaryingOrigin({"Set-Cookie": "session=for-the-revalidating-caller"})
    lamina_server.route("/review/cookie304", origin)
    clock = ManualClock()
    svc = CacheLayer(ttl=60, clock=clock).wrap(ParseLayer().wrap(transport_factory()))
    await svc(get(lamina_server, "/review/cookie304"))
    clock.advance(11)
    revalidated = await svc(get(lamina_server, "/review/cookie304"))
    assert origin.answers == [200, 304]
    assert "set-cookie" in revalidated.headers  # its own 304's field
    other = await svc(get(lamina_server, "/review/cookie304"))
    assert other.from_cache
    assert origin.answers == [200, 304]
    assert "set-cookie" not in other.headers


async def test_a_failed_call_the_cache_let_through_keeps_its_error_as_the_note(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    """A CacheLayer in layers= sees every endpoint: a POST it never caches, when it fails,
    is reported by its error (the CLI's note is ``reason or error``), not 'not cached'."""
    from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
    from lamina.cli.render import error_note

    lamina_server.route("/review/boom", lambda req: (500, {"error": "kaput"}, {}))
    endpoints = [
        APIEndpoint(
            name="create", url=lamina_server.url_for("/review/boom"), method="POST", retry_count=0
        )
    ]
    config = APIOrchestrationConfig(endpoints=endpoints)

    def layers(endpoint: APIEndpoint, config: APIOrchestrationConfig) -> list[Any]:
        return [CacheLayer(ttl=60), *APIOrchestrator.default_layers(endpoint, config)]

    async with APIOrchestrator(config, layers=layers, transport=transport_factory()) as orch:
        report = await orch.run()
    create = report.endpoints["create"]
    assert create.outcome == "failed"
    assert create.reason is None
    assert (create.reason or error_note(create)).startswith("HTTPStatusError: HTTP 500")


class NoCacheOrigin:
    """``no-cache`` with RFC 5861 windows and an ETag; ``down`` answers 503."""

    def __init__(self) -> None:
        self.down = False
        self.answers: list[int] = []

    def __call__(self, req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        if self.down:
            self.answers.append(503)
            return 503, {"error": "down"}, {}
        cc = "no-cache, stale-while-revalidate=60, stale-if-error=60"
        if req.headers.get("if-none-match") == '"n1"':
            self.answers.append(304)
            return 304, b"", {"ETag": '"n1"', "Cache-Control": cc}
        self.answers.append(200)
        return 200, {"n": 1}, {"ETag": '"n1"', "Cache-Control": cc}


async def test_no_cache_is_never_served_without_validation(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    """RFC 9111 §4.2.4 and §5.2.2.4: ``no-cache`` forbids serving a stored response without
    validating it, so stale-while-revalidate and stale-if-error do not apply to it."""
    origin = NoCacheOrigin()
    lamina_server.route("/review/nocache", origin)
    clock = ManualClock()
    layer = CacheLayer(ttl=60, clock=clock, stale_if_error=60)
    svc = layer.wrap(ParseLayer().wrap(transport_factory()))
    await svc(get(lamina_server, "/review/nocache"))
    clock.advance(1)
    again = await svc(get(lamina_server, "/review/nocache"))
    await layer.drain()
    assert origin.answers == [200, 304]  # validated before use, in the caller's call
    assert not again.stale
    origin.down = True
    clock.advance(1)
    with pytest.raises(HTTPStatusError):
        await svc(get(lamina_server, "/review/nocache"))


@pytest.mark.parametrize("parse", [True, False], ids=["parse", "bare"])
async def test_a_304_naming_another_representation_does_not_renew_the_entry(
    lamina_server: LocalServer, transport_factory: Any, parse: bool
) -> None:
    """RFC 9111 §4.3.4: a 304 whose strong validator matches no stored response must not
    update it: the cache asks again without validators and stores what it gets."""
    state = {"version": 1}

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        version = state["version"]
        headers = {"ETag": f'"v{version}"', "Cache-Control": "max-age=10"}
        if "if-none-match" in req.headers:  # a careless server: 304 to any conditional
            return 304, b"", headers
        return 200, {"version": version}, headers

    lamina_server.route("/review/etag", origin)
    clock = ManualClock()
    inner = transport_factory()
    svc = CacheLayer(ttl=60, clock=clock).wrap(ParseLayer().wrap(inner) if parse else inner)
    await svc(get(lamina_server, "/review/etag"))
    state["version"] = 2
    clock.advance(11)
    again = await svc(get(lamina_server, "/review/etag"))
    assert again.content == b'{"version": 2}'
    assert again.headers["etag"] == '"v2"'
    sent = lamina_server.requests("/review/etag")
    assert [r.headers.get("if-none-match") for r in sent] == [None, '"v1"', None]
    clock.advance(5)
    hit = await svc(get(lamina_server, "/review/etag"))
    assert hit.from_cache
    assert hit.content == b'{"version": 2}'


async def test_stale_while_revalidate_refreshes_every_variant(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    """Two variants (Vary: Accept-Language) stale at once: each gets its background refresh,
    one does not stand in for the other's."""
    versions = {"en": 1, "fr": 1}

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        lang = req.headers.get("accept-language", "en")
        headers = {
            "Cache-Control": "max-age=10, stale-while-revalidate=60",
            "Vary": "Accept-Language",
        }
        return 200, {"lang": lang, "version": versions[lang]}, headers

    lamina_server.route("/review/swr-vary", origin)
    clock = ManualClock()
    layer = CacheLayer(ttl=60, clock=clock)
    svc = layer.wrap(ParseLayer().wrap(transport_factory()))

    def call(lang: str) -> Any:
        return svc(get(lamina_server, "/review/swr-vary", **{"Accept-Language": lang}))

    await call("en")
    await call("fr")
    versions.update(en=2, fr=2)
    clock.advance(11)
    assert (await call("en")).stale
    assert (await call("fr")).stale
    await layer.drain()
    en, fr = await call("en"), await call("fr")
    assert (en.stale, en.value) == (False, {"lang": "en", "version": 2})
    assert (fr.stale, fr.value) == (False, {"lang": "fr", "version": 2})


async def test_a_background_refresh_is_not_bound_by_the_callers_timeout(
    lamina_server: LocalServer, transport_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The refresh runs in a context of its own: a TimeoutLayer around the cache gave the
    caller's attempt expiry to the refresh's request (pyreqwest cut it short).

    No wall-clock bound decides the outcome: the origin holds the refresh until the loop's
    clock is past the caller's attempt expiry, then answers; the stale answer itself is
    served without a suspension point (the timer cannot fire), and the calls that must
    reach the origin go through a stack without the timeout (it once flaked: a 50 ms
    timeout on them under parallel load)."""
    import threading

    from lamina.layers.timeout import TimeoutLayer

    path = "/review/slow-refresh"
    state = {"version": 1}
    refresh_arrived, release = threading.Event(), threading.Event()

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        if state["version"] == 2:  # the background refresh: held until released
            refresh_arrived.set()
            release.wait(10)
        cc = "max-age=10, stale-while-revalidate=60"
        return 200, {"version": state["version"]}, {"Cache-Control": cc}

    lamina_server.route(path, origin)
    clock = ManualClock()
    cache = CacheLayer(ttl=60, clock=clock)
    transport = transport_factory()
    plain = cache.wrap(ParseLayer().wrap(transport))
    timeout = 0.05
    timed = TimeoutLayer(timeout).wrap(cache.wrap(ParseLayer().wrap(transport)))
    await plain(get(lamina_server, path))
    state["version"] = 2
    clock.advance(11)
    loop = asyncio.get_running_loop()
    stale = await timed(get(lamina_server, path))
    # the caller's attempt expiry, plus the grace pyreqwest adds to it, is before this
    expired_by = loop.time() + timeout + 0.1
    assert (stale.stale, stale.value) == (True, {"version": 1})
    assert await asyncio.to_thread(refresh_arrived.wait, 10)
    await asyncio.sleep(max(0.0, expired_by - loop.time()))  # the refresh is held meanwhile
    release.set()
    await cache.drain()
    assert "background cache refresh" not in caplog.text
    fresh = await plain(get(lamina_server, path))
    assert (fresh.from_cache, fresh.stale, fresh.value) == (True, False, {"version": 2})
    assert lamina_server.hits(path) == 2  # the first call and the refresh


async def test_a_304_for_an_entry_evicted_meanwhile_serves_and_stores_it_again(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    clock = ManualClock()
    layer = CacheLayer(ttl=60, clock=clock)
    store = layer.store
    assert isinstance(store, MemoryCacheStore)

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        headers = {"ETag": '"e1"', "Cache-Control": "max-age=10"}
        if req.headers.get("if-none-match") == '"e1"':
            store.clear_nowait()  # evicted while the conditional request is out
            return 304, b"", headers
        return 200, {"e": 1}, headers

    lamina_server.route("/review/evict", origin)
    svc = layer.wrap(ParseLayer().wrap(transport_factory()))
    await svc(get(lamina_server, "/review/evict"))
    clock.advance(11)
    revalidated = await svc(get(lamina_server, "/review/evict"))
    assert (revalidated.from_cache, revalidated.value) == (True, {"e": 1})
    assert len(store) == 1  # stored again from the 304
    again = await svc(get(lamina_server, "/review/evict"))
    assert (again.from_cache, again.value) == (True, {"e": 1})
    assert len(lamina_server.requests("/review/evict")) == 2  # the 200 and the 304
