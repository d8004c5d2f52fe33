"""ChaosLayer: seeded latency, faults and statuses; LAMINA_CHAOS; loud marks; the retry,
breaker and timeout layers react to injected faults as to real ones (loopback server,
every transport)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import lamina.transports
from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CircuitOpenError,
    ConfigError,
    ConnectError,
    OrchestrationMode,
    Request,
    Response,
    ServiceBuilder,
    TimeoutError,
    TransportError,
    service_fn,
)
from lamina._events import listen
from lamina.cli.report_html import render_html
from lamina.layers.chaos import (
    ENV_VAR,
    MARK_HEADER,
    ChaosLayer,
    chaos_from_env,
    parse_chaos,
    with_env_chaos,
)
from lamina.layers.circuit_breaker import CircuitBreakerLayer
from lamina.layers.metrics import MetricsLayer
from lamina.layers.parse import ParseLayer
from lamina.layers.retry import RetryLayer
from lamina.layers.timeout import TimeoutLayer
from lamina.metrics import IOMetrics
from lamina.testing import LocalServer, ManualClock

TRANSPORTS = {
    "httpx": "HttpxTransport",
    "aiohttp": "AiohttpTransport",
    "pyreqwest": "PyreqwestTransport",
}


@pytest.fixture(autouse=True)
def no_env_chaos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


class Upstream:
    """An in-memory upstream counting the calls that reach it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        return Response(200, content=b'{"ok": true}', request=request)


async def outcomes(layer: ChaosLayer, calls: int, endpoint: str = "users") -> list[str]:
    """What each call met: ``ok``, ``fault:<Error>``, ``status:<n>``, latency prefixed."""
    clock = layer.clock
    assert isinstance(clock, ManualClock)
    service = layer.wrap(service_fn(Upstream()))
    seen = []
    for _ in range(calls):
        before = len(clock.sleeps)
        try:
            response = await service(Request("GET", "http://u.test/x", endpoint=endpoint))
            what = "ok" if response.status_code == 200 else f"status:{response.status_code}"
        except Exception as exc:
            what = f"fault:{type(exc).__name__}"
        if len(clock.sleeps) > before:
            what = f"{clock.sleeps[-1]:.4f}s+{what}"
        seen.append(what)
    return seen


def chaos(**options: Any) -> ChaosLayer:
    return ChaosLayer(clock=ManualClock(autojump=True), **options)


MIXED = {
    "fault_rate": 0.2,
    "status": 503,
    "status_rate": 0.2,
    "latency": (0.01, 0.05),
    "latency_rate": 0.3,
}


# -- seeded and reproducible ------------------------------------------------------------


async def test_same_seed_same_injected_sequence_other_seed_another() -> None:
    first = await outcomes(chaos(**MIXED, seed=42), 300)
    again = await outcomes(chaos(**MIXED, seed=42), 300)
    other = await outcomes(chaos(**MIXED, seed=43), 300)
    assert first == again
    assert first != other
    faults = sum("fault:ConnectError" in x for x in first)
    statuses = sum("status:503" in x for x in first)
    delayed = sum("s+" in x for x in first)
    # rates hold roughly: 20% faults, 20% of the rest statuses, 30% delayed
    assert 35 <= faults <= 85
    assert 25 <= statuses <= 75
    assert 60 <= delayed <= 120
    delays = [float(x.split("s+")[0]) for x in first if "s+" in x]
    assert all(0.01 <= d <= 0.05 for d in delays)
    assert len(set(delays)) > 10  # drawn from the range, not fixed


async def test_each_endpoint_has_its_own_stream_whatever_the_interleaving() -> None:
    alone = await outcomes(chaos(fault_rate=0.5, seed="s"), 50, endpoint="a")
    layer = chaos(fault_rate=0.5, seed="s")
    mixed_a: list[str] = []
    for _ in range(50):
        mixed_a += await outcomes(layer, 1, endpoint="a")
        await outcomes(layer, 2, endpoint="b")
    assert mixed_a == alone


async def test_a_fixed_latency_waits_on_the_layers_clock() -> None:
    layer = chaos(latency=0.25, latency_rate=1.0)
    assert await outcomes(layer, 3) == ["0.2500s+ok"] * 3


# -- what is injected -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind", "sent"),
    [
        ("connect", ConnectError, False),
        ("timeout", TimeoutError, True),
        ("reset", TransportError, True),
    ],
)
async def test_fault_kinds_are_the_errors_retry_and_breaker_know(
    fault: str, kind: type[Exception], sent: bool
) -> None:
    upstream = Upstream()
    service = chaos(fault_rate=1.0, fault=fault).wrap(upstream)
    request = Request("GET", "http://u.test/x", endpoint="users")
    with pytest.raises(kind) as info:
        await service(request)
    assert info.value.request_sent is sent  # type: ignore[attr-defined]
    assert info.value.endpoint == "users"  # type: ignore[attr-defined]
    assert "chaos: injected" in str(info.value)
    assert upstream.calls == 0


