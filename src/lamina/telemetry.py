"""One call to send lamina's traces (and optionally metrics) over OTLP/HTTP.

Needs the optional extra: ``pip install 'lamina[otel]'``. See ``docs/jaeger.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["Telemetry", "configure"]

_INSTALL_HINT = "lamina.telemetry needs the OpenTelemetry SDK: pip install 'lamina[otel]'"


@dataclass
class Telemetry:
    """What :func:`configure` set up. Call :meth:`shutdown` before the program exits."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider | None
    traces_endpoint: str | None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span (and metric) now; True when all got through."""
        ok = bool(self.tracer_provider.force_flush(timeout_millis))
        if self.meter_provider is not None:
            ok = bool(self.meter_provider.force_flush(timeout_millis)) and ok
        return ok

    def shutdown(self) -> None:
        """Flush and stop the exporters."""
        self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def _signal_url(base: str, signal: str) -> str:
    base = base.rstrip("/")
    suffix = f"/v1/{signal}"
    return base if base.endswith(suffix) else base + suffix


def configure(
    service_name: str | None = None,
    otlp_endpoint: str | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    export_metrics: bool = False,
    metric_export_interval: float = 60.0,
    set_global: bool = True,
) -> Telemetry:
    """Set up the OpenTelemetry SDK to export lamina's spans with OTLP/HTTP protobuf.

    ``otlp_endpoint`` is the collector's base URL (``http://localhost:4318`` for
    Jaeger); ``/v1/traces`` is appended. Arguments left out fall back to the
    standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (default ``http://localhost:4318``),
    ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES`` and the ``OTEL_BSP_*`` batch settings.

    Spans go through a ``BatchSpanProcessor``. Pass ``tracer_provider`` to add
    the exporter to your own SDK provider. ``export_metrics=True`` also builds a
    ``MeterProvider`` exporting to ``/v1/metrics`` (Jaeger does not take
    metrics; use an OpenTelemetry Collector). ``set_global`` installs the
    providers as OpenTelemetry's globals, which lamina's layers use by default
    (the API allows that only once per process).
    """
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc

    if service_name is not None and (not isinstance(service_name, str) or not service_name):
        raise ConfigError("must be a non-empty string", field="service_name")
    if otlp_endpoint is not None and not str(otlp_endpoint).startswith(("http://", "https://")):
        raise ConfigError(
            "must be an http(s) URL such as http://localhost:4318", field="otlp_endpoint"
        )
    if metric_export_interval <= 0:
        raise ConfigError("must be > 0 seconds", field="metric_export_interval")

    attributes: dict[str, Any] = dict(resource_attributes or {})
    if service_name is not None:
        attributes[SERVICE_NAME] = service_name
    resource = Resource.create(attributes)

    traces_url = _signal_url(otlp_endpoint, "traces") if otlp_endpoint else None
    exporter = OTLPSpanExporter(endpoint=traces_url, headers=dict(headers) if headers else None)
    if tracer_provider is None:
        tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))

    meter_provider = None
    if export_metrics:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        except ImportError as exc:
            raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
        metrics_url = _signal_url(otlp_endpoint, "metrics") if otlp_endpoint else None
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=metrics_url, headers=dict(headers) if headers else None),
            export_interval_millis=metric_export_interval * 1000,
        )
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])

    if set_global:
        trace.set_tracer_provider(tracer_provider)
        if meter_provider is not None:
            metrics.set_meter_provider(meter_provider)
    endpoint = traces_url or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
    if endpoint is None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = _signal_url(os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"], "traces")
    return Telemetry(tracer_provider, meter_provider, endpoint or "http://localhost:4318/v1/traces")
