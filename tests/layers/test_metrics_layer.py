"""MetricsLayer: IOMetrics per call and OpenTelemetry instruments (SDK in-memory reader)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from lamina import (
    ConfigError,
    HTTPStatusError,
    HttpxTransport,
    Request,
    Response,
    Service,
    ServiceBuilder,
    layer_fn,
    service_fn,
)
from lamina._events import emit
from lamina.layers.metrics import Metrics, MetricsLayer
from lamina.layers.parse import ParseLayer
from lamina.layers.retry import RetryLayer
from lamina.layers.tracing import TracingLayer
from lamina.metrics import IOMetrics
from lamina.testing import LocalServer, ManualClock


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meters(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "lamina"
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


async def test_real_server_calls_feed_iometrics_and_otel(
    lamina_server: LocalServer, meters: MeterProvider, reader: InMemoryMetricReader
) -> None:
    metrics = IOMetrics()
    async with HttpxTransport() as transport:
        service = (
            ServiceBuilder()
            .layer(MetricsLayer(metrics, meter_provider=meters))
            .layer(ParseLayer())
            .layer(
                RetryLayer(attempts=3, backoff=0.1, jitter=False, clock=ManualClock(autojump=True))
            )
            .layer(TracingLayer())  # no SDK tracer: only reports the attempts
            .service(transport)
        )
        await service(Request("GET", lamina_server.url_for("/flaky/m1?fail=2"), endpoint="users"))
        await service(Request("GET", lamina_server.url_for("/json"), endpoint="users"))
        with pytest.raises(HTTPStatusError):
            await service(Request("GET", lamina_server.url_for("/status/404"), endpoint="posts"))

    assert metrics.total_requests == 3
    assert metrics.endpoint("users").success_rate == 100.0
    assert metrics.endpoint("posts").errors_by_type == {"404": 1}
    assert metrics.error_rate == pytest.approx(1 / 3)
    assert metrics.retries == 2
    assert metrics.endpoint("users").retries == 2
    assert metrics.avg_latency > 0

    got = points(reader)
    durations: list[HistogramDataPoint] = got["http.client.request.duration"]
    by_status = {p.attributes.get("http.response.status_code"): p for p in durations}
    assert by_status[503].count == 2
    assert by_status[200].count == 2
    assert by_status[404].count == 1
    assert dict(by_status[503].attributes) == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": lamina_server.port,
        "http.response.status_code": 503,
        "error.type": "503",
    }
    assert "error.type" not in by_status[200].attributes
    assert list(durations[0].explicit_bounds)[:3] == [0.005, 0.01, 0.025]
    (retries,) = got["lamina.retries"]
    assert retries.value == 2
    assert dict(retries.attributes) == {"lamina.endpoint": "users"}
    calls = {
        (p.attributes["lamina.endpoint"], p.attributes["lamina.outcome"]): p
        for p in got["lamina.call.duration"]
    }
    assert calls[("users", "success")].count == 2
    assert calls[("posts", "error")].attributes["error.type"] == "404"


async def test_cache_breaker_and_ratelimit_events_are_counted(
    meters: MeterProvider, reader: InMemoryMetricReader
) -> None:
    async def events(request: Request, call_next: Service) -> Response:
        emit(request, "cache.hit", key="k")
        emit(request, "breaker.rejected", retry_after=1.0)
        emit(request, "ratelimit.wait", seconds=0.5)
        emit(request, "something.else")
        return await call_next(request)

    async def ok(request: Request) -> Response:
        return Response(200, request=request)

    layer = MetricsLayer(meter_provider=meters)
    service = ServiceBuilder().layer(layer).layer(layer_fn(events)).service(service_fn(ok))
    await service(Request("GET", "http://example.test/", endpoint="e"))
    await service(Request("GET", "http://example.test/"))
    assert layer.metrics.cache_hits == 2
    assert layer.metrics.breaker_rejections == 2
    assert layer.metrics.ratelimit_waits == 2
    assert layer.metrics.endpoint("e").cache_hits == 1
    assert layer.metrics.endpoint("default").total_requests == 1
    got = points(reader)
    for name in ("lamina.cache.hits", "lamina.breaker.rejections", "lamina.ratelimit.waits"):
        assert sum(p.value for p in got[name]) == 2
    assert "http.client.request.duration" not in got  # no TracingLayer: no attempts seen


async def test_connect_error_is_recorded_with_its_type(
    meters: MeterProvider, reader: InMemoryMetricReader
) -> None:
    with LocalServer() as gone:
        url = gone.url_for("/json")
    metrics = IOMetrics()
    async with HttpxTransport() as transport:
        service = (
            ServiceBuilder()
            .layer(MetricsLayer(metrics, meter_provider=meters))
            .layer(TracingLayer())
            .service(transport)
        )
        with pytest.raises(Exception, match="Connect"):
            await service(Request("GET", url, endpoint="down"))
    assert metrics.errors_by_type == {"lamina.ConnectError": 1}
    (attempt,) = points(reader)["http.client.request.duration"]
    assert attempt.attributes["error.type"] == "lamina.ConnectError"
    assert "http.response.status_code" not in attempt.attributes


def test_bad_config() -> None:
    with pytest.raises(ConfigError) as info:
        MetricsLayer(metrics={})  # type: ignore[arg-type]
    assert info.value.field == "metrics"
    with pytest.raises(ConfigError) as info:
        MetricsLayer(meter_provider=object())  # type: ignore[arg-type]
    assert info.value.field == "meter_provider"


async def test_real_cache_hits_are_counted_and_skip_the_http_histogram(
    lamina_server: LocalServer, meters: MeterProvider, reader: InMemoryMetricReader
) -> None:
    from lamina.layers.cache import CacheLayer

    layer = MetricsLayer(meter_provider=meters)
    async with HttpxTransport() as transport:
        service = (
            ServiceBuilder()
            .layer(layer)
            .layer(CacheLayer(ttl=60, clock=ManualClock()))
            .layer(ParseLayer())
            .layer(TracingLayer())
            .service(transport)
        )
        first = await service(Request("GET", lamina_server.url_for("/json"), endpoint="c"))
        second = await service(Request("GET", lamina_server.url_for("/json"), endpoint="c"))
    assert not first.from_cache
    assert second.from_cache
    assert lamina_server.hits("/json") == 1
    assert layer.metrics.total_requests == 2
    assert layer.metrics.cache_hits == 1
    got = points(reader)
    assert sum(p.value for p in got["lamina.cache.hits"]) == 1
    (attempt,) = got["http.client.request.duration"]
    assert attempt.count == 1


async def test_instruments_are_made_once_per_meter_provider(
    lamina_server: LocalServer, meters: MeterProvider, reader: InMemoryMetricReader
) -> None:
    other_reader = InMemoryMetricReader()
    other = MeterProvider(metric_readers=[other_reader])
    layers = [
        MetricsLayer(meter_provider=meters),
        MetricsLayer(meter_provider=meters),
        MetricsLayer(meter_provider=other),
    ]
    try:
        async with HttpxTransport() as transport:
            services = [
                ServiceBuilder().layer(layer).layer(TracingLayer()).service(transport)
                for layer in layers
            ]
            made = [service.instruments for service in services if isinstance(service, Metrics)]
            assert len(made) == 3
            assert made[0] is made[1]  # one provider, one set of instruments
            assert made[2] is not made[0]
            assert layers[0].wrap(transport).instruments is made[0]  # type: ignore[attr-defined]
            for service in services:
                await service(Request("GET", lamina_server.url_for("/json"), endpoint="e"))
        (calls,) = points(reader)["lamina.call.duration"]
        assert calls.count == 2
        (attempts,) = points(reader)["http.client.request.duration"]
        assert attempts.count == 2
        (calls,) = points(other_reader)["lamina.call.duration"]
        assert calls.count == 1
    finally:
        other.shutdown()


# The stacks are built while the global meter provider is still OpenTelemetry's
# proxy; an SDK provider is set afterwards (once per process, hence a subprocess).
SDK_LATER_SCRIPT = """
import json, sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator

url, transport = sys.argv[1], sys.argv[2]
config = APIOrchestrationConfig(
    endpoints=[APIEndpoint(name="a", url=url), APIEndpoint(name="b", url=url)]
)
orchestrator = APIOrchestrator(config, transport=transport)
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
orchestrator.execute_sync()  # the stacks built on the proxy
orchestrator.execute_sync()  # a new loop: stacks rebuilt on the SDK provider
counts = {}
for resource in reader.get_metrics_data().resource_metrics:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            for point in metric.data.data_points:
                key = metric.name + " " + str(point.attributes.get("lamina.endpoint", "*"))
                counts[key] = counts.get(key, 0) + point.count
print(json.dumps(counts))
"""


def test_instruments_record_once_an_sdk_provider_is_set_later(
    lamina_server: LocalServer, layer_transport: str
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(SDK_LATER_SCRIPT),
            lamina_server.url_for("/json"),
            layer_transport,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {
        "lamina.call.duration a": 2,
        "lamina.call.duration b": 2,
        "http.client.request.duration *": 4,
    }