async def test_a_fault_may_be_an_exception_class_of_your_own() -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom, match="chaos: injected"):
        await chaos(fault_rate=1.0, fault=Boom).wrap(Upstream())(Request("GET", "http://u/x"))


async def test_a_status_outcome_is_made_up_with_its_body_and_marked() -> None:
    upstream = Upstream()
    layer = chaos(status=429, status_rate=1.0, body={"slow": "down"}, headers={"Retry-After": "1"})
    response = await layer.wrap(upstream)(Request("GET", "http://u.test/x", endpoint="users"))
    assert response.status_code == 429
    assert response.json() == {"slow": "down"}
    assert response.headers["retry-after"] == "1"
    assert response.headers[MARK_HEADER] == "injected"
    assert upstream.calls == 0
    text = await chaos(status=500, status_rate=1.0, body="oops").wrap(upstream)(
        Request("GET", "http://u/x")
    )
    assert (text.text, text.headers["content-type"]) == ("oops", "text/plain; charset=utf-8")


async def test_each_injection_is_an_event_and_metrics_count_them() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    metrics = IOMetrics()
    layer = chaos(latency=0.1, latency_rate=1.0, fault_rate=1.0)
    service = ServiceBuilder([MetricsLayer(metrics), layer]).service(Upstream())
    request = listen(
        Request("GET", "http://u/x", endpoint="users"),
        lambda name, attrs: events.append((name, dict(attrs))),
    )
    with pytest.raises(ConnectError):
        await service(request)
    assert events == [
        ("chaos.injected", {"kind": "latency", "seconds": 0.1}),
        ("chaos.injected", {"kind": "fault", "error": "ConnectError"}),
    ]
    assert metrics.endpoint("users").events["chaos_injections"] == 2


async def test_a_warning_once_per_stack(caplog: pytest.LogCaptureFixture) -> None:
    layer = chaos(fault_rate=0.0001, seed=1)
    service = layer.wrap(Upstream())
    with caplog.at_level(logging.WARNING, logger="lamina.chaos"):
        for _ in range(5):
            await service(Request("GET", "http://u/x", endpoint="users"))
        await layer.wrap(Upstream())(Request("GET", "http://u/x", endpoint="users"))
    warnings = [r.getMessage() for r in caplog.records if r.name == "lamina.chaos"]
    assert len(warnings) == 2  # one per stack
    assert "chaos is ON for endpoint 'users': fault=connect@0.0001 seed=1" in warnings[0]


# -- off by default, off when asked ---------------------------------------------------------


def test_disabled_or_switched_off_by_the_environment_wraps_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream = Upstream()
    assert chaos(fault_rate=1.0, enabled=False).wrap(upstream) is upstream
    assert chaos(fault_rate=1.0).wrap(upstream) is not upstream
    for off in ("off", "0", "false", "NO"):
        monkeypatch.setenv(ENV_VAR, off)
        assert chaos(fault_rate=1.0).wrap(upstream) is upstream


def test_the_default_stack_has_no_chaos() -> None:
    config = APIOrchestrationConfig(endpoints=[APIEndpoint(name="a", url="http://u.test/a")])
    layers = APIOrchestrator.default_layers(config.endpoints[0], config)
    assert not any(isinstance(layer, ChaosLayer) for layer in layers)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({}, "fault_rate"),
        ({"fault_rate": 1.5}, "fault_rate"),
        ({"fault_rate": 0.1, "fault": "explode"}, "fault"),
        ({"fault_rate": 0.1, "fault": KeyError("x")}, "fault"),
        ({"status": 503}, "status_rate"),
        ({"status_rate": 0.5}, "status"),
        ({"status": 99, "status_rate": 0.5}, "status"),
        ({"latency": 0.1}, "latency_rate"),
        ({"latency": (0.5, 0.1), "latency_rate": 1}, "latency"),
        ({"latency": (0.1,), "latency_rate": 1}, "latency"),
        ({"latency": -1, "latency_rate": 1}, "latency"),
        ({"fault_rate": 0.1, "seed": True}, "seed"),
        ({"fault_rate": 0.1, "seed": 1.5}, "seed"),
        ({"status": 500, "status_rate": 1, "body": {1, 2}}, "body"),
        ({"fault_rate": 0.1, "headers": {"a": 1}}, "headers"),
        ({"fault_rate": 0.1, "enabled": "yes"}, "enabled"),
    ],
)
def test_bad_options_are_config_errors_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        ChaosLayer(**options)
    assert info.value.field == field


