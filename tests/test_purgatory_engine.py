"""The purgatory engine under a migrating user's hands (issue 14 item 9, review): what
``CircuitBreakerLayer(backend=<purgatory factory>)`` must refuse, log or ignore."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest

from lamina import BackendUnavailable, ConfigError, Request, Response, ServiceBuilder
from lamina.layers.circuit_breaker import (
    BreakerPool,
    CircuitBreaker,
    CircuitBreakerLayer,
    CircuitState,
)
from lamina.testing import LocalServer
from lamina.transports import HttpxTransport

purgatory = pytest.importorskip("purgatory")
TTL = 0.3  # purgatory's open period is real time (time.time()): short, but longer than a
# loaded machine's stall between opening and the next check (0.05 could flip to half-open)


def test_a_sync_factory_is_refused_at_construction_not_at_the_first_call() -> None:
    sync = purgatory.SyncCircuitBreakerFactory()
    for build in (
        lambda: CircuitBreakerLayer(backend=sync),
        lambda: BreakerPool(backend=sync),
        lambda: CircuitBreaker(backend=sync),
    ):
        with pytest.raises(ConfigError, match="AsyncCircuitBreakerFactory") as info:
            build()
        assert info.value.field == "backend"


async def test_a_listener_that_raises_when_a_breaker_is_created_is_only_logged(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=2, default_ttl=30)
    heard: list[str] = []

    def listener(name: str, event_type: str, event: object) -> None:
        heard.append(event_type)
        raise RuntimeError(f"listener bug on {event_type}")

    factory.add_listener(listener)
    layer = CircuitBreakerLayer(backend=factory)
    url = lamina_server.url_for("/status/503")
    async with HttpxTransport() as transport:
        service = ServiceBuilder().layer(layer).service(transport)
        with caplog.at_level(logging.ERROR, logger="lamina.breaker"):
            for _ in range(2):  # the first call creates the purgatory breaker
                response = await service(Request("GET", url, endpoint="stock"))
                assert response.status_code == 503  # never the listener's RuntimeError
    assert heard[0] == "circuit_breaker_created"
    assert "circuit_breaker_created" in caplog.text or "CircuitBreakerCreated" in caplog.text
    assert layer.breaker("stock").state is CircuitState.OPEN  # both failures counted


async def test_a_late_answer_of_a_call_admitted_while_closed_does_not_end_the_trip() -> None:
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=TTL)
    layer = CircuitBreakerLayer(backend=factory, name="search")
    released = asyncio.Event()

    async def slow_ok(request: Request) -> Response:
        await released.wait()
        return Response(200, request=request)

    async def down(request: Request) -> Response:
        return Response(503, request=request)

    probe_gate = asyncio.Event()

    async def failing_probe(request: Request) -> Response:
        await probe_gate.wait()
        return Response(503, request=request)

    slow = asyncio.create_task(
        ServiceBuilder().layer(layer).service(slow_ok)(Request("GET", "http://x/"))
    )
    await asyncio.sleep(0)  # admitted while closed
    await ServiceBuilder().layer(layer).service(down)(Request("GET", "http://x/"))
    assert layer.breaker("search").state is CircuitState.OPEN
    await asyncio.sleep(TTL * 1.5)
    probe = asyncio.create_task(
        ServiceBuilder().layer(layer).service(failing_probe)(Request("GET", "http://x/"))
    )
    await asyncio.sleep(0.01)
    assert layer.breaker("search").state is CircuitState.HALF_OPEN
    released.set()
    assert (await slow).status_code == 200  # admitted before the trip: says nothing of it
    assert layer.breaker("search").state is CircuitState.HALF_OPEN
    probe_gate.set()
    await probe
    assert layer.breaker("search").state is CircuitState.OPEN  # the probe decided


async def test_a_reset_before_the_first_call_keeps_the_layers_threshold_and_timeout() -> None:
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    pool = BreakerPool(1, TTL, backend=factory)
    await pool.breaker("ledger").reset()  # nothing to reset yet

    async def down(request: Request) -> Any:
        return Response(500, request=request)

    service = ServiceBuilder().layer(CircuitBreakerLayer(pool=pool)).service(down)
    await service(Request("GET", "http://x/", endpoint="ledger"))
    assert pool.breaker("ledger").state is CircuitState.OPEN  # threshold 1, not the factory's 5
    context = (await factory.get_breaker("ledger")).context
    assert (context.threshold, context.ttl) == (1, TTL)


async def test_a_factory_whose_redis_is_down_fails_as_backend_unavailable() -> None:
    with socket.socket() as sock:  # a local port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uow = purgatory.AsyncRedisUnitOfWork(f"redis://127.0.0.1:{port}/0")
    factory = purgatory.AsyncCircuitBreakerFactory(uow=uow)

    async def ok(request: Request) -> Response:
        return Response(200, request=request)

    service = ServiceBuilder().layer(CircuitBreakerLayer(backend=factory)).service(ok)
    with pytest.raises(BackendUnavailable, match="purgatory could not load circuit breaker"):
        await service(Request("GET", "http://x/", endpoint="quotes"))
    await uow.contexts.redis.aclose()


class UpstreamError(Exception):
    status = 404


async def test_the_factorys_exclude_list_never_sees_lamina_s_verdict(
    lamina_server: LocalServer,
) -> None:
    """purgatory users write ``exclude=[(HTTPError, lambda exc: exc.status < 500)]``;
    lamina judges failures itself, so neither that predicate nor a broad type may get
    lamina's verdict (a predicate raised AttributeError at the caller, instead of the
    503 response; ``exclude=[Exception]`` turned every failure into a success)."""
    url = lamina_server.url_for("/status/503")
    for exclude in ([(Exception, lambda exc: exc.status < 500)], [Exception]):
        factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=1, exclude=exclude)
        layer = CircuitBreakerLayer(backend=factory, name="billing")
        async with HttpxTransport() as transport:
            service = ServiceBuilder().layer(layer).service(transport)
            response = await service(Request("GET", url))
        assert response.status_code == 503
        assert layer.breaker("billing").state is CircuitState.OPEN
        context = (await factory.get_breaker("billing")).context
        assert len(context.exclude_list) == 1  # the factory's own list is left as it was


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ({"default_threshold": 0}, "default_threshold=0"),
        ({"default_ttl": 0}, "default_ttl=0"),
        ({"default_ttl": float("nan")}, "default_ttl=nan"),
        ({"default_threshold": 2.5}, "default_threshold=2.5"),
    ],
)
def test_a_factory_default_lamina_cannot_use_is_a_config_error_on_backend(
    options: dict[str, Any], shown: str
) -> None:
    factory = purgatory.AsyncCircuitBreakerFactory(**options)
    with pytest.raises(ConfigError) as info:
        CircuitBreakerLayer(backend=factory)  # the user gave no threshold nor timeout
    assert info.value.field == "backend"
    assert shown in str(info.value)
    CircuitBreakerLayer(5, 30, backend=factory)  # the layer's own settings are used instead
