"""CircuitBreakerLayer: unit tests with stub services, then against the real local server."""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from lamina import (
    CircuitBreaker,
    CircuitOpenError,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    HttpxTransport,
    RateLimitExceeded,
    Request,
    Response,
    ServiceBuilder,
    TimeoutError,
    TransportError,
    service_fn,
)
from lamina._events import listen
from lamina.layers.circuit_breaker import (
    BreakerPool,
    CircuitBreakerLayer,
    CircuitState,
    Outcome,
    StateChange,
    default_is_failure,
    exception_outcome,
    timed_out_waiting,
)
from lamina.layers.timeout import TimeoutLayer
from lamina.testing import LocalServer, ManualClock
from lamina.testing.server import RecordedRequest


class Inner:
    """A stub inner service answering with a fixed status, counting calls."""

    def __init__(self, status: int = 200, error: BaseException | None = None) -> None:
        self.status = status
        self.error = error
        self.calls = 0

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return Response(self.status, request=request)


def req(
    endpoint: str | None = "users", events: list[tuple[str, dict[str, Any]]] | None = None
) -> Request:
    request = Request("GET", "https://api.example.com/users?api_key=s3cret", endpoint=endpoint)
    if events is not None:

        def record(name: str, attrs: Mapping[str, Any]) -> None:
            events.append((name, dict(attrs)))

        request = listen(request, record)
    return request


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold": 0}, "threshold"),
        ({"threshold": 2.5}, "threshold"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -3}, "timeout"),
        ({"name": ""}, "name"),
        ({"is_failure": "nope"}, "is_failure"),
        ({"is_failure": default_is_failure, "failure_statuses": [500]}, "is_failure"),
        ({"failure_statuses": [500, 99]}, "failure_statuses"),
        ({"failure_statuses": "503"}, "failure_statuses"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        CircuitBreakerLayer(**kwargs)
    assert info.value.field == field


def test_repr_and_defaults() -> None:
    layer = CircuitBreakerLayer(threshold=5, timeout=60.0)
    assert repr(layer) == "CircuitBreakerLayer(threshold=5, timeout=60s, breakers=0)"
    layer.breaker("a")
    fixed = CircuitBreakerLayer(threshold=2, timeout=1, name="shared")
    assert repr(fixed) == "CircuitBreakerLayer(threshold=2, timeout=1s, name='shared', breakers=0)"
    assert list(layer.breakers) == ["a"]
    assert repr(layer.breaker("a")) == "<CircuitBreaker name='a' state=closed failures=0>"


# -- what counts ----------------------------------------------------------------------


async def test_5xx_opens_and_open_rejects_without_calling_inner(
    manual_clock: ManualClock,
) -> None:
    inner = Inner(503)
    layer = CircuitBreakerLayer(threshold=3, timeout=30.0, clock=manual_clock)
    svc = layer.wrap(inner)
    for _ in range(3):
        assert (await svc(req())).status_code == 503  # the response still goes back up
    brk = layer.breakers["users"]
    assert (brk.state, brk.failure_count, brk.opened_at) == ("open", 3, 0.0)
    events: list[tuple[str, dict[str, Any]]] = []
    manual_clock.advance(12)
    with pytest.raises(CircuitOpenError) as info:
        await svc(req(events=events))
    assert inner.calls == 3
    assert info.value.retry_after == pytest.approx(18.0)
    assert info.value.endpoint == "users"
    assert "s3cret" not in str(info.value)
    assert events == [("breaker.rejected", {"retry_after": pytest.approx(18.0)})]


async def test_4xx_is_not_a_failure() -> None:
    inner = Inner(404)
    layer = CircuitBreakerLayer(threshold=2)
    svc = layer.wrap(inner)
    for _ in range(10):
        assert (await svc(req())).status_code == 404
    assert layer.breakers["users"].failure_count == 0
    assert layer.breakers["users"].state is CircuitState.CLOSED


@pytest.mark.parametrize(
    "error",
    [
        ConnectError("refused"),
        TimeoutError("attempt timed out", timeout=1.0),
    ],
)
async def test_transport_errors_and_timeouts_are_failures(error: Exception) -> None:
    layer = CircuitBreakerLayer(threshold=2)
    svc = layer.wrap(Inner(error=error))
    for _ in range(2):
        with pytest.raises(type(error)):
            await svc(req())
    assert layer.breakers["users"].state is CircuitState.OPEN


async def test_other_errors_are_neutral() -> None:
    layer = CircuitBreakerLayer(threshold=2)
    failing = layer.wrap(Inner(503))
    limited = layer.wrap(Inner(error=RateLimitExceeded(retry_after=1.0)))
    await failing(req())
    for _ in range(3):
        with pytest.raises(RateLimitExceeded):
            await limited(req())
    brk = layer.breakers["users"]
    assert (brk.state, brk.failure_count) == ("closed", 1)  # neither reset nor counted


async def test_failure_statuses_and_is_failure_are_configurable() -> None:
    by_status = CircuitBreakerLayer(threshold=1, failure_statuses={429, 503})
    await by_status.wrap(Inner(500))(req("a"))
    assert by_status.breakers["a"].state is CircuitState.CLOSED
    await by_status.wrap(Inner(429))(req("b"))
    assert by_status.breakers["b"].state is CircuitState.OPEN
    with pytest.raises(ConnectError):
        await by_status.wrap(Inner(error=ConnectError("x")))(req("c"))
    assert by_status.breakers["c"].state is CircuitState.OPEN

    seen: list[object] = []

    def only_502(outcome: Response | BaseException) -> bool:
        seen.append(outcome)
        return isinstance(outcome, Response) and outcome.status_code == 502

    custom = CircuitBreakerLayer(threshold=1, is_failure=only_502)
    await custom.wrap(Inner(503))(req())
    assert custom.breakers["users"].state is CircuitState.CLOSED
    await custom.wrap(Inner(502))(req())
    assert custom.breakers["users"].state is CircuitState.OPEN
    assert [r.status_code for r in seen] == [503, 502]  # type: ignore[attr-defined]


async def test_broken_predicate_falls_back_to_default(caplog: pytest.LogCaptureFixture) -> None:
    def broken(outcome: Response | BaseException) -> bool:
        raise ValueError("bug")

    layer = CircuitBreakerLayer(threshold=1, is_failure=broken)
    with caplog.at_level(logging.ERROR, logger="lamina.breaker"):
        assert (await layer.wrap(Inner(200))(req("ok"))).status_code == 200
        assert (await layer.wrap(Inner(500))(req("bad"))).status_code == 500
    assert layer.breakers["ok"].state is CircuitState.CLOSED
    assert layer.breakers["bad"].state is CircuitState.OPEN
    assert "is_failure predicate failed" in caplog.text


# -- names --------------------------------------------------------------------------------


async def test_one_breaker_per_endpoint_or_one_fixed_name() -> None:
    per_endpoint = CircuitBreakerLayer(threshold=1)
    bad, good = Inner(500), Inner(200)
    await per_endpoint.wrap(bad)(req("bad"))
    assert (await per_endpoint.wrap(good)(req("good"))).status_code == 200
    assert await per_endpoint.wrap(good)(req(None))  # no endpoint: "default"
    assert set(per_endpoint.breakers) == {"bad", "good", "default"}

    shared = CircuitBreakerLayer(threshold=1, name="upstream")
    await shared.wrap(bad)(req("bad"))
    with pytest.raises(CircuitOpenError) as info:
        await shared.wrap(good)(req("good"))
    assert info.value.endpoint == "upstream"
    assert good.calls == 2
    assert list(shared.breakers) == ["upstream"]


# -- a BreakerPool handed to several layers --------------------------------------------------


async def test_layers_handed_one_pool_share_its_breakers_and_hooks() -> None:
    pool = BreakerPool(threshold=1, timeout=30)
    changes: list[StateChange] = []
    pool.on_state_change(changes.append)
    strict = CircuitBreakerLayer(pool=pool)
    lenient = CircuitBreakerLayer(pool=pool, failure_statuses=[599])
    assert strict.threshold == lenient.threshold == 1
    await strict.wrap(Inner(500))(req())
    with pytest.raises(CircuitOpenError):
        await lenient.wrap(Inner(200))(req())  # the same "users" breaker: open
    assert pool.breakers["users"] is strict.breaker("users") is lenient.breaker("users")
    assert [(c.old, c.new) for c in changes] == [(CircuitState.CLOSED, CircuitState.OPEN)]
    assert repr(pool) == "BreakerPool(threshold=1, timeout=30s, breakers=1)"


@pytest.mark.parametrize("kwargs", [{"threshold": 3}, {"timeout": 5}, {"clock": ManualClock()}])
def test_pool_and_the_options_it_holds_are_exclusive(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        CircuitBreakerLayer(pool=BreakerPool(), **kwargs)
    assert info.value.field == "pool"
    with pytest.raises(ConfigError) as info:
        CircuitBreakerLayer(pool=CircuitBreakerLayer())  # type: ignore[arg-type]
    assert info.value.field == "pool"


# -- half-open and cancellation ------------------------------------------------------------


async def test_100_concurrent_callers_in_half_open_let_one_through(
    manual_clock: ManualClock,
) -> None:
    gate = asyncio.Event()
    reached = 0

    async def blocking(request: Request) -> Response:
        nonlocal reached
        reached += 1
        await gate.wait()
        return Response(200, request=request)

    layer = CircuitBreakerLayer(threshold=1, timeout=10.0, clock=manual_clock)
    await layer.wrap(Inner(500))(req())
    manual_clock.advance(10)
    events: list[tuple[str, dict[str, Any]]] = []
    svc = layer.wrap(service_fn(blocking))
    tasks = [asyncio.create_task(svc(req(events=events))) for _ in range(100)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert reached == 1
    assert sum(t.done() for t in tasks) == 99
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, Response) for r in results) == 1
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 99
    assert layer.breakers["users"].state is CircuitState.CLOSED
    states = [a for name, a in events if name == "breaker.state"]
    assert states == [
        {"name": "users", "old": "open", "new": "half_open"},
        {"name": "users", "old": "half_open", "new": "closed"},
    ]
    assert sum(name == "breaker.rejected" for name, _ in events) == 99


async def test_cancellation_is_neutral_in_closed_and_half_open(
    manual_clock: ManualClock,
) -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(10)
        return Response(200, request=request)

    layer = CircuitBreakerLayer(threshold=2, timeout=5.0, clock=manual_clock)
    svc_slow, svc_bad = layer.wrap(service_fn(slow)), layer.wrap(Inner(503))
    await svc_bad(req())
    for _ in range(3):  # an outer total timeout cancelling the attempt
        with pytest.raises(builtins.TimeoutError):
            async with asyncio.timeout(0.001):
                await svc_slow(req())
    brk = layer.breakers["users"]
    assert (brk.state, brk.failure_count) == ("closed", 1)
    await svc_bad(req())
    assert brk.state is CircuitState.OPEN

    manual_clock.advance(5)
    probe = asyncio.create_task(svc_slow(req()))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError):
        await svc_bad(req())  # the probe slot is taken
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert brk.state is CircuitState.HALF_OPEN
    assert (await layer.wrap(Inner(200))(req())).status_code == 200  # a new probe is admitted
    assert brk.state is CircuitState.CLOSED