def test_the_environment_variable_is_parsed_strictly() -> None:
    options = parse_chaos("fault_rate=0.1, latency=0.01..0.05; latency_rate=0.5,seed=7,fault=reset")
    assert options == {
        "fault_rate": 0.1,
        "latency": [0.01, 0.05],
        "latency_rate": 0.5,
        "seed": 7,
        "fault": "reset",
    }
    assert parse_chaos("status=503,status_rate=1,body=down,seed=ci-run") == {
        "status": 503,
        "status_rate": 1.0,
        "body": "down",
        "seed": "ci-run",
    }
    for off in ("", "  ", "off", "0", "False"):
        assert parse_chaos(off) is None
    layer = chaos_from_env({ENV_VAR: "fault_rate=0.25,seed=3"})
    assert layer is not None
    assert layer.settings == "fault=connect@0.25 seed=3 from LAMINA_CHAOS"
    assert chaos_from_env({}) is None


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ("on", "LAMINA_CHAOS", "key=value"),
        ("fault_rat=0.1", "LAMINA_CHAOS.fault_rat", "did you mean 'fault_rate'"),
        ("fault_rate=lots", "LAMINA_CHAOS.fault_rate", "must be a number"),
        ("fault_rate=0.1,fault_rate=0.2", "LAMINA_CHAOS.fault_rate", "given twice"),
        ("status=5xx,status_rate=1", "LAMINA_CHAOS.status", "must be an integer"),
        ("fault_rate=2", "LAMINA_CHAOS.fault_rate", "fraction"),
        ("status=503", "LAMINA_CHAOS.status_rate", "needs status_rate"),
        ("latency=0.2..0.1,latency_rate=1", "LAMINA_CHAOS.latency", "above high"),
        (",", "LAMINA_CHAOS", "nothing"),
    ],
)
def test_bad_environment_values_are_config_errors(value: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        chaos_from_env({ENV_VAR: value})
    assert info.value.field == field


def test_the_environment_layer_goes_innermost_where_no_chaos_layer_is() -> None:
    own = ChaosLayer(fault_rate=0.5)
    parse = ParseLayer()
    stacks = with_env_chaos({"a": [parse], "b": [parse, own]}, environ={ENV_VAR: "fault_rate=0.1"})
    added = stacks["a"][-1]
    assert isinstance(added, ChaosLayer)
    assert added.origin == ENV_VAR
    assert stacks["b"] == [parse, own]
    assert with_env_chaos({"a": [parse]}, environ={}) == {"a": [parse]}


# -- the real server, every transport: the stack reacts as to real faults -------------------


@pytest.fixture(params=list(TRANSPORTS))
async def transport(request: pytest.FixtureRequest) -> Any:
    made = getattr(lamina.transports, TRANSPORTS[request.param])()
    yield made
    await made.aclose()


async def test_retry_retries_injected_faults_and_statuses(
    lamina_server: LocalServer, transport: Any
) -> None:
    clock = ManualClock(autojump=True)
    layer = ChaosLayer(fault_rate=0.3, status=503, status_rate=0.3, seed=11, clock=clock)
    retry = RetryLayer(retries=6, backoff=0.01, clock=clock)
    service = ServiceBuilder([ParseLayer(), retry, layer]).service(transport)
    attempts = 0
    for _ in range(20):
        response = await service(Request("GET", lamina_server.url_for("/json"), endpoint="prices"))
        assert response.value["ok"] is True
        attempts += response.attempts
    # every attempt either met an injected fault/status or reached the server
    faults_and_statuses = attempts - lamina_server.hits("/json")
    assert lamina_server.hits("/json") == 20
    assert faults_and_statuses > 5  # retry made up for them
    assert len(clock.sleeps) == faults_and_statuses  # one backoff per injected failure


@pytest.mark.parametrize("options", [{"fault_rate": 1.0}, {"status": 502, "status_rate": 1.0}])
async def test_injected_failures_open_the_breaker(
    lamina_server: LocalServer, transport: Any, options: dict[str, Any]
) -> None:
    clock = ManualClock()
    breaker = CircuitBreakerLayer(threshold=3, timeout=30.0, clock=clock)
    layer = ChaosLayer(**options, seed=1, clock=clock)
    service = ServiceBuilder([ParseLayer(), breaker, layer]).service(transport)
    request = Request("GET", lamina_server.url_for("/json"), endpoint="quotes")
    for _ in range(3):
        with pytest.raises((ConnectError, lamina.HTTPStatusError)):
            await service(request)
    with pytest.raises(CircuitOpenError):
        await service(request)
    assert breaker.breaker("quotes").state.value == "open"
    # without chaos the same stack reaches the server
    clean = ServiceBuilder([ParseLayer()]).service(transport)
    assert (await clean(request)).value["ok"] is True


async def test_injected_latency_trips_the_timeout(
    lamina_server: LocalServer, transport: Any
) -> None:
    layer = ChaosLayer(latency=5.0, latency_rate=1.0)
    service = ServiceBuilder([TimeoutLayer(0.05), layer]).service(transport)
    with pytest.raises(TimeoutError) as info:
        await service(Request("GET", lamina_server.url_for("/json"), endpoint="slow"))
    assert info.value.request_sent is True  # a slow upstream, as far as a breaker knows
    assert lamina_server.hits("/json") == 0


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp, exporter
    tp.shutdown()


@pytest.mark.parametrize("kind", list(TRANSPORTS))
async def test_lamina_chaos_marks_the_run_report_the_spans_and_the_metrics(
    lamina_server: LocalServer,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tp, exporter = provider
    monkeypatch.setenv(ENV_VAR, "fault_rate=0.5,seed=5")
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(
                name=f"e{i}", url=lamina_server.url_for("/json"), retry_count=5, retry_delay=0.001
            )
            for i in range(4)
        ],
        mode=OrchestrationMode.PARALLEL,
    )
    async with APIOrchestrator(config, transport=kind, tracer_provider=tp) as orch:
        report = await orch.run()
        metrics = orch.get_metrics()
    async with APIOrchestrator(config, transport=kind) as again:  # same seed, same faults
        repeat = await again.run()
    assert [r.injected for r in repeat.endpoints.values()] == [
        r.injected for r in report.endpoints.values()
    ]
    assert "CHAOS: fault injection was ON for e0, e1, e2, e3" in render_html(report, config)
    assert report.ok
    assert report.chaos == {f"e{i}": "fault=connect@0.5 seed=5 from LAMINA_CHAOS" for i in range(4)}
    injected = [x for r in report.endpoints.values() for x in r.injected]
    assert injected
    assert all(x.endswith(": ConnectError") and x.startswith("attempt ") for x in injected)
    assert sum(r.attempts for r in report.endpoints.values()) == 4 + len(injected)
    assert report.summary().startswith("CHAOS: fault injection was ON for e0, e1, e2, e3")
    assert report.to_dict()["chaos"] == report.chaos
    assert "chaos=ON" in repr(report)
    assert metrics.events["chaos_injections"] == len(injected)
    spans = exporter.get_finished_spans()
    attempts = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert attempts
    assert all((s.attributes or {}).get("lamina.chaos") for s in attempts)
    marked = [s for s in attempts if (s.attributes or {}).get("lamina.chaos.injected")]
    assert len(marked) == len(injected)
    call_events = [e.name for s in spans if s.kind == SpanKind.INTERNAL for e in s.events]
    assert call_events.count("chaos.injected") == len(injected)


