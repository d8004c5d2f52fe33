import asyncio
import builtins
import contextlib

import pytest

from lamina import ConfigError, HttpxTransport, Request, Response, ServiceBuilder, TimeoutError
from lamina.layers import TimeoutLayer
from lamina.testing import LocalServer, ManualClock


async def slow(request: Request) -> Response:
    await asyncio.sleep(10)
    return Response(200, request=request)


@pytest.mark.looptime
@pytest.mark.timeout(5)
async def test_attempt_timeout_in_virtual_time() -> None:
    loop = asyncio.get_running_loop()
    svc = ServiceBuilder().layer(TimeoutLayer(2.0)).service(slow)
    start = loop.time()
    with pytest.raises(TimeoutError) as info:
        await svc(Request("GET", "http://x/", endpoint="ep"))
    assert loop.time() - start == pytest.approx(2.0)
    assert info.value.timeout == 2.0
    assert info.value.endpoint == "ep"
    assert isinstance(info.value, builtins.TimeoutError)


@pytest.mark.looptime
@pytest.mark.timeout(5)
async def test_deadline_wins_when_sooner() -> None:
    loop = asyncio.get_running_loop()
    svc = ServiceBuilder().layer(TimeoutLayer(5.0)).service(slow)
    start = loop.time()
    with pytest.raises(TimeoutError, match="deadline"):
        await svc(Request("GET", "http://x/", deadline=start + 0.5))
    assert loop.time() - start == pytest.approx(0.5)


@pytest.mark.looptime
@pytest.mark.timeout(5)
async def test_timeout_wins_when_sooner_than_deadline() -> None:
    loop = asyncio.get_running_loop()
    svc = ServiceBuilder().layer(TimeoutLayer(1.0)).service(slow)
    start = loop.time()
    with pytest.raises(TimeoutError, match="attempt timeout"):
        await svc(Request("GET", "http://x/", deadline=start + 30))
    assert loop.time() - start == pytest.approx(1.0)


async def test_passed_deadline_fails_without_calling() -> None:
    calls = 0

    async def inner(request: Request) -> Response:
        nonlocal calls
        calls += 1
        return Response(200)

    clock = ManualClock(start=100.0)
    svc = TimeoutLayer(1.0, clock=clock).wrap(inner)
    with pytest.raises(TimeoutError) as info:
        await svc(Request("GET", "http://x/", deadline=99.0))
    assert info.value.request_sent is False
    assert calls == 0


async def test_inner_timeout_error_is_not_rewrapped() -> None:
    async def inner(request: Request) -> Response:
        raise builtins.TimeoutError("from inside")

    svc = TimeoutLayer(5.0).wrap(inner)
    with pytest.raises(builtins.TimeoutError, match="from inside"):
        await svc(Request("GET", "http://x/"))


@pytest.mark.looptime
@pytest.mark.timeout(5)
async def test_outer_cancel_is_not_turned_into_a_timeout() -> None:
    svc = TimeoutLayer(5.0).wrap(slow)
    task = asyncio.create_task(svc(Request("GET", "http://x/")))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


@pytest.mark.looptime
@pytest.mark.timeout(5)
async def test_outer_timeout_that_fires_first_stays_the_outer_one() -> None:
    svc = TimeoutLayer(5.0).wrap(slow)
    with pytest.raises(builtins.TimeoutError) as info:
        async with asyncio.timeout(1.0):
            await svc(Request("GET", "http://x/"))
    assert not isinstance(info.value, TimeoutError)  # asyncio's own, not lamina's
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


@pytest.mark.looptime
@pytest.mark.timeout(5)
async def test_inner_timeout_inside_a_longer_outer_one() -> None:
    svc = TimeoutLayer(1.0).wrap(slow)
    async with asyncio.timeout(5.0):
        with pytest.raises(TimeoutError):
            await svc(Request("GET", "http://x/"))
        await asyncio.sleep(2.0)  # the outer scope still works and has not fired
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


@pytest.mark.looptime
@pytest.mark.timeout(5)
async def test_timer_is_gone_after_a_fast_call_and_the_task_is_not_cancelled_later() -> None:
    async def fast(request: Request) -> Response:
        return Response(200, request=request)

    svc = TimeoutLayer(1.0).wrap(fast)
    for _ in range(3):
        assert (await svc(Request("GET", "http://x/"))).status_code == 200
    await asyncio.sleep(5.0)  # a leftover timer would cancel this sleep
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


@pytest.mark.looptime
@pytest.mark.timeout(5)
async def test_inner_that_swallows_the_cancel_leaves_the_task_clean() -> None:
    async def stubborn(request: Request) -> Response:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        return Response(200, request=request)

    svc = TimeoutLayer(1.0).wrap(stubborn)
    assert (await svc(Request("GET", "http://x/"))).status_code == 200
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(2.0)  # not cancelled by anything left behind


@pytest.mark.parametrize("bad", [0, -1, "3", float("nan") * 0 - 1])
def test_invalid_timeouts(bad: object) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        TimeoutLayer(bad)  # type: ignore[arg-type]