async def test_layer_hooks_reach_future_breakers_and_never_break_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = CircuitBreakerLayer(threshold=1)
    layer.breaker("early")
    changes: list[StateChange] = []

    @layer.on_state_change
    def broken(change: StateChange) -> None:
        raise RuntimeError("hook bug")

    layer.on_state_change(changes.append)
    with caplog.at_level(logging.ERROR, logger="lamina.breaker"):
        assert (await layer.wrap(Inner(500))(req("early"))).status_code == 500
        assert (await layer.wrap(Inner(502))(req("late"))).status_code == 502
    assert [(c.name, c.old, c.new) for c in changes] == [
        ("early", "closed", "open"),
        ("late", "closed", "open"),
    ]
    assert caplog.text.count("state-change hook failed") == 2


# -- against the real local server -------------------------------------------------------


async def test_real_server_503_opens_then_probes_once(
    lamina_server: LocalServer, manual_clock: ManualClock
) -> None:
    layer = CircuitBreakerLayer(threshold=3, timeout=30.0, clock=manual_clock)
    url = lamina_server.url_for("/status/503")
    async with HttpxTransport() as transport:
        svc = ServiceBuilder().layer(layer).service(transport)
        for _ in range(3):
            assert (await svc(Request("GET", url, endpoint="status"))).status_code == 503
        assert lamina_server.hits("/status/503") == 3
        for _ in range(10):
            with pytest.raises(CircuitOpenError):
                await svc(Request("GET", url, endpoint="status"))
        assert lamina_server.hits("/status/503") == 3  # nothing reached the server while open
        manual_clock.advance(30)
        assert (await svc(Request("GET", url, endpoint="status"))).status_code == 503
        assert lamina_server.hits("/status/503") == 4  # exactly one probe
        assert layer.breakers["status"].state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError) as info:
            await svc(Request("GET", url, endpoint="status"))
        assert info.value.retry_after == pytest.approx(30.0)
        assert lamina_server.hits("/status/503") == 4


