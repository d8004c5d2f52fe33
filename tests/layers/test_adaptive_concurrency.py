"""AdaptiveConcurrencyLayer: the controller in virtual time, the layer on the real server."""

from __future__ import annotations

import asyncio
import heapq
import random
import statistics
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

import lamina.transports
from lamina import ConcurrencyLimitExceeded, ConfigError, Request, Response
from lamina._events import listen
from lamina.layers.adaptive_concurrency import AdaptiveConcurrencyLayer
from lamina.testing import LocalServer
from lamina.testing.clock import ManualClock

URL = "http://api.test/x"


def rtt_at(in_flight: int, capacity: int = 8, service: float = 0.010) -> float:
    """What a saturated upstream that serves ``capacity`` at once answers in (Little's law)."""
    return service * max(1.0, in_flight / capacity)


def run_rounds(layer: AdaptiveConcurrencyLayer, clock: ManualClock, rounds: int) -> list[int]:
    """Closed loop with more demand than the limit: each round fills the limit, the calls
    take what the upstream needs for that many, then all finish. Returns the limits."""
    limits = []
    for _ in range(rounds):
        admitted = 0
        while layer.try_acquire():
            admitted += 1
        started = clock.now()
        clock.advance(rtt_at(admitted))
        for _ in range(admitted):
            layer.release()
            layer.observe(started)
        limits.append(layer.current_limit)
    return limits


def run_pipelined(
    layer: AdaptiveConcurrencyLayer,
    clock: ManualClock,
    *,
    seconds: float,
    overhead: float = 0.0,
    jitter: float = 0.0,
    service: float = 0.010,
    capacity: int = 8,
    seed: int = 0,
) -> list[int]:
    """More demand than the limit, each call admitted as soon as a slot frees: it spends
    ``overhead`` outside the upstream (half on the way there, half back; a seeded
    exponential ``jitter`` added on the way there) and ``service`` in an upstream that
    serves ``capacity`` at once, FIFO. Returns the limit sampled every 50 ms."""
    rng = random.Random(seed)
    free = [0.0] * capacity  # when each of the upstream's slots is free next
    finishing: list[tuple[float, int, float]] = []  # (finishes, order, admitted)
    order = 0

    def admit() -> None:
        nonlocal order
        while layer.try_acquire():
            now = clock.now()
            arrives = now + overhead / 2 + (rng.expovariate(1 / jitter) if jitter else 0.0)
            slot = min(range(capacity), key=free.__getitem__)
            free[slot] = max(arrives, free[slot]) + service
            order += 1
            heapq.heappush(finishing, (free[slot] + overhead / 2, order, now))

    limits: list[int] = []
    sample_at = 0.0
    admit()
    while finishing[0][0] <= seconds:
        finishes, _, admitted = heapq.heappop(finishing)
        while sample_at <= finishes:
            limits.append(layer.current_limit)
            sample_at += 0.05
        clock.advance(finishes - clock.now())
        layer.release()
        layer.observe(admitted)
        admit()
    return limits


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"min_limit": 0}, "min_limit"),
        ({"min_limit": 10, "max_limit": 5}, "max_limit"),
        ({"interval": 0}, "interval"),
        ({"percentile": 0}, "percentile"),
        ({"percentile": 1.5}, "percentile"),
        ({"buffer": -0.1}, "buffer"),
        ({"min_rtt_interval": "60"}, "min_rtt_interval"),
        ({"min_rtt_samples": 0}, "min_rtt_samples"),
        ({"max_wait": -1}, "max_wait"),
        ({"random": 42}, "random"),  # a seed where a Random is due: it failed at run time
        ({"clock": 5}, "clock"),  # accepted, then failed mid-call
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        AdaptiveConcurrencyLayer(**options)
    assert info.value.field == field


def test_it_measures_min_rtt_at_the_minimum_limit_first() -> None:
    clock = ManualClock()
    layer = AdaptiveConcurrencyLayer(clock=clock)
    assert layer.current_limit == 3
    assert layer.min_rtt is None
    limits = run_rounds(layer, clock, 8)  # 3 calls a round: 25 samples after 9 rounds
    assert limits == [3] * 8
    assert layer.min_rtt is None
    run_rounds(layer, clock, 1)
    assert layer.min_rtt == pytest.approx(0.010)