async def test_real_server_hang_is_cut(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        svc = ServiceBuilder().layer(TimeoutLayer(0.2)).service(transport)
        with pytest.raises(TimeoutError):
            await svc(Request("GET", lamina_server.url_for("/hang"), endpoint="hang"))
        # a slow-but-in-time answer passes
        response = await svc(Request("GET", lamina_server.url_for("/json?ms=20")))
    assert response.status_code == 200
    assert lamina_server.hits("/hang") == 1


async def test_real_server_slow_drip_is_cut(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        svc = TimeoutLayer(0.3).wrap(transport)
        with pytest.raises(TimeoutError):
            await svc(Request("GET", lamina_server.url_for("/drip?bytes=50&interval=50")))


# -- one shared loop timer per layer: each attempt still ends at its own expiry ------------


@pytest.mark.looptime
@pytest.mark.timeout(5)
async def test_concurrent_attempts_each_time_out_at_their_own_expiry() -> None:
    loop = asyncio.get_running_loop()
    svc = ServiceBuilder().layer(TimeoutLayer(1.0)).service(slow)
    ended: dict[int, float] = {}

    async def attempt(n: int, after: float) -> None:
        await asyncio.sleep(after)
        started = loop.time()
        with pytest.raises(TimeoutError):
            await svc(Request("GET", "http://x/", endpoint=f"ep{n}"))
        ended[n] = loop.time() - started

    await asyncio.gather(*(attempt(n, n * 0.3) for n in range(4)))
    assert ended == {n: pytest.approx(1.0) for n in range(4)}


@pytest.mark.looptime
@pytest.mark.timeout(5)
async def test_a_hung_attempt_does_not_hold_fast_ones_back_or_cut_them_later() -> None:
    loop = asyncio.get_running_loop()

    async def varied(request: Request) -> Response:
        await asyncio.sleep(float(request.params["s"]))
        return Response(200, request=request)

    svc = ServiceBuilder().layer(TimeoutLayer(1.0)).service(varied)
    start = loop.time()
    hung = asyncio.create_task(svc(Request("GET", "http://x/", params={"s": 10})))
    hung_ended: list[float] = []
    hung.add_done_callback(lambda _: hung_ended.append(loop.time()))
    for _ in range(100):  # one after another while the hung attempt waits
        response = await svc(Request("GET", "http://x/", params={"s": 0.005}))
        assert response.status_code == 200
    half = await svc(Request("GET", "http://x/", params={"s": 0.9}))  # ends before its expiry
    assert half.status_code == 200
    with pytest.raises(TimeoutError):
        await hung
    assert hung_ended[0] - start == pytest.approx(1.0)  # not held back by the fast ones
    await asyncio.sleep(2)  # no timer left to cancel anything that finished
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


@pytest.mark.looptime
@pytest.mark.timeout(20)
async def test_attempts_beyond_the_queue_bound_get_their_own_timer() -> None:
    from lamina.layers import timeout as timeout_module

    loop = asyncio.get_running_loop()
    svc = ServiceBuilder().layer(TimeoutLayer(1.0)).service(slow)
    count = timeout_module._MAX_PENDING + 20
    start = loop.time()
    outcomes = await asyncio.gather(
        *(svc(Request("GET", "http://x/")) for _ in range(count)), return_exceptions=True
    )
    assert all(isinstance(o, TimeoutError) for o in outcomes)
    assert loop.time() - start == pytest.approx(1.0)


def test_one_layer_serves_several_event_loops() -> None:
    async def fast(request: Request) -> Response:
        return Response(200, request=request)

    layer = TimeoutLayer(0.05)
    hanging = ServiceBuilder().layer(layer).service(slow)
    quick = ServiceBuilder().layer(layer).service(fast)

    async def one_loop() -> None:
        assert (await quick(Request("GET", "http://x/"))).status_code == 200
        with pytest.raises(TimeoutError):
            await hanging(Request("GET", "http://x/"))

    for _ in range(2):
        asyncio.run(one_loop())


async def test_an_idle_timeout_service_holds_no_queue() -> None:
    """10,000 endpoints each hold a TimeoutService: an idle one keeps no deque (issue 13,
    FANOUT memory), and the next attempt still gets its timeout."""
    import asyncio as _asyncio

    from lamina import Request as _Request
    from lamina import Response as _Response
    from lamina import TimeoutError as _TimeoutError
    from lamina.layers.timeout import TimeoutLayer as _TimeoutLayer
    from lamina.layers.timeout import TimeoutService

    async def quick(request: _Request) -> _Response:
        return _Response(200, content=b"{}", request=request)

    async def hang(request: _Request) -> _Response:
        await _asyncio.sleep(10)
        raise AssertionError("not cancelled")

    service = _TimeoutLayer(0.05).wrap(quick)
    assert isinstance(service, TimeoutService)
    assert service._pending is None
    await service(_Request("GET", "http://upstream.test/a"))
    assert service._pending is None
    slow = _TimeoutLayer(0.05).wrap(hang)
    assert isinstance(slow, TimeoutService)
    await service(_Request("GET", "http://upstream.test/b"))
    with pytest.raises(_TimeoutError):
        await slow(_Request("GET", "http://upstream.test/c"))
    assert slow._pending is None
