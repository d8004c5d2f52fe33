"""Each hedged attempt is its own CLIENT span, marked ``lamina.hedge`` (the first attempt
has no mark), on the real loopback server."""

from __future__ import annotations

import uuid

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lamina import HttpxTransport, Request, ServiceBuilder
from lamina.layers import HedgeLayer, TracingLayer
from lamina.testing import LocalServer


async def test_a_hedged_attempt_is_a_client_span_of_its_own(lamina_server: LocalServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    url = lamina_server.url_for(f"/json?ms=300&k={uuid.uuid4().hex[:6]}")  # slower than 20 ms
    async with HttpxTransport() as transport:
        service = ServiceBuilder(
            [HedgeLayer(delay=0.02), TracingLayer(tracer_provider=provider)]
        ).service(transport)
        response = await service(Request("GET", url, endpoint="slow"))
    assert response.status_code == 200
    spans = [s for s in exporter.get_finished_spans() if s.kind.name == "CLIENT"]
    assert len(spans) == 2  # the first attempt and one hedge
    marks = sorted(str(s.attributes.get("lamina.hedge")) for s in spans)
    assert marks == ["1", "None"]
