"""HedgeLayer: unit tests in virtual time, and the real local server on every transport."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import lamina
import lamina.transports
from lamina import ConfigError, Request, Response, ServiceBuilder, TransportError
from lamina._events import listen
from lamina.layers.call_tracing import CallTracingLayer
from lamina.layers.hedge import HEDGE_KEY, HedgeLayer, LatencyPercentile
from lamina.layers.timeout import TimeoutLayer
from lamina.layers.tracing import TracingLayer
from lamina.testing import LocalServer
from lamina.testing.clock import ManualClock

URL = "http://api.test/x"


class Upstream:
    """An inner service whose attempts wait until the test answers them, in order."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Request, asyncio.Future[Response]]] = []
        self.cancelled: list[int] = []

    async def __call__(self, request: Request) -> Response:
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        index = len(self.attempts)
        self.attempts.append((request, future))
        try:
            return await future
        except asyncio.CancelledError:
            self.cancelled.append(index)
            raise

    def answer(self, index: int, status: int = 200) -> None:
        request = self.attempts[index][0]
        self.attempts[index][1].set_result(Response(status, request=request, content=b"%d" % index))

    def fail(self, index: int, error: Exception) -> None:
        self.attempts[index][1].set_exception(error)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def recorded(request: Request, events: list[tuple[str, dict[str, Any]]]) -> Request:
    def listener(name: str, attributes: Mapping[str, Any]) -> None:
        events.append((name, dict(attributes)))

    return listen(request, listener)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"delay": "p0"}, "delay"),
        ({"delay": "p100"}, "delay"),
        ({"delay": "fast"}, "delay"),
        ({"delay": -1}, "delay"),
        ({"delay": True}, "delay"),
        ({"max_hedges": 0}, "max_hedges"),
        ({"max_hedges": 11}, "max_hedges"),
        ({"min_samples": 50, "window": 10}, "window"),
        ({"hedge_on": "503"}, "hedge_on"),
        ({"hedge_on": [700]}, "hedge_on"),
        ({"clock": 5}, "clock"),  # accepted, then failed mid-call
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        HedgeLayer(**options)
    assert info.value.field == field


def test_delay_spellings() -> None:
    assert HedgeLayer(0.25).current_delay() == 0.25
    layer = HedgeLayer(" P99.5 ")
    assert layer.delay == "p99.5"
    assert layer.current_delay() is None  # warming up
    assert repr(HedgeLayer()) == "HedgeLayer(delay='p95', max_hedges=1)"


async def test_a_slow_attempt_is_hedged_after_the_delay_and_the_first_good_answer_wins() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.125, clock=clock).wrap(upstream)
    events: list[tuple[str, dict[str, Any]]] = []
    call = asyncio.create_task(service(recorded(Request("GET", URL), events)))
    await settle()
    assert len(upstream.attempts) == 1
    clock.advance(0.0625)
    await settle()
    assert len(upstream.attempts) == 1
    clock.advance(0.0625)
    await settle()
    assert len(upstream.attempts) == 2
    first, hedge = upstream.attempts[0][0], upstream.attempts[1][0]
    assert HEDGE_KEY not in first.extensions
    assert hedge.extensions[HEDGE_KEY] == 1
    assert hedge.url == first.url
    assert hedge.method == "GET"
    upstream.answer(1)
    response = await call
    assert response.content == b"1"
    assert upstream.cancelled == [0]  # the loser was cancelled before the call returned
    assert events == [
        ("hedge.sent", {"hedge": 1, "delay": 0.125, "reason": "delay"}),
        ("hedge.won", {"hedge": 1}),
    ]


async def test_a_fast_answer_sends_no_hedge() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, clock=clock).wrap(upstream)
    call = asyncio.create_task(service(Request("GET", URL)))
    await settle()
    upstream.answer(0)
    assert (await call).content == b"0"
    clock.advance(1)
    await settle()
    assert len(upstream.attempts) == 1


@pytest.mark.parametrize(
    ("method", "headers", "hedged"),
    [
        ("GET", {}, True),
        ("HEAD", {}, True),
        ("PUT", {}, True),
        ("DELETE", {}, True),
        ("OPTIONS", {}, True),
        ("POST", {}, False),
        ("PATCH", {}, False),
        ("POST", {"Idempotency-Key": "k1"}, True),
        ("PATCH", {"idempotency-key": "k2"}, True),
    ],
)
async def test_only_idempotent_calls_are_hedged(
    method: str, headers: dict[str, str], hedged: bool
) -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, clock=clock).wrap(upstream)
    call = asyncio.create_task(service(Request(method, URL, headers=headers)))
    await settle()
    clock.advance(0.5)
    await settle()
    assert len(upstream.attempts) == (2 if hedged else 1)
    upstream.answer(0)
    assert (await call).status_code == 200


