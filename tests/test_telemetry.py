"""lamina.telemetry.configure: real OTLP/HTTP export to a local receiver; secret sweep."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from lamina import ConfigError, HttpxTransport, LaminaError, Request, ServiceBuilder
from lamina.layers.logging import LoggingLayer
from lamina.layers.metrics import MetricsLayer
from lamina.layers.parse import ParseLayer
from lamina.layers.retry import RetryLayer
from lamina.layers.tracing import CallTracingLayer, TracingLayer
from lamina.metrics import IOMetrics
from lamina.telemetry import configure
from lamina.testing import LocalServer, ManualClock


class Receiver:
    """A tiny OTLP/HTTP receiver: stores every POST body by path."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.bodies.append((self.path, body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[tuple[dict[str, Any], str, Any]]:
        """``(resource attributes, scope name, span)`` for every span received."""
        out = []
        for path, body in self.bodies:
            assert path == "/v1/traces"
            message = ExportTraceServiceRequest()
            message.ParseFromString(body)
            for resource_spans in message.resource_spans:
                resource = attrs(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append((resource, scope_spans.scope.name, span))
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def test_spans_reach_an_otlp_http_receiver(
    receiver: Receiver, lamina_server: LocalServer
) -> None:
    telemetry = configure("orders-service", receiver.url, set_global=False)
    provider = telemetry.tracer_provider
    assert telemetry.traces_endpoint == receiver.url + "/v1/traces"
    async with HttpxTransport() as transport:
        service = (
            ServiceBuilder()
            .layer(CallTracingLayer(tracer_provider=provider))
            .layer(
                RetryLayer(attempts=2, backoff=0.2, jitter=False, clock=ManualClock(autojump=True))
            )
            .layer(TracingLayer(tracer_provider=provider))
            .service(transport)
        )
        await service(
            Request("GET", lamina_server.url_for("/flaky/otlp?fail=1"), endpoint="orders")
        )
    assert telemetry.force_flush(5_000)
    telemetry.shutdown()

    received = receiver.spans()
    assert {scope for _, scope, _ in received} == {"lamina"}
    assert received[0][0]["service.name"] == "orders-service"
    spans = {s.name: s for _, _, s in received if s.name == "lamina orders"}
    call = spans["lamina orders"]
    attempts = sorted(
        (s for _, _, s in received if s.name == "GET"), key=lambda s: s.start_time_unix_nano
    )
    assert len(attempts) == 2
    assert attrs(call.attributes)["lamina.attempts"] == 2
    assert [e.name for e in call.events] == ["retry.scheduled"]
    for span in attempts:
        assert span.parent_span_id == call.span_id
        assert span.trace_id == call.trace_id
        assert span.kind == span.SPAN_KIND_CLIENT
    first, second = (attrs(s.attributes) for s in attempts)
    assert first["http.response.status_code"] == 503
    assert first["error.type"] == "503"
    assert second["http.request.resend_count"] == 1
    assert second["server.port"] == lamina_server.port
    assert call.kind == call.SPAN_KIND_INTERNAL


def test_standard_env_vars_are_honoured(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    telemetry = configure(set_global=False)
    assert telemetry.traces_endpoint == receiver.url + "/v1/traces"
    telemetry.tracer_provider.get_tracer("t").start_span("hello").end()
    assert telemetry.force_flush(5_000)
    telemetry.shutdown()
    ((resource, _, span),) = receiver.spans()
    assert span.name == "hello"
    assert resource["service.name"] == "from-env"
    assert resource["deployment.environment"] == "test"


def test_bad_arguments_and_missing_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        configure("svc", "localhost:4318", set_global=False)
    assert info.value.field == "otlp_endpoint"
    with pytest.raises(ConfigError) as info:
        configure("", set_global=False)
    assert info.value.field == "service_name"
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ImportError, match=r"lamina\[otel\]"):
        configure("svc", set_global=False)


SECRETS = {
    "authorization": "AuthzSecretValue123",
    "cookie": "CookieSecretValue456",
    "x-api-key": "ApiKeySecretValue789",
    "query": "QuerySecretValue000",
}


async def test_secret_sweep_across_spans_logs_metrics_and_errors(
    receiver: Receiver, lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lamina")
    telemetry = configure("sweep", receiver.url, set_global=False)
    provider = telemetry.tracer_provider
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    metrics = IOMetrics()
    headers = {
        "Authorization": f"Bearer {SECRETS['authorization']}",
        "Cookie": f"session={SECRETS['cookie']}",
        "X-API-Key": SECRETS["x-api-key"],
        "X-Request-Id": "req-1",
    }
    with LocalServer() as gone:
        dead = gone.url_for("/x")
    errors: list[BaseException] = []
    async with HttpxTransport() as transport:
        service = (
            ServiceBuilder()
            .layer(CallTracingLayer(tracer_provider=provider))
            .layer(MetricsLayer(metrics, meter_provider=meters))
            .layer(ParseLayer())
            .layer(
                RetryLayer(attempts=2, backoff=0.1, jitter=False, clock=ManualClock(autojump=True))
            )
            .layer(LoggingLayer(log_bodies=True, max_body_chars=10_000))
            .layer(
                TracingLayer(
                    tracer_provider=provider,
                    record_headers=["authorization", "cookie", "x-api-key", "x-request-id"],
                    record_response_headers=["set-cookie", "content-type"],
                )
            )
            .service(transport)
        )
        for path in ("/flaky/sweep?fail=1", "/echo", "/status/500", "/invalid-json"):
            url = lamina_server.url_for(path)
            sep = "&" if "?" in url else "?"
            request = Request(
                "GET", f"{url}{sep}api_key={SECRETS['query']}", headers=headers, endpoint="sweep"
            )
            try:
                await service(request)
            except LaminaError as exc:
                errors.append(exc)
        try:
            await service(Request("GET", f"{dead}?api_key={SECRETS['query']}", headers=headers))
        except LaminaError as exc:
            errors.append(exc)
    assert len(errors) == 3
    assert telemetry.force_flush(5_000)
    telemetry.shutdown()

    # the echo route saw the secrets, so the check below is meaningful
    echoed = lamina_server.requests("/echo")[0]
    assert echoed.headers["x-api-key"] == SECRETS["x-api-key"]

    haystacks: dict[str, str] = {}
    haystacks["otlp"] = b"".join(body for _, body in receiver.bodies).decode("latin-1")
    spans = receiver.spans()
    assert len(spans) >= 8
    haystacks["spans"] = repr(
        [
            (
                s.name,
                attrs(s.attributes),
                [(e.name, attrs(e.attributes)) for e in s.events],
                s.status.message,
            )
            for _, _, s in spans
        ]
    )
    assert "http.request.header.x-request-id" in haystacks["spans"]
    assert "exception" in haystacks["spans"]
    logged = [r for r in caplog.records if r.name == "lamina"]
    assert len(logged) >= 10
    haystacks["logs"] = (
        repr([(r.getMessage(), r.__dict__, r.exc_text) for r in logged]) + caplog.text
    )
    assert "x-api-key" in haystacks["logs"]  # the echoed body was logged (scrubbed)
    data = reader.get_metrics_data()
    assert data is not None
    haystacks["metrics"] = data.to_json() + json.dumps(metrics.as_dict()) + repr(metrics)
    haystacks["errors"] = repr(
        [(str(e), repr(e), repr(e.request), str(e.__cause__)) for e in errors]
    )
    for where, text in haystacks.items():
        for name, secret in SECRETS.items():
            assert secret not in text, f"{name} secret leaked into {where}"
    meters.shutdown()


# -- issue 12, item 6: values only the caller knows are secret -------------------------------

CALLER_SECRET = "O'Brien&M<b>-otelCORE42"


def received_text(receiver: Receiver) -> str:
    """Every span name, attribute, event and status the receiver decoded, and the raw bodies."""
    spans = receiver.spans()
    assert spans, "nothing was exported"
    decoded = repr(
        [
            (
                s.name,
                attrs(s.attributes),
                [(e.name, attrs(e.attributes)) for e in s.events],
                s.status.message,
            )
            for _, _, s in spans
        ]
    )
    return decoded + b"".join(body for _, body in receiver.bodies).decode("latin-1")


async def test_configure_scrubs_caller_secrets_from_exported_spans(
    receiver: Receiver, lamina_server: LocalServer
) -> None:
    """A secret in a URL path (no name to classify it by) reaches url.full, the span's
    error message and its stack trace unless the exporter scrubs it; escaped too."""
    telemetry = configure("svc", receiver.url, set_global=False, secrets=[CALLER_SECRET])
    provider = telemetry.tracer_provider
    async with HttpxTransport() as transport:
        service = (
            ServiceBuilder()
            .layer(CallTracingLayer(tracer_provider=provider))
            .layer(ParseLayer())
            .layer(TracingLayer(tracer_provider=provider))
            .service(transport)
        )
        url = lamina_server.url_for(f"/no-such/{CALLER_SECRET}")
        with pytest.raises(LaminaError) as info:
            await service(Request("GET", url, endpoint=f"tenant {CALLER_SECRET!r}"))
    assert "otelCORE42" in str(info.value)  # the caller's own error is theirs to show
    assert telemetry.force_flush(5_000)
    telemetry.shutdown()
    text = received_text(receiver)
    assert "url.full" in text
    assert "exception" in text
    assert "[REDACTED]" in text
    assert "otelCORE42" not in text


def test_cli_otlp_export_and_report_hold_no_env_value(
    receiver: Receiver, lamina_server: LocalServer, tmp_path: Any
) -> None:
    """``lamina run --otlp-endpoint --report --json``: the ${ENV} value the flow used
    is in no span, no report (HTML entities, JSON escapes), no console line and no
    log line (the flow logs responses; without a logging config they reach stderr)."""
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: secret-in-path\n"
        "mode: sequential\n"
        "log_requests: true\n"  # its WARNING line reaches stderr
        "log_responses: true\n"
        "endpoints:\n"
        "  - name: lookup\n"
        f"    url: {lamina_server.url}/no-such/${{LAMINA_TEST_CLI_SECRET}}\n"
        "    retry_count: 0\n"
        "    headers:\n"
        "      X-Customer: ${LAMINA_TEST_CLI_SECRET}\n",
        encoding="utf-8",
    )
    report = tmp_path / "report.html"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "lamina.cli", "run", str(flow), "-q", "--json"),
            *("--otlp-endpoint", receiver.url, "--report", str(report)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LAMINA_TEST_CLI_SECRET": CALLER_SECRET},
    )
    assert done.returncode == 1, done.stderr  # the lookup answered 404
    assert lamina_server.requests()[-1].headers["x-customer"] == CALLER_SECRET
    page = report.read_text(encoding="utf-8")
    assert "lookup" in page
    assert "response lookup GET" in done.stderr  # the flow's log line was written
    outputs = {
        "otlp": received_text(receiver),
        "html report": page,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }
    for where, text in outputs.items():
        assert "otelCORE42" not in text, f"the env value leaked in {where}"