async def test_real_server_recovers_when_the_route_heals(
    lamina_server: LocalServer, manual_clock: ManualClock
) -> None:
    healthy = False

    def toggle(request: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        return (200, {"ok": True}, {}) if healthy else (503, {"ok": False}, {})

    lamina_server.route("/toggle", toggle)
    layer = CircuitBreakerLayer(threshold=2, timeout=10.0, clock=manual_clock)
    url = lamina_server.url_for("/toggle")
    async with HttpxTransport() as transport:
        svc = ServiceBuilder().layer(layer).service(transport)
        for _ in range(2):
            await svc(Request("GET", url, endpoint="toggle"))
        with pytest.raises(CircuitOpenError):
            await svc(Request("GET", url, endpoint="toggle"))
        healthy = True
        manual_clock.advance(10)
        response = await svc(Request("GET", url, endpoint="toggle"))
        assert response.status_code == 200
        assert layer.breakers["toggle"].state is CircuitState.CLOSED
        for _ in range(3):
            assert (await svc(Request("GET", url, endpoint="toggle"))).status_code == 200
    assert lamina_server.hits("/toggle") == 6


async def test_real_server_concurrent_half_open_sends_one_request(
    lamina_server: LocalServer, manual_clock: ManualClock
) -> None:
    layer = CircuitBreakerLayer(threshold=1, timeout=5.0, clock=manual_clock)
    async with HttpxTransport() as transport:
        svc = ServiceBuilder().layer(layer).service(transport)
        await svc(Request("GET", lamina_server.url_for("/status/500"), endpoint="slow"))
        manual_clock.advance(5)
        url = lamina_server.url_for("/json?ms=100")
        results = await asyncio.gather(
            *(svc(Request("GET", url, endpoint="slow")) for _ in range(20)),
            return_exceptions=True,
        )
    assert lamina_server.hits("/json") == 1
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 19
    assert layer.breakers["slow"].state is CircuitState.CLOSED


async def test_real_server_timeouts_and_resets_count(lamina_server: LocalServer) -> None:
    layer = CircuitBreakerLayer(threshold=2, timeout=30.0)
    async with HttpxTransport() as transport:
        # 0.3 s: the reset below must come back as a reset, not a timeout, on a loaded
        # machine (with 0.05 s its connect and read outlasted the attempt once)
        svc = ServiceBuilder().layer(layer).layer(TimeoutLayer(0.3)).service(transport)
        with pytest.raises(TimeoutError):
            await svc(Request("GET", lamina_server.url_for("/hang"), endpoint="flaky"))
        with pytest.raises(TransportError):
            await svc(Request("GET", lamina_server.url_for("/reset"), endpoint="flaky"))
        with pytest.raises(CircuitOpenError):
            await svc(Request("GET", lamina_server.url_for("/json"), endpoint="flaky"))
    assert layer.breakers["flaky"].state is CircuitState.OPEN
    assert lamina_server.hits("/json") == 0


# -- only the upstream's failures count (issue 12, item 11) ------------------------------


NOT_SENT = [
    pytest.param(TimeoutError("queued", timeout=1.0, request_sent=False), id="not-sent"),
    pytest.param(TimeoutError("deadline passed", timeout=0.0, request_sent=False), id="deadline"),
]
#: sent after a wait for a connection that took at least half the attempt
SHORT_CHANGED = [
    pytest.param(TimeoutError("late", timeout=1.0, waited=0.8), id="waited-0.8-of-1"),
    pytest.param(TimeoutError("late", timeout=1.0, waited=0.51), id="waited-0.51-of-1"),
    pytest.param(TimeoutError("late", waited=0.2), id="waited-no-budget"),
]


@pytest.mark.parametrize("error", NOT_SENT)
def test_a_timeout_before_sending_is_not_an_upstream_failure(error: TimeoutError) -> None:
    assert timed_out_waiting(error)
    assert default_is_failure(error) is False
    assert exception_outcome(error, True) is Outcome.NEUTRAL


@pytest.mark.parametrize("error", SHORT_CHANGED)
def test_a_timeout_mostly_spent_waiting_is_a_weak_failure(error: TimeoutError) -> None:
    assert timed_out_waiting(error)
    assert exception_outcome(error, True) is Outcome.WEAK_FAILURE
    assert exception_outcome(error, False) is Outcome.NEUTRAL


@pytest.mark.parametrize("waited", [0.01, 0.3, 0.5])
def test_a_timeout_the_upstream_had_half_the_attempt_for_counts_in_full(waited: float) -> None:
    """Issue 12 review, item 11: any wait at all used to make a timeout neutral."""
    error = TimeoutError("late", timeout=1.0, waited=waited)
    assert not timed_out_waiting(error)
    assert default_is_failure(error) is True
    assert exception_outcome(error, True) is Outcome.FAILURE


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("the upstream had it all", timeout=1.0),
        ConnectTimeout("connecting timed out", timeout=1.0),
        ConnectError("refused"),
        TransportError("reset"),
    ],
)
def test_the_upstreams_own_failures_still_count(error: Exception) -> None:
    assert not timed_out_waiting(error)
    assert default_is_failure(error) is True