async def test_a_failed_attempt_sends_the_next_hedge_at_once_and_does_not_win() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, max_hedges=2, clock=clock).wrap(upstream)
    events: list[tuple[str, dict[str, Any]]] = []
    call = asyncio.create_task(service(recorded(Request("GET", URL), events)))
    await settle()
    upstream.answer(0, status=503)
    await settle()
    assert len(upstream.attempts) == 2  # no time passed
    upstream.fail(1, TransportError("reset"))
    await settle()
    assert len(upstream.attempts) == 3
    upstream.answer(2)
    assert (await call).content == b"2"
    assert [e for e in events if e[0] == "hedge.sent"] == [
        ("hedge.sent", {"hedge": 1, "delay": 0.0, "reason": "failure"}),
        ("hedge.sent", {"hedge": 2, "delay": 0.0, "reason": "failure"}),
    ]


async def test_when_every_attempt_fails_the_last_failure_is_the_outcome() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, clock=clock).wrap(upstream)
    call = asyncio.create_task(service(Request("GET", URL)))
    await settle()
    clock.advance(0.1)
    await settle()
    upstream.answer(1, status=502)
    await settle()
    assert not call.done()  # the first attempt is still running: it may yet answer well
    upstream.answer(0, status=503)
    response = await call
    assert (response.status_code, response.content) == (503, b"0")
    error_call = asyncio.create_task(service(Request("GET", URL)))
    await settle()
    upstream.fail(2, TransportError("refused"))
    await settle()
    upstream.fail(3, TransportError("refused again"))
    with pytest.raises(TransportError, match="refused again"):
        await error_call


async def test_max_hedges_spaces_the_hedges_by_the_delay() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, max_hedges=2, clock=clock).wrap(upstream)
    call = asyncio.create_task(service(Request("GET", URL)))
    for expected in (1, 2, 3, 3):
        await settle()
        assert len(upstream.attempts) == expected
        clock.advance(0.1)
    await settle()
    upstream.answer(0)  # the first attempt may still win
    assert (await call).content == b"0"
    assert sorted(upstream.cancelled) == [1, 2]


async def test_cancelling_the_call_cancels_every_attempt() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, clock=clock).wrap(upstream)
    call = asyncio.create_task(service(Request("GET", URL)))
    await settle()
    clock.advance(0.1)
    await settle()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert sorted(upstream.cancelled) == [0, 1]


async def test_a_learned_delay_warms_up_then_follows_the_percentile() -> None:
    clock = ManualClock()
    layer = HedgeLayer("p50", min_samples=4, window=4, clock=clock)

    async def upstream(request: Request) -> Response:
        await clock.sleep(float(request.extensions["takes"]))
        return Response(200, request=request)

    service = layer.wrap(upstream)

    async def timed(takes: float) -> None:
        call = asyncio.create_task(service(Request("GET", URL, extensions={"takes": takes})))
        while not call.done():
            await settle()
            clock.advance(0.01)
        await call

    for takes in (0.1, 0.2, 0.3):
        await timed(takes)
        assert layer.current_delay() is None  # warming up: no hedge, but timed
    await timed(0.4)
    assert layer.current_delay() == pytest.approx(0.2)
    for _ in range(4):  # the window holds the last 4: the old ones fall out
        await timed(0.05)
    assert layer.current_delay() == pytest.approx(0.05)


def test_latency_percentile_is_bounded_and_nearest_rank() -> None:
    p = LatencyPercentile(0.9, window=10, min_samples=3)
    p.add(1.0)
    p.add(2.0)
    assert p.value() is None
    for i in range(100):
        p.add(float(i))
    assert p.count == 10
    assert p.value() == 98.0  # the 9th of 90..99


# -- the real local server, on every transport ------------------------------------------

TRANSPORTS = ("httpx", "aiohttp", "pyreqwest")


