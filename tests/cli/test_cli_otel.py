"""``lamina run --otlp-endpoint`` honours the OTEL_* variables and says once, quickly,
when the collector is not there (issue 14, item 13)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from lamina.testing import LocalServer

from .conftest import Cli
from .test_cli import Receiver, receiver  # noqa: F401 - the fixture

WriteFlow = Callable[..., Path]
CLEAN = {"OTEL_SERVICE_NAME": "", "OTEL_RESOURCE_ATTRIBUTES": ""}


def _resources(sink: Receiver) -> list[dict[str, str]]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    out = []
    for _, body in sink.bodies:
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for rs in message.resource_spans:
            out.append({a.key: a.value.string_value for a in rs.resource.attributes})
    return out


def _flow(write_flow: WriteFlow, server: LocalServer) -> Path:
    return write_flow(f"endpoints:\n  - name: a\n    url: {server.url}/json\n")


@pytest.mark.parametrize(
    ("env", "service", "extra"),
    [
        (
            {"OTEL_SERVICE_NAME": "orders-cli", "OTEL_RESOURCE_ATTRIBUTES": "team=payments"},
            "orders-cli",
            {"team": "payments"},
        ),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,deployment.environment=ci"},
            "from-attrs",
            {"deployment.environment": "ci"},
        ),
        ({}, "lamina-cli", {}),
    ],
)
def test_otel_variables_name_the_service(
    cli: Cli,
    write_flow: WriteFlow,
    lamina_server: LocalServer,
    receiver: Receiver,  # noqa: F811
    env: dict[str, str],
    service: str,
    extra: dict[str, str],
) -> None:
    done = cli(
        "run",
        str(_flow(write_flow, lamina_server)),
        "-q",
        "--otlp-endpoint",
        receiver.url,
        env={**CLEAN, **env},
    )
    assert done.returncode == 0, done.stderr
    resources = _resources(receiver)
    assert resources
    for resource in resources:
        assert resource["service.name"] == service
        for key, value in extra.items():
            assert resource[key] == value


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


def test_a_dead_collector_gives_one_warning_line(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    endpoint = f"http://127.0.0.1:{_dead_port()}"
    done = cli(
        "run",
        str(_flow(write_flow, lamina_server)),
        "-q",
        "--otlp-endpoint",
        endpoint,
        env=CLEAN,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr  # the run itself succeeded
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("warning: ")
    assert f"{endpoint}/v1/traces" in lines[0]
    assert "Transient error" not in done.stderr
    assert "Traceback" not in done.stderr


def test_the_cli_bounds_the_export_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from lamina.cli.otlp import EXPORT_TIMEOUT, export_timeout

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TIMEOUT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", raising=False)
    assert export_timeout() == EXPORT_TIMEOUT <= 3  # not the SDK's 10 s of retries
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "7")
    assert export_timeout() is None  # the user's setting: the exporter reads it


def test_the_warning_line_hides_the_collectors_credentials(
    cli: Cli, write_flow: WriteFlow, lamina_server: LocalServer
) -> None:
    """A collector URL with user info or a key in its query (vendors take one) is
    printed redacted, like every other URL lamina prints."""
    port = _dead_port()
    done = cli(
        "run",
        str(_flow(write_flow, lamina_server)),
        "-q",
        "--otlp-endpoint",
        f"http://bot:hunter2pw@127.0.0.1:{port}/otlp?api_key=KEY-0042-XYZ",
        env=CLEAN,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    assert f"127.0.0.1:{port}/otlp/v1/traces?api_key=[REDACTED]" in line
    assert "hunter2pw" not in line
    assert "KEY-0042-XYZ" not in line


def test_the_signal_path_goes_on_the_path_not_into_the_query() -> None:
    from lamina.telemetry import _signal_url

    assert _signal_url("http://h:4318/base/?k=v", "traces") == "http://h:4318/base/v1/traces?k=v"
    assert _signal_url("http://h:4318", "traces") == "http://h:4318/v1/traces"
    assert _signal_url("http://h:4318/v1/traces", "traces") == "http://h:4318/v1/traces"
