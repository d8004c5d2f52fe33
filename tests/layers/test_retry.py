import asyncio
import dataclasses
import math
import random
import socket
import time
import uuid
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any

import pytest

from lamina import (
    CircuitOpenError,
    ConcurrencyLimitExceeded,
    ConfigError,
    ConnectError,
    HTTPStatusError,
    HttpxTransport,
    ParseError,
    RateLimitExceeded,
    Request,
    Response,
    Service,
    ServiceBuilder,
    TimeoutError,
    TransportError,
    service_fn,
)
from lamina._events import listen
from lamina.layers.parse import ParseLayer
from lamina.layers.retry import (
    RetryBudget,
    RetryLayer,
    RetryOutcome,
    RetryPolicy,
    StatusRetryPolicy,
    is_idempotent,
    new_idempotency_key,
    parse_retry_after,
)
from lamina.testing import LocalServer, ManualClock

URL = "http://api.test/items"

Outcome = int | Response | type[Exception] | Exception


def scripted(*outcomes: Outcome) -> tuple[Service, list[Request]]:
    """An inner service answering each attempt with the next outcome (the last one repeats)."""
    calls: list[Request] = []

    async def handler(request: Request) -> Response:
        calls.append(request)
        item = outcomes[min(len(calls), len(outcomes)) - 1]
        if isinstance(item, int):
            return Response(item, request=request)
        if isinstance(item, Response):
            return item.replace(request=request)
        if isinstance(item, type):
            raise item("boom", request=request)  # type: ignore[call-arg]
        raise item

    return service_fn(handler), calls


def retry(inner: Service, **options: Any) -> Service:
    options.setdefault("clock", ManualClock(autojump=True))
    return RetryLayer(**options).wrap(inner)


# -- delays, in virtual time ---------------------------------------------------------


async def test_exponential_steps_without_jitter() -> None:
    clock = ManualClock(autojump=True)
    inner, calls = scripted(503)
    svc = retry(inner, attempts=5, backoff=0.5, jitter=False, clock=clock)
    response = await svc(Request("GET", URL))
    assert response.status_code == 503
    assert response.attempts == 5
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert [r.attempt for r in calls] == [1, 2, 3, 4, 5]


async def test_max_delay_caps_each_step() -> None:
    clock = ManualClock(autojump=True)
    inner, _ = scripted(500)
    await retry(inner, retries=4, backoff=1, jitter=False, max_delay=3, clock=clock)(
        Request("GET", URL)
    )
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize("seed", [1, 7, 42])
async def test_jitter_draws_between_half_and_the_whole_step(seed: int) -> None:
    clock = ManualClock(autojump=True)
    inner, _ = scripted(503)
    svc = retry(inner, attempts=7, backoff=1, max_delay=8, random=random.Random(seed), clock=clock)
    await svc(Request("GET", URL))
    caps = [1, 2, 4, 8, 8, 8]
    twin = random.Random(seed)
    assert clock.sleeps == [cap * twin.uniform(0.5, 1.0) for cap in caps]
    assert all(cap / 2 <= s <= cap for s, cap in zip(clock.sleeps, caps, strict=True))
    assert len(set(clock.sleeps)) == len(caps)  # jittered, not fixed steps


async def test_default_is_three_attempts_with_jitter() -> None:
    clock = ManualClock(autojump=True)
    inner, calls = scripted(503)
    response = await retry(inner, clock=clock)(Request("GET", URL))
    assert len(calls) == 3
    assert response.attempts == 3
    assert 0.25 <= clock.sleeps[0] <= 0.5
    assert 0.5 <= clock.sleeps[1] <= 1.0


async def test_success_after_failures() -> None:
    inner, calls = scripted(503, 502, 200)
    response = await retry(inner, jitter=False, backoff=0.1)(Request("GET", URL))
    assert response.status_code == 200
    assert response.attempts == 3
    assert [r.attempt for r in calls] == [1, 2, 3]