def test_the_limit_settles_between_4_and_16_against_an_upstream_of_8() -> None:
    clock = ManualClock()
    layer = AdaptiveConcurrencyLayer(clock=clock)
    limits = run_rounds(layer, clock, 400)  # about 5 s of virtual time
    settled = limits[-200:]
    assert all(4 <= limit <= 16 for limit in settled)
    # the fixed point of L = 10 + sqrt(10): the upstream's 8 plus a small queue
    assert statistics.median(settled) == 13
    assert max(limits) <= 16  # it never overshot on the way up


def test_latency_outside_the_upstream_keeps_the_limit_inside_16() -> None:
    # 2 ms of the round trip outside the upstream (a client's own work, the network) and
    # up to a few ms of jitter: what the real transports add to the local server's 10 ms.
    # More calls fit in flight (Little's law: 8 x 12 / 10, plus the buffer and headroom),
    # so the fixed point is higher than against the ideal upstream above: the limit must
    # not creep past it (a fractional limit carried from look to look did, to 17).
    settled = []
    for seed in range(8):
        clock = ManualClock()
        layer = AdaptiveConcurrencyLayer(clock=clock, random=random.Random(seed))
        limits = run_pipelined(layer, clock, seconds=10, overhead=0.002, jitter=0.002, seed=seed)
        settled += limits[100:]  # the second half
    assert statistics.median(settled) == 15
    assert min(settled) >= 14
    assert max(settled) == 16


def test_a_min_rtt_measured_in_a_slow_moment_is_lowered_by_quicker_answers() -> None:
    # the probe ran while the upstream (or the machine) was slow: 30 ms; then 10 ms. With
    # that min_rtt the gradient took 3x the upstream's latency as unloaded, and the limit
    # settled near 30 + sqrt(30), 35 (a loaded test machine saw 77 against 40 callers).
    clock = ManualClock()
    layer = AdaptiveConcurrencyLayer(clock=clock)
    for _ in range(9):  # the probe: 3 calls a round, 27 samples
        assert run_rounds_at(layer, clock, 0.030) == 3
    assert layer.min_rtt == pytest.approx(0.030)
    limits = run_rounds(layer, clock, 400)
    assert layer.min_rtt == pytest.approx(0.010)
    assert statistics.median(limits[-200:]) == 13
    assert max(limits) <= 16


def run_rounds_at(layer: AdaptiveConcurrencyLayer, clock: ManualClock, rtt: float) -> int:
    """One round of calls filling the limit, each answering in ``rtt``; returns how many."""
    admitted = 0
    while layer.try_acquire():
        admitted += 1
    started = clock.now()
    clock.advance(rtt)
    for _ in range(admitted):
        layer.release()
        layer.observe(started)
    return admitted


def test_the_limit_grows_while_latency_stays_at_min_rtt() -> None:
    clock = ManualClock()
    layer = AdaptiveConcurrencyLayer(clock=clock, max_limit=200)
    for _ in range(200):
        admitted = 0
        while layer.try_acquire():
            admitted += 1
        started = clock.now()
        clock.advance(0.010)  # an upstream with room for everything
        for _ in range(admitted):
            layer.release()
            layer.observe(started)
    assert layer.current_limit == 200


def test_the_limit_does_not_grow_when_the_callers_do_not_use_it() -> None:
    clock = ManualClock()
    layer = AdaptiveConcurrencyLayer(clock=clock)
    # settled first: at 40 rounds the limit was still growing, and a look over the change
    # to one call at a time still saw a round at the old limit among its samples
    run_rounds(layer, clock, 200)
    before = layer.current_limit
    assert before == 13
    for _ in range(100):  # one call at a time: no evidence that more would be fine
        assert layer.try_acquire()
        started = clock.now()
        clock.advance(0.010)
        layer.release()
        layer.observe(started)
    assert layer.current_limit == before


def test_min_rtt_is_measured_again_with_the_limit_pinned_low() -> None:
    clock = ManualClock()
    layer = AdaptiveConcurrencyLayer(clock=clock, min_rtt_interval=2.0, random=random.Random(1))
    limits = run_rounds(layer, clock, 300)
    assert layer.min_rtt == pytest.approx(0.010)
    probe = [i for i, limit in enumerate(limits) if i > 20 and limit == 3]
    assert probe  # pinned to min_limit at least once after the first measurement
    assert all(4 <= limit <= 16 for limit in limits[probe[-1] + 15 :])


