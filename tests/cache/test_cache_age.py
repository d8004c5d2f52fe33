"""Age values an RFC 9111 reader sends (§1.2.2, §5.1): a list, a huge number, junk; and
huge Cache-Control lifetimes. Real loopback server on every transport, virtual time."""

from __future__ import annotations

from typing import Any

import pytest

from lamina import Request, Service
from lamina.layers.cache import CacheLayer
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, ManualClock, RecordedRequest

pytestmark = pytest.mark.timeout(30)

HUGE_400 = "9" * 400  # more than a float holds
HUGE_5000 = "9" * 5000  # more digits than int() converts by default (4300)


def serve(server: LocalServer, path: str, headers: dict[str, str]) -> None:
    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        return 200, {"ok": True}, headers

    server.route(path, origin)


def stack(transport: Service, clock: ManualClock) -> Service:
    return CacheLayer(ttl=300, clock=clock).wrap(ParseLayer().wrap(transport))


def get(server: LocalServer, path: str) -> Request:
    return Request("GET", server.url_for(path), endpoint="age")


@pytest.mark.parametrize("age", [HUGE_400, HUGE_5000], ids=["400-digits", "5000-digits"])
async def test_a_huge_age_makes_the_response_stale_and_never_breaks_a_call(
    lamina_server: LocalServer, transport_factory: Any, age: str
) -> None:
    """RFC 9111 §1.2.2: a delta-seconds too large to hold is 2147483648. A response that old
    is stale at once; without a validator it is not stored. Was: OverflowError (400 digits,
    the call failed) or stored as Age 0 and every hit raised ValueError (5000 digits)."""
    path = f"/age/huge-{len(age)}"
    serve(lamina_server, path, {"Cache-Control": "max-age=60", "Age": age})
    svc = stack(transport_factory(), ManualClock())
    for _ in range(2):
        response = await svc(get(lamina_server, path))
        assert (response.status_code, response.from_cache) == (200, False)
    assert lamina_server.hits(path) == 2


async def test_a_huge_age_on_a_validated_response_is_revalidated_not_served(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    """Kept to be revalidated (it has an ETag), but stale at once: the next call asks the
    origin. Was: 5000 digits read as Age 0, fresh for 60 s, and the hit raised ValueError."""
    path = "/age/huge-etag"
    seen: list[str | None] = []

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        seen.append(req.headers.get("if-none-match"))
        return 200, {"ok": True}, {"Cache-Control": "max-age=60", "Age": HUGE_5000, "ETag": '"e"'}

    lamina_server.route(path, origin)
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server, path))
    clock.advance(3)
    again = await svc(get(lamina_server, path))
    assert (again.status_code, again.from_cache) == (200, False)
    assert again.headers["age"] == HUGE_5000  # the origin's own answer, passed on
    assert seen == [None, '"e"']


@pytest.mark.parametrize("directive", ["max-age", "s-maxage"])
async def test_a_huge_lifetime_is_the_greatest_one_not_an_error(
    lamina_server: LocalServer, transport_factory: Any, directive: str
) -> None:
    """RFC 9111 §1.2.2: a lifetime too large to hold is 2147483648 s: fresh for the layer's
    ttl. Was: OverflowError (400 digits: the call failed) or 'lifetime 0' (5000 digits:
    never stored)."""
    for digits in (HUGE_400, HUGE_5000):
        path = f"/age/lifetime-{directive}-{len(digits)}"
        serve(lamina_server, path, {"Cache-Control": f"{directive}={digits}"})
        clock = ManualClock()
        svc = stack(transport_factory(), clock)
        first = await svc(get(lamina_server, path))
        assert (first.status_code, first.from_cache) == (200, False)
        clock.advance(299)
        hit = await svc(get(lamina_server, path))
        assert (hit.from_cache, hit.headers["age"]) == (True, "299")
        assert lamina_server.hits(path) == 1