async def test_first_attempt_success_is_passed_through() -> None:
    inner, calls = scripted(200)
    request = Request("GET", URL)
    response = await retry(inner)(request)
    assert response.attempts == 1
    assert calls == [request]


# -- Retry-After -----------------------------------------------------------------------


async def test_retry_after_seconds_is_obeyed() -> None:
    clock = ManualClock(autojump=True)
    inner, _ = scripted(Response(429, headers={"Retry-After": "7"}), 200)
    response = await retry(inner, backoff=0.1, clock=clock)(Request("GET", URL))
    assert response.status_code == 200
    assert clock.sleeps == [7.0]


async def test_retry_after_longer_than_max_delay_stops_at_once() -> None:
    clock = ManualClock(autojump=True)
    events: list[tuple[str, Mapping[str, Any]]] = []
    inner, calls = scripted(Response(503, headers={"Retry-After": "120"}), 200)
    request = listen(Request("GET", URL), lambda n, a: events.append((n, a)))
    response = await retry(inner, max_delay=4, clock=clock)(request)
    assert response.status_code == 503  # the last answer, not a 4 s nap and a second ask
    assert response.attempts == 1
    assert clock.sleeps == []
    assert len(calls) == 1
    assert events == [
        ("retry.retry_after_exceeded", {"attempt": 1, "retry_after": 120.0, "limit": "max_delay"})
    ]


async def test_retry_after_equal_to_max_delay_is_obeyed() -> None:
    clock = ManualClock(autojump=True)
    inner, _ = scripted(Response(429, headers={"Retry-After": "4"}), 200)
    response = await retry(inner, max_delay=4, clock=clock)(Request("GET", URL))
    assert response.status_code == 200
    assert clock.sleeps == [4.0]


async def test_parse_outside_raises_with_the_retry_after() -> None:
    clock = ManualClock(autojump=True)
    inner, calls = scripted(Response(429, headers={"Retry-After": "3600"}))
    svc = ParseLayer().wrap(RetryLayer(clock=clock).wrap(inner))
    with pytest.raises(HTTPStatusError) as info:
        await svc(Request("GET", URL))
    assert info.value.retry_after == 3600.0
    assert "Retry-After 3600s" in str(info.value)
    assert info.value.attempts == 1
    assert len(calls) == 1


async def test_http_status_error_raised_inside_with_a_long_retry_after() -> None:
    clock = ManualClock(autojump=True)
    answer = Response(503, headers={"Retry-After": "60"}, request=Request("GET", URL))
    inner, calls = scripted(HTTPStatusError.from_response(answer))
    with pytest.raises(HTTPStatusError) as info:
        await retry(inner, clock=clock)(Request("GET", URL))
    assert info.value.retry_after == 60.0
    assert info.value.attempts == 1
    assert len(calls) == 1
    assert clock.sleeps == []


async def test_a_policy_never_retries_sooner_than_retry_after() -> None:
    class Eager:
        def decide(self, outcome: RetryOutcome) -> float | None:
            return 0.1 if outcome.response and outcome.response.status_code == 429 else None

    clock = ManualClock(autojump=True)
    inner, _ = scripted(Response(429, headers={"Retry-After": "3"}), 200)
    await retry(inner, policy=Eager(), clock=clock)(Request("GET", URL))
    assert clock.sleeps == [3.0]


def test_http_status_error_carries_retry_after() -> None:
    now = 1_700_000_000.0
    request = Request("GET", URL)
    plain = HTTPStatusError.from_response(Response(429, request=request))
    assert plain.retry_after is None
    assert "Retry-After" not in str(plain)
    unreadable = Response(503, headers={"Retry-After": "soon"}, request=request)
    assert HTTPStatusError.from_response(unreadable).retry_after is None
    half = HTTPStatusError.from_response(
        Response(429, headers={"Retry-After": "0.5"}, request=request)
    )
    assert half.retry_after == 0.5
    assert "Retry-After 0.5s" in str(half)
    date = formatdate(now + 90, usegmt=True)
    dated = Response(429, headers={"Retry-After": date}, request=request)
    assert 0 <= (HTTPStatusError.from_response(dated).retry_after or 0) <= 90 + time.time() - now
    assert HTTPStatusError("x", status_code=503, retry_after=2).retry_after == 2