def test_a_connect_timeout_is_a_connect_error_and_a_timeout() -> None:
    error = ConnectTimeout("connecting timed out")
    assert isinstance(error, ConnectError)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, builtins.TimeoutError)
    assert error.request_sent is False


PREDICATES = pytest.mark.parametrize(
    "options",
    [
        {},
        {"failure_statuses": {503}},
        {"is_failure": lambda o: not isinstance(o, Response) or o.status_code >= 500},
    ],
    ids=["default", "failure_statuses", "is_failure"],
)


@pytest.mark.parametrize("error", NOT_SENT)
@PREDICATES
async def test_timeouts_before_sending_are_neutral_whatever_the_predicate(
    error: TimeoutError, options: dict[str, Any]
) -> None:
    layer = CircuitBreakerLayer(threshold=2, **options)
    failing = layer.wrap(Inner(503))
    waiting = layer.wrap(Inner(error=error))
    await failing(req())  # one failure counted
    for _ in range(5):
        with pytest.raises(TimeoutError):
            await waiting(req())
    brk = layer.breakers["users"]
    assert (brk.state, brk.failure_count) == ("closed", 1)  # neither counted nor reset


@pytest.mark.parametrize("error", SHORT_CHANGED)
@PREDICATES
async def test_weak_failures_never_start_a_run_but_extend_one(
    error: TimeoutError, options: dict[str, Any]
) -> None:
    layer = CircuitBreakerLayer(threshold=3, **options)
    waiting = layer.wrap(Inner(error=error))
    for _ in range(5):  # local queueing alone: nothing counted
        with pytest.raises(TimeoutError):
            await waiting(req())
    brk = layer.breakers["users"]
    assert (brk.state, brk.failure_count) == ("closed", 0)
    await layer.wrap(Inner(503))(req())  # the upstream failed: a run starts
    with pytest.raises(TimeoutError):
        await waiting(req())
    assert brk.failure_count == 2  # the short-changed timeout extends it
    await layer.wrap(Inner(200))(req())  # a success ends the run
    with pytest.raises(TimeoutError):
        await waiting(req())
    assert brk.failure_count == 0
    await layer.wrap(Inner(503))(req())
    for _ in range(2):
        with pytest.raises(TimeoutError):
            await waiting(req())
    assert brk.state is CircuitState.OPEN