async def test_a_huge_stale_if_error_is_not_an_error(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    path = "/age/huge-sie"
    serve(lamina_server, path, {"Cache-Control": f"max-age=10, stale-if-error={HUGE_400}"})
    svc = stack(transport_factory(), ManualClock())
    first = await svc(get(lamina_server, path))
    assert (first.status_code, first.from_cache) == (200, False)
    assert (await svc(get(lamina_server, path))).from_cache


@pytest.mark.parametrize("age", ["5, 6", "5,6", " 5 , junk"])
async def test_a_list_age_counts_its_first_member(
    lamina_server: LocalServer, transport_factory: Any, age: str
) -> None:
    """RFC 9111 §5.1: a cache seeing a list-based Age uses its first member. Was: the list
    was junk (Age 0), so the entry stayed fresh 5 s too long and its hits said Age 3."""
    path = f"/age/list-{age.replace(' ', '').replace(',', '-')}"
    serve(lamina_server, path, {"Cache-Control": "max-age=10", "Age": age})
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server, path))
    clock.advance(3)
    hit = await svc(get(lamina_server, path))
    assert (hit.from_cache, hit.headers.get_list("age")) == (True, ["8"])
    clock.advance(3)  # 5 + 6 = 11 s old: past max-age=10
    assert not (await svc(get(lamina_server, path))).from_cache
    assert lamina_server.hits(path) == 2


@pytest.mark.parametrize("age", ["-5", "abc", "5.5", "+5", "5e1", "0x5"])
async def test_a_junk_age_is_ignored(
    lamina_server: LocalServer, transport_factory: Any, age: str
) -> None:
    """RFC 9111 §5.1: an Age that is not a non-negative integer is ignored: the entry's
    age counts from when it was stored."""
    path = f"/age/junk-{abs(hash(age))}"
    serve(lamina_server, path, {"Cache-Control": "max-age=10", "Age": age})
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server, path))
    clock.advance(9)
    hit = await svc(get(lamina_server, path))
    assert (hit.from_cache, hit.headers.get_list("age")) == (True, ["9"])


@pytest.mark.parametrize(
    ("cc", "lifetime"),
    [("max-age=10, max-age=600", 10), ("s-maxage=5, max-age=600, s-maxage=600", 5)],
)
async def test_a_repeated_lifetime_directive_counts_its_first_occurrence(
    lamina_server: LocalServer, transport_factory: Any, cc: str, lifetime: int
) -> None:
    """RFC 9111 §4.2.1: with more than one value for a directive, the first is used (or
    the response is stale). Was: the last one, 600 s here."""
    path = f"/age/repeated-{lifetime}"
    serve(lamina_server, path, {"Cache-Control": cc})
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server, path))
    clock.advance(lifetime - 1)
    assert (await svc(get(lamina_server, path))).from_cache
    clock.advance(2)  # past the first one
    assert not (await svc(get(lamina_server, path))).from_cache
    assert lamina_server.hits(path) == 2