async def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    clock = ManualClock(autojump=True)
    date = formatdate(now + 5, usegmt=True)
    inner, _ = scripted(Response(429, headers={"Retry-After": date}), 200)
    policy = StatusRetryPolicy(wall_clock=lambda: now)
    await retry(inner, policy=policy, clock=clock)(Request("GET", URL))
    assert clock.sleeps == [5.0]


async def test_retry_after_unreadable_falls_back_to_backoff() -> None:
    clock = ManualClock(autojump=True)
    inner, _ = scripted(Response(503, headers={"Retry-After": "soon"}), 200)
    await retry(inner, backoff=0.25, jitter=False, clock=clock)(Request("GET", URL))
    assert clock.sleeps == [0.25]


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(formatdate(now + 30, usegmt=True), wall_now=now) == 30.0
    assert parse_retry_after(formatdate(now - 30, usegmt=True), wall_now=now) == 0.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", wall_now=now) == 0.0
    for bad in ("-1", "nan", "inf", "tomorrow", ""):
        assert parse_retry_after(bad) is None


# -- deadline ----------------------------------------------------------------------------


async def test_never_sleeps_past_the_request_deadline() -> None:
    clock = ManualClock(start=100.0, autojump=True)
    inner, calls = scripted(503)
    svc = retry(inner, attempts=10, backoff=0.4, jitter=False, clock=clock)
    response = await svc(Request("GET", URL, deadline=101.0))
    # 0.4 s fits (100.4 < 101); the next 0.8 s would end at 101.2: stop there.
    assert clock.sleeps == [0.4]
    assert response.status_code == 503
    assert response.attempts == 2
    assert len(calls) == 2


async def test_deadline_stops_and_raises_the_last_error() -> None:
    clock = ManualClock(autojump=True)
    inner, calls = scripted(ConnectError)
    svc = retry(inner, attempts=10, backoff=1, jitter=False, clock=clock)
    with pytest.raises(ConnectError) as info:
        await svc(Request("GET", URL, deadline=2.5))
    assert clock.sleeps == [1.0]  # 1 + 2 would pass the deadline
    assert info.value.attempts == 2  # type: ignore[attr-defined]
    assert len(calls) == 2


async def test_retry_after_longer_than_the_deadline_stops_at_once() -> None:
    clock = ManualClock(autojump=True)
    events: list[tuple[str, Mapping[str, Any]]] = []
    inner, calls = scripted(Response(429, headers={"Retry-After": "5"}), 200)
    request = listen(Request("GET", URL, deadline=3.0), lambda n, a: events.append((n, a)))
    response = await retry(inner, clock=clock)(request)
    assert response.status_code == 429
    assert clock.sleeps == []
    assert len(calls) == 1
    assert events == [
        ("retry.retry_after_exceeded", {"attempt": 1, "retry_after": 5.0, "limit": "deadline"})
    ]


async def test_total_timeout_sets_and_obeys_a_deadline() -> None:
    clock = ManualClock(start=50.0, autojump=True)
    inner, calls = scripted(503)
    svc = retry(inner, attempts=10, backoff=1, jitter=False, total_timeout=4, clock=clock)
    await svc(Request("GET", URL))
    assert clock.sleeps == [1.0, 2.0]  # 50+1+2 = 53; +4 would pass 54
    assert {r.deadline for r in calls} == {54.0}  # the inner timeout layer sees it too


async def test_earlier_request_deadline_wins_over_total_timeout() -> None:
    clock = ManualClock(autojump=True)
    inner, calls = scripted(200)
    await retry(inner, deadline=30, clock=clock)(Request("GET", URL, deadline=5.0))
    assert calls[0].deadline == 5.0


# -- what is retried, and what is not -------------------------------------------------


