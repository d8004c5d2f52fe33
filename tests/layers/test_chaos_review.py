"""ChaosLayer, reviewed as a demanding user would use it: a seeded experiment gives the
same injections whether the calls run one by one or at once, ``LAMINA_CHAOS`` refuses
junk, and an exception class of one's own that passes construction also injects."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lamina import ConfigError, LaminaError, Request, Response, service_fn
from lamina._events import listen
from lamina.layers.chaos import ENV_VAR, ChaosLayer, chaos_from_env
from lamina.testing import LocalServer, ManualClock

MIXED: dict[str, Any] = {
    "fault_rate": 0.25,
    "status": 503,
    "status_rate": 0.25,
    "latency": (0.01, 0.05),
    "latency_rate": 0.5,
    "seed": 11,
}


async def upstream(request: Request) -> Response:
    return Response(200, request=request)


async def one_call(service: Any) -> str:
    """What the call met: the injected latency (if any), then its status or error."""
    seen: list[str] = []
    request = listen(
        Request("GET", "http://u.test/x", endpoint="users"),
        lambda name, attrs: (
            seen.append(f"{attrs['seconds']:.4f}s") if attrs.get("kind") == "latency" else None
        ),
    )
    try:
        response = await service(request)
        seen.append(str(response.status_code))
    except LaminaError as exc:
        seen.append(type(exc).__name__)
    return " ".join(seen)


async def test_a_seeded_run_meets_the_same_injections_one_by_one_or_at_once() -> None:
    clock = ManualClock(autojump=True)
    service = ChaosLayer(**MIXED, clock=clock).wrap(service_fn(upstream))
    one_by_one = [await one_call(service) for _ in range(40)]

    clock = ManualClock(autojump=True)
    service = ChaosLayer(**MIXED, clock=clock).wrap(service_fn(upstream))
    at_once = await asyncio.gather(*(one_call(service) for _ in range(40)))

    assert any("s " in x for x in one_by_one)  # latency was injected in between draws
    assert {"ConnectError", "503"} <= {x.split()[-1] for x in one_by_one}
    assert at_once == one_by_one


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("fault_rate=0.1_0", "LAMINA_CHAOS.fault_rate"),  # Python's digit separator
        ("status=5_03,status_rate=1", "LAMINA_CHAOS.status"),
        ("fault_rate=0.1,seed=", "LAMINA_CHAOS.seed"),  # a key without a value
        ("fault_rate=", "LAMINA_CHAOS.fault_rate"),
        ("fault_rate=0.1,fault=", "LAMINA_CHAOS.fault"),
        ("fault_rate=0.1,seed=1 2", "LAMINA_CHAOS.seed"),
    ],
)
def test_lamina_chaos_refuses_junk(value: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        chaos_from_env({ENV_VAR: value})
    assert caught.value.field == field


def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        ChaosLayer(status=503, status_rate=1.0, body={"x": float("nan")})
    assert caught.value.field == "body"


class OwnError(LaminaError):
    """A lamina error of one's own that takes only a message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


async def test_a_lamina_error_of_ones_own_without_request_is_injected() -> None:
    service = ChaosLayer(fault_rate=1.0, fault=OwnError).wrap(service_fn(upstream))
    with pytest.raises(OwnError, match="chaos: injected OwnError"):
        await service(Request("GET", "http://u.test/x", endpoint="users"))


@pytest.mark.parametrize("kind", ["HttpxTransport", "AiohttpTransport", "PyreqwestTransport"])
async def test_on_every_transport_the_upstream_sees_only_the_calls_chaos_let_through(
    lamina_server: LocalServer, kind: str
) -> None:
    import uuid

    import lamina.transports
    from lamina import ServiceBuilder
    from lamina.layers import ParseLayer, RetryLayer

    path = f"/chaos-{uuid.uuid4().hex[:8]}"
    lamina_server.route(path, lambda req: (200, {"ok": True}, {}))
    chaos = ChaosLayer(fault_rate=0.3, status=503, status_rate=0.3, seed=5)
    retry = RetryLayer(attempts=6, backoff=0.001, jitter=False)
    transport = getattr(lamina.transports, kind)()
    service = ServiceBuilder([ParseLayer(), retry, chaos]).service(transport)
    seen: list[str] = []
    try:
        for _ in range(20):
            request = listen(
                Request("GET", lamina_server.url_for(path), endpoint="items"),
                lambda name, attrs: seen.append(name) if name == "chaos.injected" else None,
            )
            response = await service(request)
            assert response.value == {"ok": True}
    finally:
        await transport.aclose()
    assert seen  # some attempts were injected
    assert lamina_server.hits(path) == 20  # every injected attempt stayed off the wire


async def test_an_attempt_with_latency_and_a_fault_keeps_both_marks_on_its_span() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    layer = ChaosLayer(
        latency=0.01, latency_rate=1.0, fault_rate=1.0, clock=ManualClock(autojump=True)
    )
    service = layer.wrap(service_fn(upstream))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("attempt"), pytest.raises(LaminaError):
        await service(Request("GET", "http://u.test/x", endpoint="users"))
    provider.shutdown()
    (span,) = exporter.get_finished_spans()
    mark = str((span.attributes or {}).get("lamina.chaos.injected"))
    assert "latency" in mark
    assert "ConnectError" in mark