class Transports:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.made: list[Any] = []

    def pooled(self, size: int) -> Any:
        """A transport whose client holds at most ``size`` connections."""
        if self.kind == "httpx":
            made = lamina.transports.HttpxTransport(
                limits=httpx.Limits(max_connections=size), max_in_flight=None
            )
        elif self.kind == "pyreqwest":
            made = lamina.transports.PyreqwestTransport(max_connections=size, max_in_flight=None)
        else:
            made = lamina.transports.AiohttpTransport(
                connector=aiohttp.TCPConnector(limit=size), max_in_flight=None
            )
        self.made.append(made)
        return made


@pytest.fixture(params=TRANSPORTS)
async def transports(request: pytest.FixtureRequest) -> AsyncIterator[Transports]:
    made = Transports(request.param)
    yield made
    for transport in made.made:
        await transport.aclose()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.kind == kind), key=lambda s: s.start_time or 0)


def stack(transport: Any, layer: HedgeLayer, provider: TracerProvider | None = None) -> Any:
    """Call tracing, the hedge, then per attempt a timeout (pyreqwest ends a cancelled
    request by its own timeout) and a CLIENT span."""
    builder = ServiceBuilder()
    if provider is not None:
        builder = builder.layer(CallTracingLayer(tracer_provider=provider))
    builder = builder.layer(layer).layer(TimeoutLayer(1.0))
    if provider is not None:
        builder = builder.layer(TracingLayer(tracer_provider=provider))
    return builder.service(transport)


async def test_real_server_a_hedge_wins_with_its_own_client_span(
    lamina_server: LocalServer,
    transports: Transports,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    key = f"/slow-some/span-{transports.kind}"
    service = stack(transports.pooled(4), HedgeLayer(0.05), provider)
    async with asyncio.timeout(5):
        response = await service(
            Request("GET", lamina_server.url_for(f"{key}?first=1&slow_ms=3000"), endpoint="u")
        )
    assert response.json() == {"arrival": 2, "slow": False}
    assert lamina_server.hits(key) == 2
    spans = exporter.get_finished_spans()
    (call,) = by_kind(spans, SpanKind.INTERNAL)
    first, hedge = by_kind(spans, SpanKind.CLIENT)
    for span in (first, hedge):
        assert span.parent is not None
        assert span.parent.span_id == call.context.span_id
    assert (first.attributes or {}).get("lamina.cancelled") is True
    assert (hedge.attributes or {})["http.response.status_code"] == 200
    assert [e.name for e in call.events] == ["hedge.sent", "hedge.won"]


async def test_real_server_a_cancelled_hedge_leaves_a_pool_of_one_usable(
    lamina_server: LocalServer, transports: Transports
) -> None:
    key = f"/slow-some/one-{transports.kind}"
    pool = transports.pooled(1)
    service = stack(pool, HedgeLayer(0.03))
    # a cancelled pyreqwest hedge may still take the connection when the first attempt
    # gives it back, and keep it until its own timeout (1 s and a grace): the next calls
    # must be able to wait that long (with 1 s of their own they failed now and then)
    after = ServiceBuilder().layer(TimeoutLayer(3.0)).service(pool)
    async with asyncio.timeout(8):
        # the first attempt holds the only connection; the hedge waits for it, then loses
        response = await service(
            Request("GET", lamina_server.url_for(f"{key}?first=1&slow_ms=150"))
        )
        # the first attempt wins, unless a loaded machine made it outlive its 1 s timeout
        # (then the hedge, sent when the connection came back, answers): either way one
        # answer, and the pool must be usable after
        assert response.json()["arrival"] in (1, 2)
        for _ in range(3):
            again = await after(Request("GET", lamina_server.url_for("/json")))
            assert again.status_code == 200


async def test_real_server_a_cancelled_attempt_gives_its_connection_back(
    lamina_server: LocalServer, transports: Transports
) -> None:
    pool = transports.pooled(2)
    loop = asyncio.get_running_loop()
    attempt_timeout = 0.5
    if transports.kind == "pyreqwest":
        from lamina.transports.pyreqwest import GRACE

        # a cancelled pyreqwest request runs on until its own timeout (the attempt's,
        # plus a grace): the connection comes back then
        service = ServiceBuilder([HedgeLayer(0.03), TimeoutLayer(attempt_timeout)]).service(pool)
        # the loser's connection is back once its timeout has passed; the next round
        # waits for that, so its hedge is not racing it (with a 1 s timeout on both, the
        # hedge waited ~0.95 s for the pool and had 45 ms left to be answered: a loaded
        # machine failed it)
        released_after = attempt_timeout + GRACE + 0.05
    else:
        # no timeout at all: only the cancellation can give the connection back
        service = HedgeLayer(0.03).wrap(pool)
        released_after = 0.0
    async with asyncio.timeout(10):  # a hang detector, not a measure
        for round_ in range(3):
            # each round's first attempt hangs (30 s) and loses: had it kept its
            # connection, the next round's hedge would find none left in the pool of two
            key = f"/slow-some/two-{transports.kind}-{round_}"
            started = loop.time()
            response = await service(
                Request("GET", lamina_server.url_for(f"{key}?first=1&slow_ms=30000"))
            )
            assert response.json() == {"arrival": 2, "slow": False}
            await asyncio.sleep(max(0.0, started + released_after - loop.time()))


async def test_real_server_a_post_is_sent_once(
    lamina_server: LocalServer, transports: Transports
) -> None:
    key = f"/slow-some/post-{transports.kind}"
    service = stack(transports.pooled(2), HedgeLayer(0.02))
    async with asyncio.timeout(5):
        response = await service(
            Request("POST", lamina_server.url_for(f"{key}?first=1&slow_ms=200"), json={})
        )
    assert response.json()["arrival"] == 1
    assert lamina_server.hits(key) == 1


# -- review: cancellation during the losers' cleanup, and the call's deadline -----------


async def test_a_second_cancellation_still_waits_for_the_losers_and_collects_their_errors() -> None:
    clock = ManualClock()
    finished: list[int] = []
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))

    async def upstream(request: Request) -> Response:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # a transport closing its connection takes a few turns of the loop, and
            # may end in an error of its own
            for _ in range(5):
                await asyncio.sleep(0)
            raise TransportError("reset while closing") from None
        finally:
            finished.append(request.extensions.get(HEDGE_KEY, 0))
        raise AssertionError("unreachable")

    service = HedgeLayer(0.1, clock=clock).wrap(upstream)
    try:
        call = asyncio.create_task(service(Request("GET", URL)))
        await settle()
        clock.advance(0.1)
        await settle()
        call.cancel()
        await asyncio.sleep(0)
        call.cancel()  # e.g. an outer timeout, then the task group around it
        with pytest.raises(asyncio.CancelledError):
            await call
        assert sorted(finished) == [0, 1]  # the call ended after its attempts did
        del call
        await settle()
        gc.collect()
        assert unretrieved == []  # no "Task exception was never retrieved"
    finally:
        loop.set_exception_handler(None)