async def test_post_not_retried_after_a_status() -> None:
    inner, calls = scripted(503, 200)
    response = await retry(inner)(Request("POST", URL, json={"a": 1}))
    assert response.status_code == 503
    assert response.attempts == 1
    assert len(calls) == 1


async def test_post_retried_after_connect_error() -> None:
    inner, calls = scripted(ConnectError, ConnectError, 201)
    response = await retry(inner)(Request("POST", URL, json={"a": 1}))
    assert response.status_code == 201
    assert response.attempts == 3
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("method", "error", "expected_calls"),
    [
        ("POST", TimeoutError("connect timeout", request_sent=False), 2),
        ("POST", TimeoutError("read timeout", request_sent=True), 1),
        ("GET", TimeoutError("read timeout", request_sent=True), 2),
        ("POST", TransportError("reset"), 1),
        ("DELETE", TransportError("reset"), 2),
        ("PATCH", TransportError("reset"), 1),
    ],
)
async def test_sent_requests_retried_only_when_idempotent(
    method: str, error: Exception, expected_calls: int
) -> None:
    inner, calls = scripted(error, 200)
    try:
        await retry(inner)(Request(method, URL))
    except type(error):
        pass
    assert len(calls) == expected_calls


@pytest.mark.parametrize(
    "outcome",
    [
        404,
        400,
        409,
        ParseError("bad body"),
        ConfigError("bad url", field="url"),
        CircuitOpenError(retry_after=0.01),
        RateLimitExceeded(retry_after=1.0),
        ConcurrencyLimitExceeded("full"),
        ValueError("a bug"),
    ],
)
async def test_not_retried(outcome: Outcome) -> None:
    inner, calls = scripted(outcome, 200)
    clock = ManualClock(autojump=True)
    svc = retry(inner, clock=clock)
    if isinstance(outcome, int):
        assert (await svc(Request("GET", URL))).status_code == outcome
    else:
        with pytest.raises(type(outcome)) as info:
            await svc(Request("GET", URL))
        if not isinstance(outcome, ValueError) or isinstance(outcome, ConfigError):
            assert info.value.attempts == 1  # type: ignore[attr-defined]
    assert len(calls) == 1
    assert clock.sleeps == []


async def test_http_status_error_raised_inside_is_judged_by_status() -> None:
    async def strict(request: Request) -> Response:
        return Response(503 if request.attempt < 3 else 200, request=request).raise_for_status()

    response = await retry(service_fn(strict))(Request("GET", URL))
    assert response.status_code == 200
    assert response.attempts == 3


async def test_cancelled_error_is_never_retried() -> None:
    inner, calls = scripted(asyncio.CancelledError(), 200)
    with pytest.raises(asyncio.CancelledError):
        await retry(inner)(Request("GET", URL))
    assert len(calls) == 1


