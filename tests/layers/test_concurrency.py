import asyncio
import random
import threading
import time
from typing import Any

import pytest

from lamina import (
    ConcurrencyLimitExceeded,
    ConfigError,
    HttpxTransport,
    Request,
    Response,
    Service,
    TimeoutError,
    service_fn,
)
from lamina.layers.concurrency import ConcurrencyLimitLayer
from lamina.testing import LocalServer
from lamina.testing.server import RecordedRequest

URL = "http://api.test/x"


class Gate:
    """An inner service whose calls block until the test lets each one finish."""

    def __init__(self) -> None:
        self.running: dict[str, asyncio.Future[None]] = {}
        self.started: list[str] = []
        self.peak = 0

    async def __call__(self, request: Request) -> Response:
        name = str(request.extensions["name"])
        self.started.append(name)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.running[name] = future
        self.peak = max(self.peak, len(self.running))
        try:
            await future
        finally:
            del self.running[name]
        return Response(200, request=request)

    def finish(self, name: str, error: Exception | None = None) -> None:
        future = self.running[name]
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def call(svc: Service, name: str, **kw: Any) -> asyncio.Task[Response]:
    return asyncio.create_task(svc(Request("GET", URL, extensions={"name": name}, **kw)))


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_limits_and_queues_in_fifo_order() -> None:
    gate = Gate()
    layer = ConcurrencyLimitLayer(3)
    svc = layer.wrap(gate)
    tasks = [call(svc, f"t{i}") for i in range(10)]
    await settle()
    assert gate.started == ["t0", "t1", "t2"]
    assert (layer.in_flight, layer.waiting) == (3, 7)
    assert "in_flight=3" in repr(layer)
    assert "waiting=7" in repr(layer)
    while gate.running:
        gate.finish(min(gate.running, key=gate.started.index))
        await settle()
    await asyncio.gather(*tasks)
    assert gate.started == [f"t{i}" for i in range(10)]
    assert gate.peak == 3
    assert (layer.in_flight, layer.waiting) == (0, 0)


async def test_a_freed_slot_goes_to_the_queue_not_to_a_newcomer() -> None:
    gate = Gate()
    layer = ConcurrencyLimitLayer(1)
    svc = layer.wrap(gate)
    first, second = call(svc, "a"), call(svc, "b")
    await settle()
    gate.finish("a")
    await first
    assert not layer.try_acquire()  # "b" owns the slot even before it runs
    await settle()
    assert gate.started == ["a", "b"]
    gate.finish("b")
    await second
    assert layer.in_flight == 0