async def test_no_hedge_is_sent_once_the_calls_deadline_has_passed() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, max_hedges=2, clock=clock).wrap(upstream)
    events: list[tuple[str, dict[str, Any]]] = []
    request = recorded(Request("GET", URL, deadline=clock.now() + 0.05), events)
    call = asyncio.create_task(service(request))
    await settle()
    for _ in range(3):
        clock.advance(0.1)
        await settle()
    assert len(upstream.attempts) == 1  # past the deadline: a new attempt is pointless
    assert events == []
    upstream.answer(0)
    assert (await call).content == b"0"


async def test_a_failure_at_the_deadline_is_the_outcome_not_a_hedge_that_cannot_start() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = (
        ServiceBuilder()
        .layer(HedgeLayer(0.5, clock=clock))
        .layer(TimeoutLayer(None, clock=clock))  # refuses an attempt after the deadline
        .service(upstream)
    )
    events: list[tuple[str, dict[str, Any]]] = []
    request = recorded(Request("GET", URL, deadline=clock.now() + 0.1), events)
    call = asyncio.create_task(service(request))
    await settle()
    clock.advance(0.1)
    upstream.fail(0, lamina.TimeoutError("timed out after 0.1s (deadline)"))
    with pytest.raises(lamina.TimeoutError, match=r"timed out after 0\.1s"):
        await call
    assert len(upstream.attempts) == 1
    assert [name for name, _ in events] == []  # no phantom hedge counted