async def test_cancel_while_sleeping_stops_the_loop() -> None:
    clock = ManualClock()  # sleeps until advanced: the task parks in the backoff
    inner, calls = scripted(503)
    task = asyncio.create_task(retry(inner, backoff=5, clock=clock)(Request("GET", URL)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(calls) == 1
    assert len(clock.sleeps) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    clock.advance(100)
    await asyncio.sleep(0)
    assert len(calls) == 1


# -- Idempotency-Key ---------------------------------------------------------------------


async def test_idempotency_key_reused_on_every_attempt() -> None:
    inner, calls = scripted(503, 503, 200)
    svc = retry(inner, idempotency_key=True)
    response = await svc(Request("POST", URL, json={"pay": 10}))
    assert response.status_code == 200
    assert len(calls) == 3
    keys = {r.headers["Idempotency-Key"] for r in calls}
    assert len(keys) == 1
    await svc(Request("POST", URL))
    assert calls[-1].headers["Idempotency-Key"] not in keys  # a new key per logical call


async def test_callers_idempotency_key_is_kept_and_makes_post_retryable() -> None:
    inner, calls = scripted(503, 200)
    request = Request("POST", URL, headers={"idempotency-key": "order-17"})
    response = await retry(inner, idempotency_key=True)(request)
    assert response.attempts == 2
    assert [r.headers.get_list("Idempotency-Key") for r in calls] == [["order-17"]] * 2


def test_new_idempotency_key_is_a_uuid4() -> None:
    keys = {new_idempotency_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        parsed = uuid.UUID(key)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == key


def test_is_idempotent() -> None:
    assert is_idempotent(Request("put", URL))
    assert not is_idempotent(Request("POST", URL))
    assert is_idempotent(Request("POST", URL, headers={"Idempotency-Key": "k"}))


# -- budget ------------------------------------------------------------------------------


async def test_budget_is_shared_and_exhausts() -> None:
    clock = ManualClock(autojump=True)
    budget = RetryBudget(ttl=10, min_per_second=0, percent=0.5, clock=clock)
    layer = RetryLayer(attempts=3, backoff=0, clock=clock, budget=budget)
    inner, calls = scripted(503)
    svc_a, svc_b = layer.wrap(inner), layer.wrap(inner)
    events: list[tuple[str, Mapping[str, Any]]] = []
    request = listen(Request("GET", URL), lambda n, a: events.append((n, a)))

    first = await svc_a(request)  # 1 call in the window: 0.5 retry, not enough
    assert first.attempts == 1
    second = await svc_b(request)  # 2 calls: one retry allowed, then spent
    assert second.attempts == 2
    assert budget.remaining == 0
    assert ("retry.budget_exhausted", {"attempt": 2}) in events
    clock.advance(10.5)  # the window forgets it all
    assert budget.remaining == 0
    assert (await svc_a(request)).attempts == 1
    assert len(calls) == 4


async def test_budget_floor_allows_retries_without_traffic() -> None:
    clock = ManualClock(autojump=True)
    budget = RetryBudget(ttl=10, min_per_second=0.2, percent=0, clock=clock)
    inner, _ = scripted(503)
    response = await retry(inner, attempts=5, backoff=0, budget=budget, clock=clock)(
        Request("GET", URL)
    )
    assert response.attempts == 3  # floor: 0.2/s * 10 s = 2 retries
    assert "retries=2" in repr(budget)


def test_budget_memory_does_not_grow_with_the_call_rate() -> None:
    """Issue 12 review, item 12: the budget kept one float per call for its window
    (50,000 calls in its window held about 2 MB); now ten counters per kind."""
    import tracemalloc

    clock = ManualClock(start=1000.0)
    budget = RetryBudget(ttl=10, min_per_second=0, percent=0.2, clock=clock)
    budget.deposit()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(50_000):
            budget.deposit()
            budget.withdraw()
            clock.advance(0.0001)  # 50,000 calls in 5 s, all in the window
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16_384, f"the budget grew by {grown} bytes"
    assert "calls=50001" in repr(budget)
    assert 9_000 <= int(repr(budget).split("retries=")[1].rstrip(")")) <= 10_001


def test_budget_window_forgets_after_ttl_and_not_before_nine_tenths() -> None:
    clock = ManualClock(start=500.0)
    budget = RetryBudget(ttl=10, min_per_second=0, percent=1.0, clock=clock)
    clock.advance(0.95)  # late in its slice: the earliest a slice is forgotten
    for _ in range(4):
        budget.deposit()
    clock.advance(8.9)  # 8.9 s later: still in the window
    assert budget.remaining == 4
    assert budget.withdraw()
    clock.advance(0.2)  # 9.1 s after the calls: their slice may be forgotten (<= ttl)
    assert budget.remaining == 0  # the calls left, the retry (1.0 s younger) stays
    clock.advance(10.0)
    assert budget.remaining == 0
    assert "calls=0, retries=0" in repr(budget)
    for _ in range(3):
        budget.deposit()
    clock.advance(100.0)  # far past the window: everything is forgotten at once
    assert budget.remaining == 0
    budget.deposit()
    assert "calls=1, retries=0" in repr(budget)


def test_budget_survives_a_clock_stepping_back() -> None:
    class Stepping:
        def __init__(self) -> None:
            self.times = [50.0, 45.0, 45.0]

        def now(self) -> float:
            return self.times.pop(0)

        async def sleep(self, seconds: float) -> None:
            raise AssertionError("not used")

    budget = RetryBudget(ttl=10, min_per_second=0, percent=1.0, clock=Stepping())
    budget.deposit()
    budget.deposit()  # 5 s earlier than the first: counted in the newest slice
    assert budget.remaining == 2


# -- policy, events, config ---------------------------------------------------------------


async def test_custom_policy_decides() -> None:
    seen: list[RetryOutcome] = []

    class UntilReady:
        def decide(self, outcome: RetryOutcome) -> float | None:
            seen.append(outcome)
            if outcome.response is not None and outcome.response.content == b"pending":
                return 0.25
            return None

    clock = ManualClock(autojump=True)
    pending = Response(200, content=b"pending")
    inner, _calls = scripted(pending, pending, Response(200, content=b"done"))
    policy = UntilReady()
    assert isinstance(policy, RetryPolicy)
    response = await retry(inner, policy=policy, attempts=5, clock=clock)(Request("GET", URL))
    assert response.content == b"done"
    assert response.attempts == 3
    assert clock.sleeps == [0.25, 0.25]
    assert [o.attempt for o in seen] == [1, 2, 3]
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[0].attempt = 9  # type: ignore[misc]


async def test_policy_delays_are_clamped() -> None:
    class Wild:
        def __init__(self) -> None:
            self.answers = iter([-3.0, math.inf, math.nan])

        def decide(self, outcome: RetryOutcome) -> float | None:
            return next(self.answers)

    clock = ManualClock(autojump=True)
    inner, calls = scripted(503)
    await retry(inner, policy=Wild(), attempts=9, max_delay=2, clock=clock)(Request("GET", URL))
    assert clock.sleeps == [0.0, 2.0]
    assert len(calls) == 3


async def test_retry_scheduled_events() -> None:
    events: list[tuple[str, Mapping[str, Any]]] = []
    inner, _ = scripted(503, ConnectError, 200)
    request = listen(Request("GET", URL), lambda name, attrs: events.append((name, attrs)))
    await retry(inner, backoff=0.5, jitter=False)(request)
    assert events == [
        ("retry.scheduled", {"attempt": 2, "delay": 0.5, "reason": "503"}),
        ("retry.scheduled", {"attempt": 3, "delay": 1.0, "reason": "ConnectError"}),
    ]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"attempts": 3, "retries": 2}, "retries"),
        ({"attempts": 0}, "attempts"),
        ({"attempts": 2.5}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"retries": -1}, "retries"),
        ({"backoff": -1}, "backoff"),
        ({"max_delay": math.nan}, "max_delay"),
        ({"retry_on": "503"}, "retry_on"),
        ({"retry_on": [503, 99]}, "retry_on"),
        ({"retry_on": 503}, "retry_on"),
        ({"policy": StatusRetryPolicy(), "backoff": 1}, "policy"),
        ({"policy": object()}, "policy"),
        ({"budget": 0.2}, "budget"),
        ({"total_timeout": 0}, "total_timeout"),
        ({"total_timeout": 5, "deadline": 5}, "deadline"),
    ],
)
def test_config_errors(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetryLayer(**options)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"ttl": 0}, "ttl"),
        ({"percent": -0.1}, "percent"),
        ({"min_per_second": -1}, "min_per_second"),
    ],
)
def test_budget_config_errors(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetryBudget(**options)
    assert info.value.field == field


def test_retries_counts_extra_tries_and_repr() -> None:
    assert RetryLayer(retries=0).attempts == 1
    assert RetryLayer(retries=2).attempts == 3
    text = repr(RetryLayer(attempts=4, idempotency_key=True, retry_on=[503]))
    assert "attempts=4" in text
    assert "[503]" in text
    assert "idempotency_key=True" in text


def test_errors_and_repr_say_what_attempts_and_retries_count() -> None:
    """Issue 14.5: ``attempts`` counts every try, ``retries`` the extra ones; errors and
    reprs say so, so ``retry_count=3`` (4 tries) and ``attempts=3`` (3) cannot be confused."""
    layer = RetryLayer(retries=3)
    assert (layer.attempts, layer.retries) == (4, 3)
    text = repr(layer)
    assert "attempts=4 (tries in all, the first one included; retries=3)" in text
    inner, _ = scripted(200)
    assert "attempts=4 (retries=3)" in repr(layer.wrap(inner))
    with pytest.raises(ConfigError, match="tries in all") as info:
        RetryLayer(attempts=0)
    assert info.value.field == "attempts"
    with pytest.raises(ConfigError, match="extra tries after the first") as info:
        RetryLayer(retries=-1)
    assert info.value.field == "retries"
    with pytest.raises(ConfigError, match="not both: attempts=3 is retries=2") as info:
        RetryLayer(attempts=3, retries=2)
    assert info.value.field == "retries"


@pytest.mark.parametrize(("options", "requests"), [({"attempts": 3}, 3), ({"retries": 3}, 4)])
async def test_attempts_and_retries_on_the_real_server(
    lamina_server: LocalServer, options: dict[str, int], requests: int
) -> None:
    async with HttpxTransport() as transport:
        svc = RetryLayer(
            **options, backoff=0.01, jitter=False, clock=ManualClock(autojump=True)
        ).wrap(transport)
        path = "/status/503"
        response = await svc(Request("GET", lamina_server.url_for(path)))
    assert response.status_code == 503
    assert response.attempts == requests
    assert lamina_server.hits("/status/503") == requests


# -- against the real server ---------------------------------------------------------------


def stack(transport: HttpxTransport, **options: Any) -> Service:
    options.setdefault("clock", ManualClock(autojump=True))
    return RetryLayer(**options).wrap(transport)


async def test_real_flaky_succeeds_on_third_try(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        svc = (
            ServiceBuilder().layer(ParseLayer()).layer(RetryLayer(backoff=0.01)).service(transport)
        )
        response = await svc(Request("GET", lamina_server.url_for("/flaky/r1?fail=2")))
    assert response.value == {"attempt": 3, "ok": True}
    assert response.attempts == 3
    assert lamina_server.hits("/flaky/r1") == 3


async def test_real_parse_outside_raises_with_attempts(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        retry_layer = RetryLayer(clock=ManualClock(autojump=True))
        svc = ServiceBuilder().layer(ParseLayer()).layer(retry_layer).service(transport)
        with pytest.raises(HTTPStatusError) as info:
            await svc(Request("GET", lamina_server.url_for("/flaky/r2?fail=9&status=502")))
    assert info.value.status_code == 502
    assert info.value.response is not None
    assert info.value.response.attempts == 3
    assert lamina_server.hits("/flaky/r2") == 3


async def test_real_retry_after_seconds_gap(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        svc = RetryLayer(backoff=0).wrap(transport)  # real clock: the only wait is Retry-After
        response = await svc(Request("GET", lamina_server.url_for("/retry-after/r3?seconds=0.1")))
    assert response.status_code == 200
    assert response.attempts == 2
    first, second = lamina_server.arrivals("/retry-after/r3")
    assert second - first >= 0.1


async def test_real_retry_after_http_date(lamina_server: LocalServer) -> None:
    clock = ManualClock(autojump=True)
    async with HttpxTransport() as transport:
        svc = stack(transport, clock=clock, max_delay=60)
        url = lamina_server.url_for("/retry-after/r4?seconds=3&date=1")
        response = await svc(Request("GET", url))
    assert response.status_code == 200
    assert lamina_server.hits("/retry-after/r4") == 2
    (slept,) = clock.sleeps
    assert 1.5 < slept <= 3.0  # the date has one-second resolution


async def test_real_retry_after_beyond_max_delay_is_one_request(
    lamina_server: LocalServer,
) -> None:
    clock = ManualClock(autojump=True)
    async with HttpxTransport() as transport:
        svc = ServiceBuilder().layer(ParseLayer()).layer(RetryLayer(clock=clock)).service(transport)
        url = lamina_server.url_for("/retry-after/r8?seconds=3600&fail=9")
        with pytest.raises(HTTPStatusError) as info:
            await svc(Request("GET", url))
    assert info.value.status_code == 429
    assert info.value.retry_after == 3600.0
    assert "Retry-After 3600s" in str(info.value)
    assert lamina_server.hits("/retry-after/r8") == 1
    assert clock.sleeps == []


async def test_real_reset_is_retried(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        with pytest.raises(TransportError) as info:
            await stack(transport)(Request("GET", lamina_server.url_for("/reset")))
    assert not isinstance(info.value, ConnectError)
    assert info.value.attempts == 3  # type: ignore[attr-defined]
    assert lamina_server.hits("/reset") == 3


async def test_real_reset_then_success(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        url = lamina_server.url_for("/flaky/r5?fail=1&mode=reset")
        response = await stack(transport)(Request("GET", url))
    assert response.status_code == 200
    assert response.attempts == 2


async def test_real_404_not_retried(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        response = await stack(transport)(Request("GET", lamina_server.url_for("/status/404")))
    assert response.status_code == 404
    assert response.attempts == 1
    assert lamina_server.hits("/status/404") == 1


async def test_real_post_not_retried_after_503(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        url = lamina_server.url_for("/flaky/r6?fail=2")
        response = await stack(transport)(Request("POST", url, json={"n": 1}))
    assert response.status_code == 503
    assert lamina_server.hits("/flaky/r6") == 1


async def test_real_post_with_idempotency_key_same_key(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        url = lamina_server.url_for("/flaky/r7?fail=2")
        svc = stack(transport, idempotency_key=True)
        response = await svc(Request("POST", url, json={"n": 1}))
    assert response.status_code == 200
    assert response.attempts == 3
    seen = lamina_server.requests("/flaky/r7")
    assert len(seen) == 3
    keys = {r.headers["idempotency-key"] for r in seen}
    assert len(keys) == 1
    assert len(keys.pop()) == 36


async def test_real_post_retried_after_connect_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tries = 0

    async with HttpxTransport() as transport:

        async def counting(request: Request) -> Response:
            nonlocal tries
            tries += 1
            return await transport(request)

        svc = stack(service_fn(counting))
        with pytest.raises(ConnectError) as info:
            await svc(Request("POST", f"http://127.0.0.1:{port}/pay", json={"n": 1}))
    assert tries == 3
    assert info.value.attempts == 3  # type: ignore[attr-defined]


async def test_endpoint_retry_delay_is_the_first_wait_and_jitter_keeps_half(
    lamina_server: LocalServer,
) -> None:
    """Issue 14.6: ``retry_delay`` is the wait before the first retry, doubling after;
    jittered waits lie in [0.5, 1] x retry_delay x 2^n (never 3 ms for retry_delay=1)."""
    from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator

    clock = ManualClock(autojump=True)
    endpoint = APIEndpoint(
        name="down", url=lamina_server.url_for("/status/503"), retry_count=3, retry_delay=1.0
    )
    config = APIOrchestrationConfig(
        endpoints=[endpoint], max_concurrent=1, circuit_breaker_threshold=1000
    )
    async with APIOrchestrator(config, transport=HttpxTransport(), clock=clock) as orchestrator:
        for _ in range(10):
            report = await orchestrator.run()
            assert report.endpoints["down"].attempts == 4
    assert len(clock.sleeps) == 30
    for index, wait in enumerate(clock.sleeps):
        step = 2.0 ** (index % 3)  # 1, 2, 4 s
        assert 0.5 * step <= wait <= step, (index, wait)
    assert len(set(clock.sleeps)) == 30  # jittered