def test_a_slower_upstream_lowers_the_limit() -> None:
    clock = ManualClock()
    layer = AdaptiveConcurrencyLayer(clock=clock)
    run_rounds(layer, clock, 200)
    assert layer.current_limit == 13
    for _ in range(100):  # the upstream now serves 4 at once
        admitted = 0
        while layer.try_acquire():
            admitted += 1
        started = clock.now()
        clock.advance(rtt_at(admitted, capacity=4))
        for _ in range(admitted):
            layer.release()
            layer.observe(started)
    assert layer.current_limit < 10


class Gate:
    def __init__(self) -> None:
        self.waiting: list[asyncio.Future[None]] = []

    async def __call__(self, request: Request) -> Response:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        await future
        return Response(200, request=request)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_call_over_the_limit_is_shed_with_a_typed_error_and_an_event() -> None:
    gate = Gate()
    layer = AdaptiveConcurrencyLayer(clock=ManualClock())
    service = layer.wrap(gate)
    calls = [asyncio.create_task(service(Request("GET", URL, endpoint="e"))) for _ in range(3)]
    await settle()
    assert layer.in_flight == 3
    events: list[tuple[str, dict[str, Any]]] = []

    def listener(name: str, attributes: Mapping[str, Any]) -> None:
        events.append((name, dict(attributes)))

    with pytest.raises(ConcurrencyLimitExceeded, match="adaptive concurrency limit 3"):
        await layer.wrap(gate)(listen(Request("GET", URL), listener))
    assert events == [("adaptive.rejected", {"limit": 3, "in_flight": 3})]
    for future in gate.waiting:
        future.set_result(None)
    await asyncio.gather(*calls)
    assert layer.in_flight == 0


async def test_without_max_wait_a_call_with_a_deadline_is_shed_too() -> None:
    gate = Gate()
    clock = ManualClock()
    layer = AdaptiveConcurrencyLayer(clock=clock)
    service = layer.wrap(gate)
    calls = [asyncio.create_task(service(Request("GET", URL))) for _ in range(3)]
    await settle()
    with pytest.raises(ConcurrencyLimitExceeded):
        await service(Request("GET", URL, deadline=clock.now() + 10))
    assert layer.waiting == 0
    for future in gate.waiting:
        future.set_result(None)
    await asyncio.gather(*calls)


async def test_a_queued_call_waits_no_longer_than_its_deadline() -> None:
    gate = Gate()
    # the deadline on a clock that stands still: the wait it leaves is exactly 0.05 s
    # (on the loop's clock, a loaded machine could use up 10 ms before the call)
    clock = ManualClock()
    layer = AdaptiveConcurrencyLayer(max_wait=30.0, clock=clock)
    service = layer.wrap(gate)
    calls = [asyncio.create_task(service(Request("GET", URL))) for _ in range(3)]
    await settle()
    with pytest.raises(ConcurrencyLimitExceeded, match=r"after waiting 0\.05s"):
        await service(Request("GET", URL, deadline=clock.now() + 0.05))
    assert layer.waiting == 0
    for future in gate.waiting:
        future.set_result(None)
    await asyncio.gather(*calls)


async def test_with_max_wait_a_call_queues_for_a_slot() -> None:
    gate = Gate()
    layer = AdaptiveConcurrencyLayer(max_wait=5.0)
    service = layer.wrap(gate)
    calls = [asyncio.create_task(service(Request("GET", URL))) for _ in range(4)]
    await settle()
    assert (layer.in_flight, layer.waiting) == (3, 1)
    gate.waiting[0].set_result(None)
    await settle()
    assert (layer.in_flight, layer.waiting) == (3, 0)  # the slot went to the waiter
    for future in gate.waiting[1:]:
        future.set_result(None)
    await asyncio.gather(*calls)
    assert layer.in_flight == 0


async def test_a_queued_call_gives_up_after_max_wait() -> None:
    gate = Gate()
    layer = AdaptiveConcurrencyLayer(max_wait=0.01)
    service = layer.wrap(gate)
    calls = [asyncio.create_task(service(Request("GET", URL))) for _ in range(3)]
    await settle()
    with pytest.raises(ConcurrencyLimitExceeded, match=r"after waiting 0\.01s"):
        await service(Request("GET", URL))
    assert layer.waiting == 0
    for future in gate.waiting:
        future.set_result(None)
    await asyncio.gather(*calls)


