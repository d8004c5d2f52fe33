"""Issue 14 item 9 on every transport: an aiolimiter.AsyncLimiter and a purgatory factory
in lamina's layers, against the real local server (``transport_factory`` runs each test
once per transport)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import pytest

from lamina import CircuitOpenError, ConnectError, RateLimitExceeded, Request, ServiceBuilder
from lamina import TimeoutError as LaminaTimeout
from lamina._events import listen
from lamina.layers import TimeoutLayer
from lamina.layers.circuit_breaker import CircuitBreakerLayer, CircuitState
from lamina.layers.rate_limit import RateLimitLayer
from lamina.testing import LocalServer

from .conftest import TransportFactory

aiolimiter = pytest.importorskip("aiolimiter")
purgatory = pytest.importorskip("purgatory")


async def test_an_async_limiter_refuses_past_max_wait_before_sending(
    transport_factory: TransportFactory, lamina_server: LocalServer
) -> None:
    before = lamina_server.hits("/status/200")
    url = lamina_server.url_for("/status/200")
    layer = RateLimitLayer(limiters=[aiolimiter.AsyncLimiter(2, 60)], max_wait=1)
    service = ServiceBuilder().layer(layer).service(transport_factory())
    outcomes = await asyncio.gather(
        *(service(Request("GET", url)) for _ in range(4)), return_exceptions=True
    )
    statuses = [o.status_code for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, RateLimitExceeded)]
    assert statuses == [200, 200]  # the bucket's two at once
    assert len(refused) == 2  # the next slots are 30 s and 60 s away: refused at once
    assert all(29 < r.retry_after <= 60 for r in refused)
    assert lamina_server.hits("/status/200") - before == 2  # never sent


async def test_an_async_limiter_paces_real_calls_and_reports_the_waits(
    transport_factory: TransportFactory, lamina_server: LocalServer
) -> None:
    waits: list[float] = []

    def record(name: str, attrs: Mapping[str, Any]) -> None:
        if name == "ratelimit.wait":
            waits.append(attrs["seconds"])

    url = lamina_server.url_for("/json")
    layer = RateLimitLayer(limiters=[aiolimiter.AsyncLimiter(1, 0.2)])
    service = ServiceBuilder().layer(layer).service(transport_factory())
    responses = await asyncio.gather(
        *(service(listen(Request("GET", url), record)) for _ in range(3))
    )
    assert [r.status_code for r in responses] == [200, 200, 200]
    # The three reach the limiter in one pass of the loop: the first takes the bucket's
    # one slot at once (no event), the others wait one and two refills of 200 ms. (With
    # 50 ms refills, a machine that stalled 50 ms between two of them let one go at once.)
    assert len(waits) == 2
    assert min(waits) > 0
    assert max(waits) > 0.2  # the last one queued behind both others


@pytest.mark.parametrize(
    ("path", "trips"),
    [
        ("/status/503", True),  # a returned 5xx counts without raising
        ("/status/200?ms=500", True),  # a timeout after the request was sent
        ("/status/404", False),  # the upstream answered: a success for the breaker
    ],
)
async def test_a_purgatory_factory_judges_what_lamina_judges(
    transport_factory: TransportFactory, lamina_server: LocalServer, path: str, trips: bool
) -> None:
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=2, default_ttl=30)
    layer = CircuitBreakerLayer(backend=factory, name=f"{path}-{transport_factory.kind}")
    builder = ServiceBuilder().layer(layer)
    if "ms=" in path:  # only the slow path gets a timeout: a busy machine never trips the others
        builder = builder.layer(TimeoutLayer(0.05))
    service = builder.service(transport_factory())
    url = lamina_server.url_for(path)
    for _ in range(2):
        with contextlib.suppress(LaminaTimeout):
            await service(Request("GET", url))
    breaker = layer.breaker(f"{path}-{transport_factory.kind}")
    assert breaker.state is (CircuitState.OPEN if trips else CircuitState.CLOSED)
    if trips:
        with pytest.raises(CircuitOpenError) as info:
            await service(Request("GET", url))
        assert 29 < info.value.retry_after <= 30


async def test_a_purgatory_factory_opens_on_a_refused_connection(
    transport_factory: TransportFactory, closed_port: int
) -> None:
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=2, default_ttl=30)
    layer = CircuitBreakerLayer(backend=factory, name="gone")
    service = ServiceBuilder().layer(layer).service(transport_factory())
    url = f"http://127.0.0.1:{closed_port}/"
    for _ in range(2):
        with pytest.raises(ConnectError):
            await service(Request("GET", url))
    with pytest.raises(CircuitOpenError):
        await service(Request("GET", url))
    assert layer.breaker("gone").state is CircuitState.OPEN