async def test_without_lamina_chaos_the_report_has_no_chaos_mark(
    lamina_server: LocalServer,
) -> None:
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url=lamina_server.url_for("/json"))]
    )
    async with APIOrchestrator(config) as orch:
        report = await orch.run()
    assert report.chaos == {}
    assert "chaos" not in report.to_dict()
    assert "CHAOS" not in report.summary()


def test_the_benchmark_of_both_layers_runs() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "layers_fallback_chaos.py"
    done = subprocess.run(
        [sys.executable, str(script), "--calls", "50", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|")[1].strip() for line in done.stdout.splitlines()[3:]]
    assert rows == [
        "bare service_fn (200)",
        "FallbackLayer, call succeeds",
        "bare service_fn (raises ConnectError)",
        "FallbackLayer, falls back to a value",
        "FallbackLayer, falls back to an async fn",
        "ChaosLayer on, injects (almost) nothing",
        "ChaosLayer, fault on every call",
        "ChaosLayer, status 503 on every call",
        "ChaosLayer enabled=False (no wrap)",
    ]


async def test_opentelemetry_counts_fallbacks_and_injections() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from lamina.layers.fallback import FallbackLayer

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    try:
        layers = [
            MetricsLayer(meter_provider=meters),
            FallbackLayer("degraded"),
            chaos(fault_rate=1.0, latency=0.01, latency_rate=1.0),
        ]
        service = ServiceBuilder(layers).service(Upstream())
        for _ in range(3):
            response = await service(Request("GET", "http://u/x", endpoint="users"))
            assert response.value == "degraded"
        data = reader.get_metrics_data()
        assert data is not None
        totals: dict[str, float] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        if getattr(point, "attributes", {}).get("lamina.endpoint") == "users":
                            totals[metric.name] = totals.get(metric.name, 0) + getattr(
                                point, "value", 0
                            )
        assert totals["lamina.fallbacks"] == 3
        assert totals["lamina.chaos.injections"] == 6  # a delay and a fault per call
    finally:
        meters.shutdown()