async def test_a_learned_delay_is_learned_per_endpoint() -> None:
    # a flow builds one HedgeLayer for all its endpoints: a fast endpoint's latency
    # must not become a slow endpoint's delay (every slow call would be sent twice)
    clock = ManualClock()
    layer = HedgeLayer("p50", min_samples=4, window=8, clock=clock)
    sent: list[str | None] = []

    async def upstream(request: Request) -> Response:
        sent.append(request.endpoint)
        await clock.sleep({"fast": 0.01, "slow": 0.5}[request.endpoint or ""])
        return Response(200, request=request)

    service = layer.wrap(upstream)

    async def timed(endpoint: str) -> None:
        call = asyncio.create_task(service(Request("GET", URL, endpoint=endpoint)))
        while not call.done():
            await settle()
            clock.advance(0.01)
        await call

    for _ in range(6):
        await timed("fast")
    for _ in range(4):
        await timed("slow")
    sent.clear()
    await timed("slow")
    assert sent == ["slow"]  # not hedged after the fast endpoint's 10 ms
    assert layer.current_delay("fast") == pytest.approx(0.01)
    assert layer.current_delay("slow") == pytest.approx(0.5, abs=0.02)
    assert layer.current_delay() is None  # calls without an endpoint: nothing learned yet


async def test_real_server_cancelling_the_caller_mid_hedge_frees_both_connections(
    lamina_server: LocalServer, transports: Transports
) -> None:
    pool = transports.pooled(2)
    # pyreqwest ends a cancelled request by its own timeout: give the attempts one
    service = (
        stack(pool, HedgeLayer(0.03))
        if transports.kind == "pyreqwest"
        else HedgeLayer(0.03).wrap(pool)
    )
    key = f"/slow-some/caller-{transports.kind}"
    async with asyncio.timeout(10):  # a hang detector, not a measure
        call = asyncio.create_task(
            service(Request("GET", lamina_server.url_for(f"{key}?first=2&slow_ms=30000")))
        )
        # the first attempt and its hedge both hang
        while lamina_server.hits(key) < 2:  # noqa: ASYNC110 - polls the server thread
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # both connections of the pool of two are free again (pyreqwest's once the
        # attempts' own timeouts, 1 s and a grace, have ended them: wait that long)
        after = ServiceBuilder().layer(TimeoutLayer(3.0)).service(pool)
        responses = await asyncio.gather(
            *(after(Request("GET", lamina_server.url_for("/json"))) for _ in range(2))
        )
    assert [r.status_code for r in responses] == [200, 200]


async def test_a_hedges_409_for_an_idempotency_key_in_use_does_not_win() -> None:
    # draft-ietf-httpapi-idempotency-key-header (and Stripe): a request whose key is
    # still being processed is answered 409: that is the first attempt, not an answer
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, clock=clock).wrap(upstream)
    call = asyncio.create_task(
        service(Request("POST", URL, headers={"Idempotency-Key": "k"}, json={}))
    )
    await settle()
    clock.advance(0.1)
    await settle()
    upstream.answer(1, status=409)
    await settle()
    assert not call.done()
    upstream.answer(0)
    assert (await call).content == b"0"


async def test_real_server_a_keyed_post_is_answered_by_its_first_attempt_not_a_409(
    lamina_server: LocalServer, transports: Transports
) -> None:
    key = f"/slow-some/idem-{transports.kind}"
    service = stack(transports.pooled(2), HedgeLayer(0.03))
    async with asyncio.timeout(5):
        response = await service(
            Request(
                "POST",
                lamina_server.url_for(f"{key}?first=1&slow_ms=200"),
                headers={"Idempotency-Key": f"order-{transports.kind}"},
                json={"amount": 1},
            )
        )
    assert lamina_server.hits(key) == 2  # hedged: the hedge was told 409
    assert response.status_code == 200
    assert response.json() == {"arrival": 1, "slow": True}


async def test_no_hedge_is_sent_in_the_last_millisecond_before_the_deadline() -> None:
    # an event loop runs a timer up to its clock resolution early: a deadline timeout
    # may end the first attempt a hair before the deadline
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.5, clock=clock).wrap(upstream)
    call = asyncio.create_task(service(Request("GET", URL, deadline=clock.now() + 0.1)))
    await settle()
    clock.advance(0.0995)
    upstream.fail(0, lamina.TimeoutError("timed out after 0.1s (deadline)"))
    await settle()
    assert len(upstream.attempts) == 1
    with pytest.raises(lamina.TimeoutError, match="deadline"):
        await call


async def test_a_first_attempts_409_does_not_win_once_a_hedge_holds_the_key() -> None:
    # the first attempt can reach the server after its hedge (a slow connection): then
    # it is the one told the key is in use, and the hedge's answer is the call's
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, clock=clock).wrap(upstream)
    call = asyncio.create_task(
        service(Request("POST", URL, headers={"Idempotency-Key": "k"}, json={}))
    )
    await settle()
    clock.advance(0.1)
    await settle()
    upstream.answer(0, status=409)
    await settle()
    assert not call.done()
    upstream.answer(1)
    assert (await call).content == b"1"