async def test_slots_are_released_on_error_and_cancellation() -> None:
    layer = AdaptiveConcurrencyLayer(clock=ManualClock())

    async def failing(request: Request) -> Response:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await layer.wrap(failing)(Request("GET", URL))
    assert layer.in_flight == 0
    gate = Gate()
    call = asyncio.create_task(layer.wrap(gate)(Request("GET", URL)))
    await settle()
    assert layer.in_flight == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert layer.in_flight == 0


# -- the real local server, on every transport ------------------------------------------


@pytest.fixture(params=["httpx", "aiohttp", "pyreqwest"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    name = {"httpx": "HttpxTransport", "aiohttp": "AiohttpTransport"}.get(
        request.param, "PyreqwestTransport"
    )
    made = getattr(lamina.transports, name)()
    yield made
    await made.aclose()


async def test_real_server_the_limit_converges_into_range(
    lamina_server: LocalServer, transport: Any
) -> None:
    # an upstream of 20 ms (a loaded test machine adds a few ms of its own) and a
    # controller that looks every 100 ms: a call's latency (20-40 ms at the limits this
    # settles to) is well inside one interval, so each look sees the limit it set (with
    # 40 ms calls and 50 ms looks, the feedback lagged a look behind and the limit swung
    # past 16 on a quiet machine); 10 calls probe min_rtt, to settle soon
    layer = AdaptiveConcurrencyLayer(interval=0.1, min_rtt_samples=10)
    service = layer.wrap(transport)
    url = lamina_server.url_for(f"/capacity/converge-{id(layer)}?limit=8&service_ms=20")
    limits: list[int] = []
    stop = asyncio.Event()

    async def caller() -> None:
        while not stop.is_set():
            try:
                await service(Request("GET", url))
            except ConcurrencyLimitExceeded:
                await asyncio.sleep(0.01)

    callers = [asyncio.create_task(caller()) for _ in range(40)]
    for _ in range(150):  # samples 12 ms apart while the callers run
        await asyncio.sleep(0.012)
        limits.append(layer.current_limit)
    stop.set()
    await asyncio.gather(*callers)
    assert layer.min_rtt is not None
    # The target range (4-16) is measured by benchmarks/adaptive_concurrency.py and checked
    # exactly in virtual time above; on a loaded machine, httpx's own CPU per call keeps
    # the measured latency up and the limit lower, so here: settled, bounded, not collapsed.
    # A min_rtt probe that a stalled machine slowed reads the upstream as slower than it
    # is (the limit then settles higher, about 13 x min_rtt / 20 ms: Envoy's controller
    # too, until its next probe): bounded by that, and by 16 when the probe saw ~20 ms.
    settled = limits[75:]
    print(f"limits over the second half: median {statistics.median(settled)}, {settled}")
    slowed = max(1.0, layer.min_rtt / 0.025)  # 20 ms upstream + a few ms of the client's
    assert 3 <= statistics.median(settled) <= 16 * slowed, (layer.min_rtt, settled)
    assert layer.in_flight == 0


# -- review: one layer for several endpoints (a flow builds one for all of them) ---------


async def test_per_endpoint_gives_each_endpoint_its_own_limit() -> None:
    gate = Gate()
    shared = AdaptiveConcurrencyLayer(clock=ManualClock())
    apart = AdaptiveConcurrencyLayer(clock=ManualClock(), per_endpoint=True)
    calls = [
        asyncio.create_task(layer.wrap(gate)(Request("GET", URL, endpoint="busy")))
        for layer in (shared, apart)
        for _ in range(3)
    ]
    await settle()
    with pytest.raises(ConcurrencyLimitExceeded):
        await shared.wrap(gate)(Request("GET", URL, endpoint="other"))
    other = asyncio.create_task(apart.wrap(gate)(Request("GET", URL, endpoint="other")))
    await settle()
    assert apart.for_endpoint("busy").in_flight == 3
    assert apart.for_endpoint("other").in_flight == 1
    assert shared.for_endpoint("other") is shared
    for future in gate.waiting:
        future.set_result(None)
    await asyncio.gather(*calls, other)
    assert apart.for_endpoint("busy").in_flight == 0
    assert "busy" in repr(apart)


def test_per_endpoint_must_be_a_flag() -> None:
    with pytest.raises(ConfigError) as info:
        AdaptiveConcurrencyLayer(per_endpoint="yes")
    assert info.value.field == "per_endpoint"
