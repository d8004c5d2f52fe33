"""Issue 14 item 9 (breaker half): a ``purgatory.AsyncCircuitBreakerFactory`` wherever
lamina takes a breaker backend, on the real local server. purgatory keeps the state;
lamina's errors, events, hooks and failure rules stay lamina's."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest

from lamina import CircuitOpenError, ConfigError, Request, ServiceBuilder
from lamina._events import listen
from lamina.layers.circuit_breaker import (
    BreakerPool,
    CircuitBreaker,
    CircuitBreakerLayer,
    CircuitState,
    StateChange,
)
from lamina.testing import LocalServer
from lamina.transports import HttpxTransport

purgatory = pytest.importorskip("purgatory")
TTL = 0.5  # purgatory reads time.time(): its open period is real time; short, but the two
# rejections right after the trip must come within it on a loaded machine too (was 0.1)


def factory(threshold: int = 2, ttl: float = TTL) -> Any:
    return purgatory.AsyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=ttl)


def recorder() -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    events: list[tuple[str, dict[str, Any]]] = []

    def record(name: str, attrs: Mapping[str, Any]) -> None:
        events.append((name, dict(attrs)))

    return events, record


async def test_a_factory_trips_rejects_and_recovers_on_the_real_server(
    lamina_server: LocalServer,
) -> None:
    layer = CircuitBreakerLayer(backend=factory())
    assert (layer.threshold, layer.timeout) == (2, TTL)  # the factory's defaults
    changes: list[StateChange] = []
    layer.on_state_change(changes.append)
    events, record = recorder()
    failing = lamina_server.url_for("/status/503")
    healthy = lamina_server.url_for("/status/200")
    async with HttpxTransport() as transport:
        service = ServiceBuilder().layer(layer).service(transport)
        for _ in range(2):  # a returned 5xx counts, nothing raised
            response = await service(listen(Request("GET", failing, endpoint="pay"), record))
            assert response.status_code == 503
        hits = lamina_server.hits("/status/503")
        rejections = []
        for _ in range(2):
            with pytest.raises(CircuitOpenError) as info:
                await service(listen(Request("GET", failing, endpoint="pay"), record))
            rejections.append(info.value)
        assert lamina_server.hits("/status/503") == hits  # rejected before sending
        assert rejections[0] is not rejections[1]  # a fresh error each time
        assert 0 < rejections[0].retry_after <= TTL
        assert layer.breaker("pay").state is CircuitState.OPEN
        await asyncio.sleep(TTL + 0.02)
        response = await service(listen(Request("GET", healthy, endpoint="pay"), record))
        assert response.status_code == 200
    assert layer.breaker("pay").state is CircuitState.CLOSED
    states = [(a["old"], a["new"]) for name, a in events if name == "breaker.state"]
    assert states == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert [name for name, _ in events].count("breaker.rejected") == 2
    assert [(c.name, c.old, c.new) for c in changes] == [
        ("pay", CircuitState.CLOSED, CircuitState.OPEN),
        ("pay", CircuitState.OPEN, CircuitState.HALF_OPEN),
        ("pay", CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


async def test_purgatorys_own_listeners_hear_and_a_raising_one_is_only_logged(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    made = factory(threshold=1)
    heard: list[tuple[str, str]] = []

    def listener(name: str, event_type: str, event: object) -> None:
        heard.append((name, event_type))
        if event_type == "state_changed":
            raise RuntimeError("listener bug")

    made.add_listener(listener)
    layer = CircuitBreakerLayer(backend=made, name="orders")
    async with HttpxTransport() as transport:
        service = ServiceBuilder().layer(layer).service(transport)
        with caplog.at_level(logging.ERROR, logger="lamina.breaker"):
            response = await service(Request("GET", lamina_server.url_for("/status/500")))
    assert response.status_code == 500  # the listener's error never became the caller's
    assert ("orders", "state_changed") in heard
    assert ("orders", "failed") in heard
    assert "purgatory failed to handle ContextChanged" in caplog.text
    assert layer.breaker("orders").state is CircuitState.OPEN


async def test_cancellation_and_unjudged_errors_are_neutral() -> None:
    layer = CircuitBreakerLayer(backend=factory(threshold=1), name="slow")
    started = asyncio.Event()

    async def hang(request: Request) -> Any:
        started.set()
        await asyncio.sleep(10)

    service = ServiceBuilder().layer(layer).service(hang)
    task = asyncio.create_task(service(Request("GET", "http://x/")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def refuse(request: Request) -> Any:
        raise KeyError("not the upstream's fault")

    with pytest.raises(KeyError):
        await ServiceBuilder().layer(layer).service(refuse)(Request("GET", "http://x/"))
    assert layer.breaker("slow").state is CircuitState.CLOSED  # threshold 1, still closed


async def test_the_standalone_breaker_and_pool_take_a_factory_too() -> None:
    made = factory(threshold=2)
    breaker = CircuitBreaker(backend=made, name="calc")
    assert (breaker.threshold, breaker.timeout) == (2, TTL)

    async def boom() -> None:
        raise ValueError("down")

    for _ in range(2):
        with pytest.raises(ValueError, match="down"):
            await breaker.call(boom)
    with pytest.raises(CircuitOpenError, match="'calc' is open"):
        await breaker.call(boom)
    await breaker.reset()
    assert breaker.state is CircuitState.CLOSED
    pool = BreakerPool(5, 30, backend=made)
    assert (pool.threshold, pool.timeout) == (5, 30)  # given values win over the factory's
    assert "Purgatory" in repr(pool.breaker("x")._backend)


def test_a_wrong_backend_fails_at_construction() -> None:
    with pytest.raises(ConfigError) as info:
        CircuitBreakerLayer(backend="purgatory")  # type: ignore[arg-type]
    assert info.value.field == "backend"


def test_lamina_imports_without_purgatory() -> None:
    code = (
        "import sys; sys.modules['purgatory'] = None\n"
        "import lamina, lamina.layers.circuit_breaker as cb\n"
        "cb.CircuitBreakerLayer(threshold=2)\n"
        "assert not [m for m in sys.modules if m.startswith('purgatory') and sys.modules[m]]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