async def test_a_409_before_any_hedge_is_the_answer() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, clock=clock).wrap(upstream)
    call = asyncio.create_task(
        service(Request("POST", URL, headers={"Idempotency-Key": "k"}, json={}))
    )
    await settle()
    upstream.answer(0, status=409)  # another call of the caller's holds the key
    assert (await call).status_code == 409
    assert len(upstream.attempts) == 1


# -- when every attempt fails, the error says how many were made ------------------------


async def test_every_attempt_failing_raises_the_last_error_naming_all_the_attempts() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, max_hedges=2, clock=clock).wrap(upstream)
    call = asyncio.create_task(service(Request("GET", URL, endpoint="u")))
    await settle()
    upstream.fail(0, lamina.ConnectError("refused"))
    await settle()
    upstream.answer(1, status=503)  # a failing status counts too
    await settle()
    upstream.fail(2, TransportError("reset"))
    with pytest.raises(TransportError) as info:
        await call
    error = info.value
    assert type(error) is TransportError  # the type users catch today
    assert error.message == (
        "reset; all 3 hedged attempts failed (ConnectError, HTTP 503, TransportError)"
    )
    assert str(error) == error.message  # built without a request: no endpoint, no URL
    assert getattr(error, "hedge_attempts", None) == 3


async def test_a_lone_attempt_that_fails_is_raised_unchanged() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, clock=clock).wrap(upstream)
    deadline = clock.now() + 0.0005  # too close for any hedge
    call = asyncio.create_task(service(Request("GET", URL, deadline=deadline)))
    await settle()
    upstream.fail(0, TransportError("refused"))
    with pytest.raises(TransportError) as info:
        await call
    assert info.value.message == "refused"
    assert getattr(info.value, "hedge_attempts", None) is None


class UpstreamDown(Exception):
    """An error of the user's own, not a lamina error."""


async def test_an_error_outside_lamina_gets_a_note_naming_the_attempts() -> None:
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, clock=clock).wrap(upstream)
    call = asyncio.create_task(service(Request("GET", URL)))
    await settle()
    upstream.fail(0, UpstreamDown("one"))
    await settle()
    upstream.fail(1, UpstreamDown("two"))
    with pytest.raises(UpstreamDown) as info:
        await call
    assert str(info.value) == "two"
    assert info.value.__notes__ == ["all 2 hedged attempts failed (UpstreamDown, UpstreamDown)"]


async def test_real_server_every_attempt_failing_raises_one_error_naming_the_attempts(
    lamina_server: LocalServer, transports: Transports
) -> None:
    from lamina import HTTPStatusError
    from lamina.layers.parse import ParseLayer

    # each attempt raises (the parse layer refuses the 500), so each failure sends the
    # next hedge at once: three attempts, one error
    key = "/status/500"
    service = (
        ServiceBuilder()
        .layer(HedgeLayer(10.0, max_hedges=2))
        .layer(ParseLayer())
        .layer(TimeoutLayer(2.0))
        .service(transports.pooled(4))
    )
    before = lamina_server.hits(key)
    async with asyncio.timeout(10):
        with pytest.raises(HTTPStatusError) as info:
            await service(Request("GET", lamina_server.url_for(key), endpoint="all-fail"))
    assert lamina_server.hits(key) - before == 3
    error = info.value
    assert error.status_code == 500
    assert "all 3 hedged attempts failed (HTTP 500, HTTP 500, HTTP 500)" in str(error)
    assert getattr(error, "hedge_attempts", None) == 3


async def test_the_attempts_summary_carries_no_text_of_the_other_errors() -> None:
    """Only each failure's kind is named: an earlier attempt's error text (here a URL with
    a key, from a library that did not scrub it) never reaches the raised error."""
    clock = ManualClock()
    upstream = Upstream()
    service = HedgeLayer(0.1, clock=clock).wrap(upstream)
    call = asyncio.create_task(service(Request("GET", URL + "?api_key=k3y")))
    await settle()
    upstream.fail(0, lamina.ConnectError("refused by https://h/?api_key=k3y"))
    await settle()
    upstream.fail(1, TransportError("reset"))
    with pytest.raises(TransportError) as info:
        await call
    assert str(info.value) == "reset; all 2 hedged attempts failed (ConnectError, TransportError)"
    assert "k3y" not in repr(info.value)