async def test_a_weak_failure_that_the_predicate_forgives_is_neutral() -> None:
    layer = CircuitBreakerLayer(threshold=1, is_failure=lambda outcome: False)
    with pytest.raises(TimeoutError):
        await layer.wrap(Inner(error=TimeoutError("late", timeout=1.0, waited=0.9)))(req())
    assert layer.breakers["users"].failure_count == 0


@pytest.mark.parametrize("error", NOT_SENT + SHORT_CHANGED)
async def test_circuit_breaker_call_never_opens_on_waiting_alone(error: TimeoutError) -> None:
    breaker = CircuitBreaker(threshold=1, name="db")

    async def waits() -> None:
        raise error

    for _ in range(3):
        with pytest.raises(TimeoutError):
            await breaker.call(waits)
    assert (breaker.state, breaker.failure_count) == ("closed", 0)

    async def hangs() -> None:
        raise TimeoutError("the dependency had it all", timeout=1.0)

    with pytest.raises(TimeoutError):
        await breaker.call(hangs)
    assert breaker.state is CircuitState.OPEN


async def test_circuit_breaker_call_weak_failures_extend_a_run() -> None:
    breaker = CircuitBreaker(threshold=3, name="db", exclude=KeyError)

    async def raises(error: Exception) -> None:
        raise error

    short = TimeoutError("late", timeout=1.0, waited=0.7)
    with pytest.raises(ConnectError):
        await breaker.call(raises, ConnectError("refused"))
    for _ in range(2):
        with pytest.raises(TimeoutError):
            await breaker.call(raises, short)
    assert breaker.state is CircuitState.OPEN
    # an excluded exception still counts as the dependency answering
    await breaker.reset()
    with pytest.raises(ConnectError):
        await breaker.call(raises, ConnectError("refused"))
    with pytest.raises(KeyError):
        await breaker.call(raises, KeyError("x"))
    assert breaker.failure_count == 0


