"""The run gives a call's request the callbacks that write notes to its report (a
chaos layer's marks, the cache's reason for not storing) only when its stack has a
layer that may use them: the default stack without cache or chaos gets none."""

from __future__ import annotations

from typing import Any

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, Request, Response
from lamina._events import EVENTS_KEY
from lamina.layers.chaos import CHAOS_NOTE_KEY, ChaosLayer
from lamina.layers.circuit_breaker import CircuitBreakerLayer
from lamina.layers.timeout import TimeoutLayer


class Recording:
    def __init__(self) -> None:
        self.seen: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.seen.append(request)
        return Response(
            200,
            content=b'{"ok": true}',
            headers={"content-type": "application/json"},
            request=request,
        )


def _config(**options: Any) -> APIOrchestrationConfig:
    return APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url="http://svc/a", retry_count=0)], **options
    )


def _listeners(request: Request) -> list[Any]:
    return list(request.extensions.get(EVENTS_KEY, ()))


async def test_the_default_stack_gets_no_note_callbacks() -> None:
    transport = Recording()
    async with APIOrchestrator(_config(), transport=transport) as orchestrator:
        report = await orchestrator.run()
    assert report.endpoints["a"].outcome == "ok", report.endpoints["a"].error_text
    (request,) = transport.seen
    assert CHAOS_NOTE_KEY not in request.extensions
    assert not any(type(x).__name__ == "_CacheNote" for x in _listeners(request))


async def test_a_cache_gets_the_cache_note_and_the_chaos_note() -> None:
    transport = Recording()
    async with APIOrchestrator(_config(cache_ttl=60), transport=transport) as orchestrator:
        await orchestrator.run()
    (request,) = transport.seen
    assert callable(request.extensions[CHAOS_NOTE_KEY])
    assert [type(x).__name__ for x in _listeners(request)].count("_CacheNote") == 1


async def test_a_chaos_layer_still_marks_the_report() -> None:
    transport = Recording()

    def layers(endpoint: APIEndpoint, config: APIOrchestrationConfig) -> list[Any]:
        return [
            *APIOrchestrator.default_layers(endpoint, config),
            ChaosLayer(latency=0.001, latency_rate=1.0, seed=1),
        ]

    async with APIOrchestrator(_config(), transport=transport, layers=layers) as orchestrator:
        report = await orchestrator.run()
    assert report.endpoints["a"].chaos is not None
    assert CHAOS_NOTE_KEY in transport.seen[0].extensions


async def test_a_layer_of_the_users_own_or_a_subclass_keeps_the_callbacks() -> None:
    class MyTimeout(TimeoutLayer):
        __slots__ = ()

    for extra in (MyTimeout(5.0), CircuitBreakerLayer()):
        transport = Recording()
        own = [extra] if isinstance(extra, MyTimeout) else [extra, _Passing()]
        async with APIOrchestrator(_config(), transport=transport, layers=own) as orchestrator:
            await orchestrator.run()
        assert CHAOS_NOTE_KEY in transport.seen[0].extensions


class _Passing:
    def wrap(self, inner: Any) -> Any:
        return inner
