import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from lamina import (
    ConfigError,
    HttpxTransport,
    RateLimitExceeded,
    Request,
    Response,
    ServiceBuilder,
    service_fn,
)
from lamina._events import listen
from lamina.layers.rate_limit import (
    InMemoryRateLimiter,
    Limiter,
    RateLimit,
    RateLimiterConfig,
    RateLimitLayer,
)
from lamina.testing import LocalServer, ManualClock


async def ok(request: Request) -> Response:
    return Response(200, request=request)


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((0,), {}, "rate"),
        ((-5,), {}, "rate"),
        ((), {}, "rate"),
        ((10, 0), {}, "period"),
        ((10,), {"burst": 0}, "burst"),
        ((10,), {"max_wait": -1}, "max_wait"),
        ((10,), {"limiters": [Limiter(1)]}, "limiters"),
        ((), {"limiters": []}, "limiters"),
        ((), {"limiters": ["x"]}, "limiters"),
        ((), {"limiters": [Limiter(1)], "clock": ManualClock()}, "clock"),
    ],
)
def test_bad_config_names_the_field(args: tuple[Any, ...], kwargs: dict[str, Any], field: str):
    with pytest.raises(ConfigError) as info:
        RateLimitLayer(*args, **kwargs)
    assert info.value.field == field


def test_zero_rate_message_names_rate() -> None:
    with pytest.raises(ConfigError, match=r"^rate: "):
        RateLimitLayer(rate=0)


@pytest.mark.looptime(end=60)
@pytest.mark.timeout(10)
async def test_paces_calls_and_reports_the_wait() -> None:
    loop = asyncio.get_running_loop()
    events: list[tuple[str, Mapping[str, Any]]] = []
    svc = ServiceBuilder().layer(RateLimitLayer(2, 1, burst=1)).service(ok)
    start = loop.time()
    stamps = []
    for _ in range(4):
        request = listen(Request("GET", "http://x/"), lambda n, a: events.append((n, a)))
        await svc(request)
        stamps.append(loop.time() - start)
    assert stamps == pytest.approx([0, 0.5, 1.0, 1.5])
    assert [name for name, _ in events] == ["ratelimit.wait"] * 3  # the first did not wait
    assert [attrs["seconds"] for _, attrs in events] == pytest.approx([0.5] * 3)


async def test_max_wait_raises_naming_the_endpoint(manual_clock: ManualClock) -> None:
    svc = ServiceBuilder().layer(RateLimitLayer(10, 60, max_wait=1, clock=manual_clock)).service(ok)
    for _ in range(10):
        await svc(Request("GET", "http://x/", endpoint="users"))
    with pytest.raises(RateLimitExceeded) as info:
        await svc(Request("GET", "http://x/?api_key=s3cret", endpoint="users"))
    assert info.value.endpoint == "users"
    assert info.value.retry_after == pytest.approx(60)
    assert str(info.value).startswith("[users] ")
    assert "s3cret" not in str(info.value)


async def test_deadline_raises_at_once(manual_clock: ManualClock) -> None:
    svc = ServiceBuilder().layer(RateLimitLayer(1, 10, clock=manual_clock)).service(ok)
    await svc(Request("GET", "http://x/"))
    with pytest.raises(RateLimitExceeded, match="deadline"):
        await svc(Request("GET", "http://x/", endpoint="e", deadline=5.0))
    assert manual_clock.now() == 0.0
    task = asyncio.create_task(svc(Request("GET", "http://x/", deadline=20.0)))
    for _ in range(5):
        await asyncio.sleep(0)
    manual_clock.advance(10)
    assert (await task).status_code == 200


@pytest.mark.looptime(end=200)
@pytest.mark.timeout(10)
async def test_global_limit_shared_by_endpoint_stacks() -> None:
    loop = asyncio.get_running_loop()
    shared = Limiter(4, 1, name="global")
    stacks = {
        name: ServiceBuilder()
        .layer(RateLimitLayer(limiters=[Limiter(10, 60, burst=5, name=name), shared]))
        .service(ok)
        for name in ("a", "b")
    }
    start = loop.time()

    async def burst(name: str) -> list[float]:
        out = []
        for _ in range(6):
            await stacks[name](Request("GET", "http://x/", endpoint=name))
            out.append(loop.time() - start)
        return out

    a, b = await asyncio.gather(burst("a"), burst("b"))
    # together never more than 4 per second; each endpoint 5 at once then one per 6 s
    stamps = sorted(a + b)
    assert all(sum(1 for s in stamps if t <= s < t + 1 - 1e-6) <= 4 for t in stamps)
    assert a[5] - a[0] == pytest.approx(6)  # 5 per burst, then 10/min spacing
    assert b[5] - b[0] == pytest.approx(6)


async def test_layer_built_from_in_memory_limiter(manual_clock: ManualClock) -> None:
    memory = InMemoryRateLimiter(
        RateLimiterConfig(categories={"users": [RateLimit(1, 60)]}), clock=manual_clock
    )
    layer = RateLimitLayer(limiters=memory.limiters("users"), max_wait=0)
    svc = ServiceBuilder().layer(layer).service(ok)
    await svc(Request("GET", "http://x/"))
    assert not memory.try_acquire("users")  # the layer and the limiter share state
    with pytest.raises(RateLimitExceeded):
        await svc(Request("GET", "http://x/"))
    assert "users" in repr(layer)
    assert "waiters=0" in repr(layer.limiter)


async def test_wrapping_twice_shares_the_layers_limit(manual_clock: ManualClock) -> None:
    layer = RateLimitLayer(1, 60, max_wait=0, clock=manual_clock)
    one, two = layer.wrap(service_fn(ok)), layer.wrap(service_fn(ok))
    await one(Request("GET", "http://x/"))
    with pytest.raises(RateLimitExceeded):
        await two(Request("GET", "http://x/"))


@pytest.mark.timeout(10)
async def test_real_server_sees_paced_arrivals(lamina_server: LocalServer) -> None:
    async with HttpxTransport() as transport:
        # open two pooled connections first, so arrivals reflect admissions
        await asyncio.gather(
            *(transport(Request("GET", lamina_server.url_for("/w"))) for _ in "ab")
        )
        svc = ServiceBuilder().layer(RateLimitLayer(rate=20, period=1, burst=2)).service(transport)
        responses = await asyncio.gather(
            *(svc(Request("GET", lamina_server.url_for("/json"))) for _ in range(10))
        )
    assert all(r.status_code == 200 for r in responses)
    arrivals = sorted(lamina_server.arrivals("/json"))
    assert len(arrivals) == 10
    # 2 at once, then one every 50 ms: 8 paced admissions span at least 8 x 50 ms.
    # Only a loose lower bound is safe on wall-clock time (the first arrival can
    # itself be late), so check the whole span with 50 ms of slack.
    assert arrivals[-1] - arrivals[0] >= 8 * 0.05 - 0.05
