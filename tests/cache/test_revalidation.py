"""Revalidation (RFC 9111 §4.3) and RFC 5861's stale-while-revalidate / stale-if-error,
against the real loopback server on every transport, in virtual time (in memory)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import pytest

from lamina import HTTPStatusError, Request, Response, Service
from lamina._events import listen
from lamina.layers.cache import CacheLayer
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, ManualClock, RecordedRequest

pytestmark = pytest.mark.timeout(30)

EPOCH = 1_700_000_000


class Origin:
    """One resource with validators that honours conditional requests.

    ``version`` changes the representation (and its ETag / Last-Modified); ``cc`` is the
    Cache-Control of every answer (``not_modified_cc`` overrides it on 304s); ``down``
    answers 503."""

    def __init__(self, cc: str = "max-age=10", *, etag: bool = True, modified: bool = True):
        self.version = 1
        self.cc = cc
        self.etag = etag
        self.modified = modified
        self.down = False
        self.not_modified_cc: str | None = None
        self.answers: list[int] = []

    def _validators(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["ETag"] = f'"v{self.version}"'
        if self.modified:
            headers["Last-Modified"] = formatdate(EPOCH + 100 * self.version, usegmt=True)
        return headers

    def _unchanged(self, req: RecordedRequest) -> bool:
        match = req.headers.get("if-none-match")
        if match is not None:
            return self.etag and match == f'"v{self.version}"'
        since = req.headers.get("if-modified-since")
        if since is not None and self.modified:
            return parsedate_to_datetime(since).timestamp() >= EPOCH + 100 * self.version
        return False

    def __call__(self, req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        if self.down:
            self.answers.append(503)
            return 503, {"error": "down"}, {}
        headers = {"Cache-Control": self.cc, **self._validators()}
        if self._unchanged(req):
            self.answers.append(304)
            if self.not_modified_cc is not None:
                headers["Cache-Control"] = self.not_modified_cc
            return 304, b"", headers
        self.answers.append(200)
        return 200, {"version": self.version, "items": [1, 2, 3]}, headers


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, attrs: Mapping[str, Any]) -> None:
        self.seen.append((name, dict(attrs)))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [attrs for seen, attrs in self.seen if seen == name]


@pytest.fixture
def origin(lamina_server: LocalServer) -> Origin:
    found = Origin()
    lamina_server.route("/rv/", found)
    return found


def stack(transport: Any, clock: ManualClock, *, parse: bool = True, **options: Any) -> Service:
    inner = ParseLayer().wrap(transport) if parse else transport
    options.setdefault("ttl", 300)
    return CacheLayer(clock=clock, **options).wrap(inner)


def get(server: LocalServer, events: Events | None = None, path: str = "/rv/item") -> Request:
    request = Request("GET", server.url_for(path), endpoint="rv")
    return request if events is None else listen(request, events)


def sent(server: LocalServer, path: str = "/rv/item") -> list[RecordedRequest]:
    return server.requests(path)


@pytest.mark.parametrize("parse", [True, False], ids=["parse", "bare"])
async def test_a_stale_entry_is_revalidated_with_its_etag_and_a_304_serves_it(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any, parse: bool
) -> None:
    clock = ManualClock()
    svc = stack(transport_factory(), clock, parse=parse)
    first = await svc(get(lamina_server))
    clock.advance(11)  # max-age=10: stale now
    events = Events()
    again = await svc(get(lamina_server, events))
    assert origin.answers == [200, 304]
    conditional = sent(lamina_server)[1].headers
    assert conditional["if-none-match"] == '"v1"'
    assert "if-modified-since" in conditional
    assert "if-none-match" not in sent(lamina_server)[0].headers
    assert again.status_code == 200
    assert again.content == first.content
    assert again.from_cache
    assert not again.stale
    if parse:
        assert again.value == {"version": 1, "items": [1, 2, 3]}
    assert again.headers["content-type"] == "application/json"  # not the 304's
    assert events.named("cache.miss") == [{"reason": "expired", "revalidate": True}]
    assert [e["status"] for e in events.named("cache.revalidated")] == [304]
    # The 304 renewed its freshness: the next call is a plain hit.
    clock.advance(5)
    assert (await svc(get(lamina_server))).from_cache
    assert len(sent(lamina_server)) == 2


async def test_last_modified_alone_revalidates_with_if_modified_since(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    origin.etag = False
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server))
    clock.advance(11)
    again = await svc(get(lamina_server))
    headers = sent(lamina_server)[1].headers
    assert "if-none-match" not in headers
    assert headers["if-modified-since"] == formatdate(EPOCH + 100, usegmt=True)
    assert origin.answers == [200, 304]
    assert again.value["version"] == 1


async def test_a_changed_resource_replaces_the_entry(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server))
    origin.version = 2
    clock.advance(11)
    changed = await svc(get(lamina_server))
    assert origin.answers == [200, 200]
    assert changed.value["version"] == 2
    assert not changed.from_cache
    assert (await svc(get(lamina_server))).value["version"] == 2  # stored: a hit
    assert len(sent(lamina_server)) == 2


async def test_the_304s_headers_set_the_new_freshness(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server))
    origin.not_modified_cc = "max-age=100"
    clock.advance(11)
    await svc(get(lamina_server))
    clock.advance(90)  # fresh for 100 s from the 304, not 10
    hit = await svc(get(lamina_server))
    assert hit.from_cache
    assert hit.headers["cache-control"] == "max-age=100"
    assert origin.answers == [200, 304]
    clock.advance(20)
    await svc(get(lamina_server))
    assert origin.answers == [200, 304, 304]


async def test_no_cache_with_a_validator_is_stored_and_revalidated_every_time(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    origin.cc = "no-cache"
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    for _ in range(3):
        response = await svc(get(lamina_server))
        assert response.value["version"] == 1
    assert origin.answers == [200, 304, 304]
    assert all("if-none-match" in r.headers for r in sent(lamina_server)[1:])


async def test_revalidate_false_refetches_in_full(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    clock = ManualClock()
    svc = stack(transport_factory(), clock, revalidate=False)
    await svc(get(lamina_server))
    clock.advance(11)
    await svc(get(lamina_server))
    assert origin.answers == [200, 200]
    assert "if-none-match" not in sent(lamina_server)[1].headers


async def test_a_callers_own_conditional_request_gets_its_own_304(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    clock = ManualClock()
    svc = stack(transport_factory(), clock, parse=False)
    await svc(get(lamina_server))
    clock.advance(11)
    mine = Request(
        "GET", lamina_server.url_for("/rv/item"), endpoint="rv", headers={"If-None-Match": '"v1"'}
    )
    answer = await svc(mine)
    assert answer.status_code == 304  # the caller asked, the caller gets the 304
    assert not answer.from_cache


async def test_stale_while_revalidate_serves_at_once_and_refreshes_once(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    origin.cc = "max-age=10, stale-while-revalidate=60"
    clock = ManualClock()
    layer = CacheLayer(ttl=300, clock=clock)
    svc = layer.wrap(ParseLayer().wrap(transport_factory()))
    await svc(get(lamina_server))
    origin.version = 2
    clock.advance(30)  # stale, inside the 60 s window
    events = [Events() for _ in range(25)]
    answers = await asyncio.gather(*(svc(get(lamina_server, e)) for e in events))
    assert all(a.stale and a.from_cache and a.value["version"] == 1 for a in answers)
    started = [e.named("cache.stale")[0]["refreshing"] for e in events]
    assert started.count(True) == 1  # one background refresh for 25 callers
    assert all(e.named("cache.stale")[0]["reason"] == "stale-while-revalidate" for e in events)
    await layer.drain()
    assert origin.answers == [200, 200]  # one refresh, in the background
    fresh = await svc(get(lamina_server))
    assert fresh.from_cache
    assert not fresh.stale
    assert fresh.value["version"] == 2


async def test_stale_while_revalidate_refresh_uses_the_validators(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    origin.cc = "max-age=10, stale-while-revalidate=60"
    clock = ManualClock()
    layer = CacheLayer(ttl=300, clock=clock)
    svc = layer.wrap(ParseLayer().wrap(transport_factory()))
    await svc(get(lamina_server))
    clock.advance(15)
    assert (await svc(get(lamina_server))).stale
    await layer.drain()
    assert origin.answers == [200, 304]
    clock.advance(5)  # the 304 renewed it: fresh until 25 s after it
    assert not (await svc(get(lamina_server))).stale
    assert origin.answers == [200, 304]


async def test_past_the_stale_while_revalidate_window_the_call_waits(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    origin.cc = "max-age=10, stale-while-revalidate=5"
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server))
    origin.version = 2
    clock.advance(20)  # past 10 + 5
    answer = await svc(get(lamina_server))
    assert not answer.stale
    assert answer.value["version"] == 2


@pytest.mark.parametrize("parse", [True, False], ids=["parse", "bare"])
async def test_stale_if_error_from_the_response_serves_the_entry_on_5xx(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any, parse: bool
) -> None:
    origin.cc = "max-age=10, stale-if-error=60"
    clock = ManualClock()
    svc = stack(transport_factory(), clock, parse=parse)  # no stale_if_error= on the layer
    await svc(get(lamina_server))
    origin.down = True
    clock.advance(30)
    events = Events()
    stale = await svc(get(lamina_server, events))
    assert stale.stale
    assert stale.status_code == 200
    assert stale.content == b'{"version": 1, "items": [1, 2, 3]}'
    assert events.named("cache.stale")[0]["error"] in ("HTTP 503", "HTTPStatusError")
    clock.advance(60)  # past 10 + 60
    if parse:
        with pytest.raises(HTTPStatusError):
            await svc(get(lamina_server))
    else:
        assert (await svc(get(lamina_server))).status_code == 503


async def test_without_stale_if_error_a_5xx_is_the_answer(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    clock = ManualClock()
    svc = stack(transport_factory(), clock, parse=False)
    await svc(get(lamina_server))
    origin.down = True
    clock.advance(30)
    answer: Response = await svc(get(lamina_server))
    assert answer.status_code == 503


async def test_revalidation_is_traced_on_the_call_span_and_counted(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from lamina import ServiceBuilder
    from lamina.layers.metrics import MetricsLayer
    from lamina.layers.tracing import CallTracingLayer
    from lamina.metrics import IOMetrics

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = IOMetrics()
    clock = ManualClock()
    origin.cc = "max-age=10, stale-while-revalidate=30"
    layer = CacheLayer(ttl=300, clock=clock)
    svc = ServiceBuilder(
        [CallTracingLayer(tracer_provider=provider), MetricsLayer(metrics), layer, ParseLayer()]
    ).service(transport_factory())
    await svc(get(lamina_server))  # miss, stored
    clock.advance(20)
    assert (await svc(get(lamina_server))).stale  # served stale, refreshed in the background
    await layer.drain()
    clock.advance(50)  # past 10 + 30: the call itself revalidates
    again = await svc(get(lamina_server))
    assert again.from_cache
    assert not again.stale
    assert origin.answers == [200, 304, 304]
    spans = exporter.get_finished_spans()
    calls = sorted((s for s in spans if s.name == "lamina rv"), key=lambda s: s.start_time or 0)
    assert len(calls) == 3
    events = [[e.name for e in span.events] for span in calls]
    assert "cache.stale" in events[1]
    assert "cache.revalidated" in events[2]
    counts = metrics.endpoint("rv").events
    assert counts["cache_revalidations"] == 1  # the background refresh reports to no call
    assert counts["cache_stale"] == 1
    assert counts["cache_misses"] == 2
    provider.shutdown()


async def test_a_flow_with_cache_ttl_revalidates_and_serves_stale(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    """From a flow file's mapping: cache_ttl is all it takes; the report calls the 304
    answer ``cached`` and a stale-while-revalidate answer ``stale``."""
    from lamina.flows import build_orchestrator, config_from_dict

    config = config_from_dict(
        {
            "name": "articles",
            "cache_ttl": 300,
            "endpoints": [{"name": "rv", "url": lamina_server.url_for("/rv/item")}],
        }
    )
    clock = ManualClock()
    async with build_orchestrator(config, transport=transport_factory(), clock=clock) as run:
        first = await run.run()
        clock.advance(11)
        revalidated = await run.run()
        origin.cc = "max-age=10, stale-while-revalidate=60"
        clock.advance(11)
        await run.run()  # a 304 that brings the new directive
        clock.advance(11)
        stale = await run.run()
        for _ in range(200):  # the background refresh reaches the real server
            if len(origin.answers) == 4:
                break
            await asyncio.sleep(0.01)
    assert first.endpoints["rv"].outcome == "ok"
    assert revalidated.endpoints["rv"].outcome == "cached"
    assert revalidated.value["rv"] == {"version": 1, "items": [1, 2, 3]}
    assert stale.endpoints["rv"].outcome == "stale"
    assert origin.answers == [200, 304, 304, 304]


# -- a Last-Modified that is not an HTTP-date is no validator ---------------------------


class JunkModified:
    """Answers 200 with ``Last-Modified: <modified>`` (and an ETag if given); records the
    conditional headers of each request."""

    def __init__(self, modified: str, etag: str | None = None) -> None:
        self.modified = modified
        self.etag = etag
        self.conditions: list[tuple[str | None, str | None]] = []

    def __call__(self, req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        self.conditions.append(
            (req.headers.get("if-none-match"), req.headers.get("if-modified-since"))
        )
        headers = {"Cache-Control": "max-age=10", "Last-Modified": self.modified}
        if self.etag is not None:
            headers["ETag"] = self.etag
            if req.headers.get("if-none-match") == self.etag:
                return 304, b"", headers
        return 200, {"ok": True}, headers


@pytest.mark.parametrize("junk", ["garbage", "yesterday at noon", "Mon, 99 Foo 2024 25:61:00 GMT"])
async def test_an_unparseable_last_modified_is_never_sent_as_if_modified_since(
    lamina_server: LocalServer, transport_factory: Any, junk: str
) -> None:
    handler = JunkModified(junk)
    lamina_server.route("/junk-lm/", handler)
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    events = Events()
    await svc(get(lamina_server, path="/junk-lm/a"))
    clock.advance(11)  # stale: with no validator it is fetched again in full
    again = await svc(get(lamina_server, events, path="/junk-lm/a"))
    assert handler.conditions == [(None, None), (None, None)]
    assert not again.from_cache
    assert events.named("cache.miss") == [{"reason": "absent"}]  # not kept to revalidate


async def test_an_etag_still_revalidates_beside_a_junk_last_modified(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    handler = JunkModified("garbage", etag='"e1"')
    lamina_server.route("/junk-lm-etag/", handler)
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server, path="/junk-lm-etag/a"))
    clock.advance(11)
    again = await svc(get(lamina_server, path="/junk-lm-etag/a"))
    assert handler.conditions == [(None, None), ('"e1"', None)]
    assert again.from_cache
    assert again.value == {"ok": True}


async def test_a_valid_last_modified_in_an_obsolete_date_format_still_revalidates(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    # RFC 9110 §5.6.7: recipients accept the RFC 850 and asctime forms too
    modified = "Sunday, 06-Nov-94 08:49:37 GMT"
    handler = JunkModified(modified)
    lamina_server.route("/old-lm/", handler)
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server, path="/old-lm/a"))
    clock.advance(11)
    await svc(get(lamina_server, path="/old-lm/a"))
    assert handler.conditions == [(None, None), (None, modified)]


# -- Age (RFC 9111 §5.1, §4.2.3) ----------------------------------------------------------


@pytest.mark.parametrize("parse", [True, False], ids=["parse", "bare"])
async def test_a_hit_carries_its_age_in_whole_seconds(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any, parse: bool
) -> None:
    clock = ManualClock()
    svc = stack(transport_factory(), clock, parse=parse)
    first = await svc(get(lamina_server))
    assert "age" not in first.headers  # the origin's own answer
    assert (await svc(get(lamina_server))).headers["age"] == "0"
    clock.advance(7.9)
    hit = await svc(get(lamina_server))
    assert hit.from_cache
    assert hit.headers.get_list("age") == ["7"]
    assert origin.answers == [200]


async def test_an_age_from_upstream_is_the_entrys_age_when_stored(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    def aged(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        return 200, {"ok": True}, {"Cache-Control": "max-age=300", "Age": "100"}

    lamina_server.route("/aged/", aged)
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    assert (await svc(get(lamina_server, path="/aged/a"))).headers["age"] == "100"
    clock.advance(5)
    hit = await svc(get(lamina_server, path="/aged/a"))
    assert hit.from_cache
    assert hit.headers.get_list("age") == ["105"]  # 100 s old when stored, 5 s since


async def test_a_304_resets_the_age(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server))
    clock.advance(25)  # max-age=10: stale
    revalidated = await svc(get(lamina_server))
    assert origin.answers == [200, 304]
    assert revalidated.from_cache
    # validated by the origin for this very call: no Age (RFC 9111 §5.1)
    assert "age" not in revalidated.headers
    clock.advance(4)
    hit = await svc(get(lamina_server))
    assert hit.headers.get_list("age") == ["4"]  # counted from the 304, not 29


async def test_a_stale_answer_carries_its_age(
    lamina_server: LocalServer, origin: Origin, transport_factory: Any
) -> None:
    origin.cc = "max-age=10, stale-if-error=60, stale-while-revalidate=20"
    clock = ManualClock()
    layer = CacheLayer(ttl=300, clock=clock)
    svc = layer.wrap(ParseLayer().wrap(transport_factory()))
    await svc(get(lamina_server))
    clock.advance(15)  # stale-while-revalidate
    swr = await svc(get(lamina_server))
    assert swr.stale
    assert swr.headers["age"] == "15"
    await layer.drain()  # the refresh (a 304) stored it again at 15 s
    origin.down = True
    clock.advance(40)  # stale again, past the swr window: the 503 serves it stale
    stale = await svc(get(lamina_server))
    assert stale.stale
    assert stale.headers["age"] == "40"
