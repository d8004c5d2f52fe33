"""Issue 14 item 9 (rate-limit half): an ``aiolimiter.AsyncLimiter`` wherever lamina takes
a limiter, on the real local server; its waits and refusals are lamina's."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest

from lamina import ConfigError, RateLimitExceeded, Request, Response, ServiceBuilder
from lamina._events import listen
from lamina.layers.rate_limit import (
    AiolimiterLimiter,
    Limiter,
    RateLimitLayer,
    acquire_all,
    try_acquire_all,
)
from lamina.testing import LocalServer, ManualClock
from lamina.transports import HttpxTransport

aiolimiter = pytest.importorskip("aiolimiter")
AsyncLimiter = aiolimiter.AsyncLimiter


def recorder() -> tuple[list[tuple[str, Mapping[str, Any]]], Any]:
    events: list[tuple[str, Mapping[str, Any]]] = []
    return events, lambda name, attrs: events.append((name, dict(attrs)))


async def test_an_async_limiter_paces_real_calls(lamina_server: LocalServer) -> None:
    limiter = AsyncLimiter(2, 0.2)  # a bucket of 2, draining 10/s
    layer = RateLimitLayer(limiters=[limiter])
    assert isinstance(layer.limiter, AiolimiterLimiter)
    assert layer.limiter.async_limiter is limiter
    events, record = recorder()
    url = lamina_server.url_for("/status/200?engine=aiolimiter")
    async with HttpxTransport() as transport:
        service = ServiceBuilder().layer(layer).service(transport)
        responses = await asyncio.gather(
            *(service(listen(Request("GET", url), record)) for _ in range(4))
        )
    assert [r.status_code for r in responses] == [200] * 4
    waits = [attrs["seconds"] for name, attrs in events if name == "ratelimit.wait"]
    assert len(waits) >= 2
    assert all(w > 0 for w in waits)


async def test_past_max_wait_the_call_is_refused_before_it_is_sent(
    lamina_server: LocalServer,
) -> None:
    path = "/status/204"
    before = lamina_server.hits(path)
    limiter = AsyncLimiter(1, 30)
    async with HttpxTransport() as transport:
        service = (
            ServiceBuilder()
            .layer(RateLimitLayer(limiters=limiter, max_wait=0.05))
            .service(transport)
        )
        await service(Request("GET", lamina_server.url_for(path)))
        with pytest.raises(RateLimitExceeded) as info:
            await service(Request("GET", lamina_server.url_for(path), endpoint="slow"))
    assert lamina_server.hits(path) - before == 1  # the refused call never reached it
    assert info.value.retry_after == pytest.approx(30, abs=0.5)
    assert "aiolimiter 1 per 30 s burst=1 would delay the call" in str(info.value)


async def test_a_call_past_its_deadline_is_refused_at_once() -> None:
    async def ok(request: Request) -> Response:
        return Response(200, request=request)

    loop = asyncio.get_running_loop()
    service = ServiceBuilder().layer(RateLimitLayer(limiters=[AsyncLimiter(1, 60)])).service(ok)
    await service(Request("GET", "http://x/"))
    with pytest.raises(RateLimitExceeded, match="past the call's deadline"):
        await service(Request("GET", "http://x/", deadline=loop.time() + 1))


@pytest.mark.looptime(end=120)
@pytest.mark.timeout(10)
async def test_in_virtual_time_the_limit_holds() -> None:
    loop = asyncio.get_running_loop()
    stamps: list[float] = []

    async def ok(request: Request) -> Response:
        stamps.append(loop.time())
        return Response(200, request=request)

    service = ServiceBuilder().layer(RateLimitLayer(limiters=[AsyncLimiter(10, 1)])).service(ok)
    await asyncio.gather(*(service(Request("GET", "http://x/")) for _ in range(30)))
    assert stamps.count(stamps[0]) == 10  # the bucket's 10 at once
    assert stamps[-1] - stamps[0] == pytest.approx(2, abs=0.01)  # then 10/s


@pytest.mark.looptime(end=120)
async def test_status_reset_and_repr() -> None:
    limiter = AiolimiterLimiter(AsyncLimiter(4, 1), name="partner")
    for _ in range(4):
        await limiter.acquire()
    status = await limiter.store.status()
    assert (status.available, status.rate, status.period, status.burst) == (0, 4, 1, 4)
    assert status.retry_after == pytest.approx(0.25)
    await limiter.store.reset()
    assert (await limiter.store.status()).available == 4
    assert str(limiter) == "'partner' aiolimiter 4/s burst=4"


def test_bad_mixes_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="cannot mix") as info:
        RateLimitLayer(limiters=[AsyncLimiter(1, 1), Limiter(1)])
    assert info.value.field == "limiters"
    with pytest.raises(ConfigError, match="can never admit one call"):
        RateLimitLayer(limiters=[AsyncLimiter(0.5, 1)])
    with pytest.raises(ConfigError) as info:
        RateLimitLayer(limiters=[AsyncLimiter(1, 1)], clock=ManualClock())
    assert info.value.field == "clock"  # aiolimiter reads the loop's time
    with pytest.raises(ConfigError, match="exceeds the capacity"):
        asyncio.run(AiolimiterLimiter(AsyncLimiter(2, 1)).acquire(3))


def test_lamina_imports_without_aiolimiter() -> None:
    code = (
        "import sys; sys.modules['aiolimiter'] = None\n"
        "import lamina, lamina.layers.rate_limit as r\n"
        "r.RateLimitLayer(per_minute=10)\n"
        "assert 'aiolimiter' not in [m for m in sys.modules if sys.modules[m]]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("max_rate", "time_period"),
    [(True, 1), (float("nan"), 1), (1e12, 1), (10, -1), (10, 1e-9), (10, float("inf")), (10, True)],
)
def test_an_async_limiter_lamina_cannot_honour_is_a_config_error_on_limiters(
    max_rate: float, time_period: float
) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimitLayer(limiters=[AsyncLimiter(max_rate, time_period)])
    assert info.value.field == "limiters"  # the argument the user wrote, not rate/period
    assert "AsyncLimiter" in str(info.value)
    assert f"max_rate={max_rate!r}" in str(info.value)


@pytest.mark.looptime(end=60)
async def test_a_refusal_after_waiting_says_how_long_it_waited_and_what_was_left() -> None:
    async def ok(request: Request) -> Response:
        return Response(200, request=request)

    layer = RateLimitLayer(limiters=[AsyncLimiter(1, 1)], max_wait=1.5)
    service = ServiceBuilder().layer(layer).service(ok)
    await service(Request("GET", "http://x/"))  # the bucket is full for 1 s
    second, third = await asyncio.gather(
        service(Request("GET", "http://x/")),
        service(Request("GET", "http://x/")),
        return_exceptions=True,
    )
    assert isinstance(second, Response)  # after 1 s
    assert isinstance(third, RateLimitExceeded)  # its slot (2 s) was past max_wait
    assert third.retry_after == pytest.approx(0.5)
    message = str(third)
    # not "would delay the call 0.5s, more than max_wait=1.5s": 0.5 is less than 1.5
    assert "would delay the call 2s in all (1.5s waited, 0.5s to go)" in message
    assert "more than max_wait=1.5s" in message


@pytest.mark.looptime(end=60)
async def test_acquire_all_takes_an_async_limiter_too() -> None:
    shared = AsyncLimiter(1, 1)
    assert await acquire_all([shared]) == 0
    assert await acquire_all([shared]) == pytest.approx(1)  # waited in the AsyncLimiter
    with pytest.raises(ConfigError, match="in-memory") as info:
        try_acquire_all([shared])  # type: ignore[list-item]
    assert info.value.field == "limiters"


async def test_acquire_all_refuses_what_is_not_a_limiter_with_a_config_error() -> None:
    for call in (lambda: acquire_all(["limit"]), lambda: acquire_all([object(), Limiter(1)])):
        with pytest.raises(ConfigError) as info:
            await call()  # type: ignore[arg-type]
        assert info.value.field == "limiters"  # not AttributeError: no attribute 'store'
    with pytest.raises(ConfigError) as info:
        try_acquire_all(["limit"])  # type: ignore[list-item]
    assert info.value.field == "limiters"


def test_an_async_limiter_of_another_open_event_loop_fails_plainly_when_it_must_wait() -> None:
    """aiolimiter binds an AsyncLimiter to the first loop that uses it; waiting on it from
    another loop raised 'got Future attached to a different loop' (a RuntimeError)."""
    shared = AsyncLimiter(1, 60)

    async def ok(request: Request) -> Response:
        return Response(200, request=request)

    service = ServiceBuilder().layer(RateLimitLayer(limiters=[shared])).service(ok)
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(service(Request("GET", "http://x/")))  # binds it to `first`
        with pytest.raises(ConfigError, match="another event loop") as info:
            asyncio.run(service(Request("GET", "http://x/")))  # would wait 60 s
        assert info.value.field == "limiters"
    finally:
        first.close()