async def test_released_on_error() -> None:
    gate = Gate()
    layer = ConcurrencyLimitLayer(1)
    task = call(layer.wrap(gate), "a")
    await settle()
    gate.finish("a", RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        await task
    assert layer.in_flight == 0


async def test_cancelled_waiter_neither_leaks_nor_steals() -> None:
    gate = Gate()
    layer = ConcurrencyLimitLayer(1)
    svc = layer.wrap(gate)
    a, b, c = call(svc, "a"), call(svc, "b"), call(svc, "c")
    await settle()
    b.cancel()
    await settle()
    assert (layer.in_flight, layer.waiting) == (1, 1)
    gate.finish("a")
    await settle()
    assert gate.started == ["a", "c"]
    gate.finish("c")
    await asyncio.gather(a, c)
    assert b.cancelled()
    assert (layer.in_flight, layer.waiting) == (0, 0)


async def test_waiter_cancelled_right_after_being_handed_a_slot_passes_it_on() -> None:
    gate = Gate()
    layer = ConcurrencyLimitLayer(1)
    svc = layer.wrap(gate)
    assert layer.try_acquire()  # the test holds the only slot
    b, c = call(svc, "b"), call(svc, "c")
    await settle()
    layer.release()  # hands the slot to b, which has not resumed yet...
    b.cancel()  # ...and is cancelled before it can use it
    await settle()
    assert b.cancelled()
    assert gate.started == ["c"]
    assert (layer.in_flight, layer.waiting) == (1, 0)
    gate.finish("c")
    await c
    assert (layer.in_flight, layer.waiting) == (0, 0)


async def test_cancelled_while_running_releases() -> None:
    gate = Gate()
    layer = ConcurrencyLimitLayer(1)
    svc = layer.wrap(gate)
    a, b = call(svc, "a"), call(svc, "b")
    await settle()
    a.cancel()
    await settle()
    assert gate.started == ["a", "b"]
    gate.finish("b")
    await b
    assert layer.in_flight == 0


@pytest.mark.parametrize("seed", range(6))
async def test_accounting_with_50_tasks_and_random_cancellations(seed: int) -> None:
    rng = random.Random(seed)
    limit = 4
    gate = Gate()
    layer = ConcurrencyLimitLayer(limit)
    svc = layer.wrap(gate)
    tasks = {f"t{i}": call(svc, f"t{i}") for i in range(50)}
    cancelled: set[str] = set()
    while True:
        await settle()
        assert len(gate.running) <= limit
        assert layer.in_flight <= limit
        alive = [n for n, t in tasks.items() if not t.done()]
        if not alive:
            break
        victim = rng.choice(alive)
        action = rng.random()
        if action < 0.3:  # cancel anyone: queued, just handed a slot, or running
            tasks[victim].cancel()
            cancelled.add(victim)
        elif gate.running:
            gate.finish(rng.choice(sorted(gate.running)))
    results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    for name, result in zip(tasks, results, strict=True):
        if name in cancelled:
            assert isinstance(result, asyncio.CancelledError | Response)
        else:
            assert isinstance(result, Response)
    assert gate.peak == limit
    assert (layer.in_flight, layer.waiting) == (0, 0)
    # the slot count is intact: `limit` calls can run again at once
    assert all(layer.try_acquire() for _ in range(limit))
    assert not layer.try_acquire()


async def test_max_waiting_rejects_at_once() -> None:
    gate = Gate()
    layer = ConcurrencyLimitLayer(1, max_waiting=1)
    svc = layer.wrap(gate)
    a, b = call(svc, "a"), call(svc, "b")
    await settle()
    secret = "sk-live-0123456789"
    request = Request(
        "GET",
        f"{URL}?token={secret}",
        headers={"Authorization": f"Bearer {secret}"},
        endpoint="users",
        extensions={"name": "c"},
    )
    with pytest.raises(ConcurrencyLimitExceeded) as info:
        await svc(request)
    assert info.value.endpoint == "users"
    assert "max_waiting=1" in str(info.value)
    assert secret not in str(info.value)
    assert secret not in repr(layer)
    assert gate.started == ["a"]
    gate.finish("a")
    await settle()
    gate.finish("b")
    await asyncio.gather(a, b)


async def test_max_waiting_zero_never_queues() -> None:
    gate = Gate()
    layer = ConcurrencyLimitLayer(2, max_waiting=0)
    svc = layer.wrap(gate)
    a, b = call(svc, "a"), call(svc, "b")
    await settle()
    with pytest.raises(ConcurrencyLimitExceeded):
        await svc(Request("GET", URL, extensions={"name": "c"}))
    gate.finish("a")
    gate.finish("b")
    await asyncio.gather(a, b)
    assert layer.in_flight == 0


async def test_one_layer_is_one_pool_for_many_stacks() -> None:
    gate_a, gate_b = Gate(), Gate()
    shared = ConcurrencyLimitLayer(2)
    users, orders = shared.wrap(gate_a), shared.wrap(gate_b)
    tasks = [call(users, "u1"), call(orders, "o1"), call(users, "u2")]
    await settle()
    assert gate_a.started == ["u1"]
    assert gate_b.started == ["o1"]
    assert shared.waiting == 1
    gate_b.finish("o1")
    await settle()
    assert gate_a.started == ["u1", "u2"]
    gate_a.finish("u1")
    gate_a.finish("u2")
    await asyncio.gather(*tasks)


@pytest.mark.looptime
@pytest.mark.timeout(5)
async def test_queued_call_gives_up_at_its_deadline() -> None:
    loop = asyncio.get_running_loop()
    gate = Gate()
    layer = ConcurrencyLimitLayer(1)
    svc = layer.wrap(gate)
    holder = call(svc, "a")
    await settle()
    start = loop.time()
    with pytest.raises(TimeoutError, match="concurrency slot") as info:
        await svc(Request("GET", URL, deadline=start + 2.0, extensions={"name": "b"}))
    assert loop.time() - start == pytest.approx(2.0)
    assert info.value.request_sent is False
    assert layer.waiting == 0
    with pytest.raises(TimeoutError):  # already past: fails without queueing
        await svc(Request("GET", URL, deadline=loop.time() - 1, extensions={"name": "c"}))
    gate.finish("a")
    await holder
    assert layer.in_flight == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((0,), {}, "max_concurrent"),
        ((-1,), {}, "max_concurrent"),
        ((1.5,), {}, "max_concurrent"),
        ((True,), {}, "max_concurrent"),
        ((2,), {"max_waiting": -1}, "max_waiting"),
        ((2,), {"max_waiting": 1.0}, "max_waiting"),
    ],
)
def test_config_errors(args: tuple[Any, ...], kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ConcurrencyLimitLayer(*args, **kwargs)
    assert info.value.field == field


# -- against the real server ---------------------------------------------------------------


async def _server_peak(server: LocalServer, prefix: str, limit: int | None) -> int:
    """Send 6 concurrent 200 ms calls; return how many the server had in progress at once.
    (With 50 ms calls, a loaded machine could send the second one after the first ended.)"""
    finished: dict[str, float] = {}
    lock = threading.Lock()

    def handler(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        with lock:
            finished[req.query["id"]] = time.monotonic()
        return 200, {"id": req.query["id"]}, {}

    server.route(prefix, handler)
    async with HttpxTransport() as transport:
        svc: Service = transport if limit is None else ConcurrencyLimitLayer(limit).wrap(transport)
        responses = await asyncio.gather(
            *(svc(Request("GET", server.url_for(f"{prefix}x?ms=200&id={i}"))) for i in range(6))
        )
    assert [r.status_code for r in responses] == [200] * 6
    events: list[tuple[float, int]] = []
    for req in server.requests(f"{prefix}x"):
        events += [(req.arrived, 1), (finished[req.query["id"]], -1)]
    peak = current = 0
    for _, step in sorted(events):
        current += step
        peak = max(peak, current)
    return peak


async def test_real_server_never_sees_more_than_the_limit(lamina_server: LocalServer) -> None:
    assert await _server_peak(lamina_server, "/bulkhead-2/", limit=2) == 2


async def test_real_server_control_without_limit(lamina_server: LocalServer) -> None:
    # shows the measurement above can fail: unbounded, the six calls overlap
    assert await _server_peak(lamina_server, "/bulkhead-none/", limit=None) > 2


async def test_real_server_counted_in_the_inner_service(lamina_server: LocalServer) -> None:
    in_flight = peak = 0
    async with HttpxTransport() as transport:

        async def counting(request: Request) -> Response:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await transport(request)
            finally:
                in_flight -= 1

        svc = ConcurrencyLimitLayer(2).wrap(service_fn(counting))
        url = lamina_server.url_for("/json?ms=20")
        await asyncio.gather(*(svc(Request("GET", url)) for _ in range(6)))
    assert peak == 2
    assert lamina_server.hits("/json") == 6