async def test_two_age_lines_make_one_age_on_a_hit(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    """Two Age lines (a CDN's and another hop's): the first counts, and a hit carries one
    Age of its own, never the upstream's beside it."""
    path = "/age/two-lines"
    serve(lamina_server, path, {"Cache-Control": "max-age=10", "Age": "5", "age": "6"})
    clock = ManualClock()
    svc = stack(transport_factory(), clock)
    first = await svc(get(lamina_server, path))
    assert first.headers.get_list("age") == ["5", "6"]  # the origin's answer, as sent
    clock.advance(3)
    hit = await svc(get(lamina_server, path))
    assert (hit.from_cache, hit.headers.get_list("age")) == (True, ["8"])
    clock.advance(2)  # 5 + 5 = 10 s old: past max-age=10
    assert not (await svc(get(lamina_server, path))).from_cache


class Validating:
    """max-age=60 with a stale window, arriving 80 s old (a CDN's Age): 20 s stale
    already. Answers 304 to its ETag, or 503 once ``down``."""

    def __init__(self, window: str) -> None:
        self.cc = f"max-age=60, {window}=30"
        self.down = False
        self.answers: list[int] = []

    def __call__(self, req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        headers = {"Cache-Control": self.cc, "Age": "80", "ETag": '"e"'}
        if self.down:
            self.answers.append(503)
            return 503, {"error": "down"}, {}
        if req.headers.get("if-none-match") == '"e"':
            self.answers.append(304)
            return 304, b"", {"Cache-Control": self.cc, "ETag": '"e"'}
        self.answers.append(200)
        return 200, {"ok": True}, headers


@pytest.mark.parametrize(("later", "served_stale"), [(5, True), (15, False)])
async def test_stale_while_revalidate_counts_from_when_the_response_went_stale(
    lamina_server: LocalServer, transport_factory: Any, later: int, served_stale: bool
) -> None:
    """RFC 5861 §3: stale for up to N seconds. 20 s stale on arrival, then 5 s more is 25 s
    (within 30: served stale); 15 s more is 35 s (revalidated first). Was: the window ran
    from arrival, served stale for 30 s more."""
    origin = Validating("stale-while-revalidate")
    path = f"/age/swr-overdue-{later}"
    lamina_server.route(path, origin)
    clock = ManualClock()
    layer = CacheLayer(ttl=300, clock=clock)
    svc = layer.wrap(ParseLayer().wrap(transport_factory()))
    await svc(get(lamina_server, path))
    clock.advance(later)
    answer = await svc(get(lamina_server, path))
    await layer.drain()
    assert (answer.from_cache, answer.stale) == (True, served_stale)
    assert origin.answers == [200, 304]  # the background refresh, or the revalidation


@pytest.mark.parametrize(("later", "served_stale"), [(5, True), (15, False)])
@pytest.mark.parametrize("own", [False, True], ids=["response", "layer"])
async def test_stale_if_error_counts_from_when_the_response_went_stale(
    lamina_server: LocalServer,
    transport_factory: Any,
    later: int,
    served_stale: bool,
    own: bool,
) -> None:
    """The response's stale-if-error=30, or the layer's stale_if_error=30: 20 s stale on
    arrival, so 5 s later it stands in for a 503, 15 s later (35 s stale) it does not."""
    from lamina import HTTPStatusError

    origin = Validating("s-x" if own else "stale-if-error")
    path = f"/age/sie-overdue-{later}-{own}"
    lamina_server.route(path, origin)
    clock = ManualClock()
    layer = CacheLayer(ttl=300, clock=clock, stale_if_error=30 if own else None)
    svc = layer.wrap(ParseLayer().wrap(transport_factory()))
    await svc(get(lamina_server, path))
    origin.down = True
    clock.advance(later)
    if served_stale:
        answer = await svc(get(lamina_server, path))
        assert (answer.from_cache, answer.stale, answer.value) == (True, True, {"ok": True})
    else:
        with pytest.raises(HTTPStatusError):
            await svc(get(lamina_server, path))
    assert origin.answers == [200, 503]


@pytest.mark.parametrize(("start", "later"), [(0.4, 1), (0.3, 2), (0.2, 8), (1000.1, 7)])
async def test_a_hits_age_is_whole_seconds_without_float_error(
    lamina_server: LocalServer, transport_factory: Any, start: float, later: int
) -> None:
    """Stored at 0.4 on the clock, served 1 s later: Age 1. Was 0 (1.4 - 0.4 is
    0.9999999999999999 in floating point, and int() floors it)."""
    path = f"/age/float-{start}-{later}"
    serve(lamina_server, path, {"Cache-Control": "max-age=60"})
    clock = ManualClock(start)
    svc = stack(transport_factory(), clock)
    await svc(get(lamina_server, path))
    clock.advance(later)
    hit = await svc(get(lamina_server, path))
    assert (hit.from_cache, hit.headers.get_list("age")) == (True, [str(later)])