async def test_a_waiting_probe_frees_the_half_open_slot(manual_clock: ManualClock) -> None:
    layer = CircuitBreakerLayer(threshold=1, timeout=10.0, clock=manual_clock)
    await layer.wrap(Inner(503))(req())
    manual_clock.advance(10.0)
    with pytest.raises(TimeoutError):
        await layer.wrap(Inner(error=TimeoutError("queued", request_sent=False)))(req())
    assert layer.breakers["users"].state is CircuitState.HALF_OPEN
    response = await layer.wrap(Inner(200))(req())  # the next call may probe
    assert response.status_code == 200
    assert layer.breakers["users"].state is CircuitState.CLOSED


async def test_a_short_changed_probe_reopens(manual_clock: ManualClock) -> None:
    layer = CircuitBreakerLayer(threshold=1, timeout=10.0, clock=manual_clock)
    await layer.wrap(Inner(503))(req())
    manual_clock.advance(10.0)
    with pytest.raises(TimeoutError):
        await layer.wrap(Inner(error=TimeoutError("late", timeout=1.0, waited=0.9)))(req())
    assert layer.breakers["users"].state is CircuitState.OPEN


async def test_a_dead_upstream_behind_a_full_pool_opens_the_breaker(
    lamina_server: LocalServer,
) -> None:
    """Issue 12 review, item 11 (/tmp/rv/dead.py): an upstream that never answers, two
    connections, a call every 40 ms. Every attempt after the first two waits for one of
    the two slots, is sent with about a fifth of its 0.4 s left, and times out there.
    Counted as neutral, those kept the breaker closed: all 30 calls reached the dead
    upstream (2 failures counted). Now they extend the run the first two started."""
    layer = CircuitBreakerLayer(threshold=5, timeout=60.0)
    outcomes: list[str] = []
    async with HttpxTransport(max_in_flight=2) as transport:
        svc = ServiceBuilder().layer(layer).layer(TimeoutLayer(0.4)).service(transport)

        async def one() -> None:
            try:
                await svc(Request("GET", lamina_server.url_for("/hang"), endpoint="dead"))
            except (TimeoutError, CircuitOpenError) as exc:
                outcomes.append(type(exc).__name__)

        calls = []
        for _ in range(30):
            calls.append(asyncio.create_task(one()))
            await asyncio.sleep(0.04)
        await asyncio.gather(*calls)
    assert layer.breakers["dead"].state is CircuitState.OPEN
    assert outcomes.count("CircuitOpenError") > 0
    assert lamina_server.hits("/hang") < 30
