"""One call to send lamina's traces (and optionally metrics) over OTLP/HTTP.

Needs the optional extra: ``pip install 'lamina[otel]'``. See ``docs/jaeger.md``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _validate as check
from ._errors import ConfigError
from ._extras import require
from ._redact import scrub

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = [
    "ScrubbingSpanExporter",
    "Telemetry",
    "WatchedSpanExporter",
    "configure",
    "env_service_name",
]

#: What :func:`configure` imports (``lamina[otel]``); without them it raises
#: :class:`lamina._extras.MissingExtra` (a ``ConfigError`` and an ``ImportError``).
OTEL_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)


@dataclass
class Telemetry:
    """What :func:`configure` set up. Call :meth:`shutdown` before the program exits."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider | None
    traces_endpoint: str | None
    exporter: WatchedSpanExporter | None = None
    """The span exporter :func:`configure` added: it counts what did not get through."""

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


class WatchedSpanExporter:
    """A span exporter that counts failed exports and the spans they held
    (:attr:`failures`, :attr:`dropped`). With ``give_up=True`` the first failure ends
    exporting: later batches are dropped at once instead of waiting for a collector that
    is not there (the CLI's choice: a short run should not spend its end on retries)."""

    def __init__(self, exporter: SpanExporter, *, give_up: bool = False) -> None:
        self.exporter = exporter
        self.give_up = give_up
        self.failures = 0
        self.dropped = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export ``spans`` (or drop them once given up), counting a failure."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self.give_up and self.failures:
            self.dropped += len(spans)
            return SpanExportResult.FAILURE
        try:
            result = self.exporter.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.failures += 1
            self.dropped += len(spans)
        return result

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the wrapped exporter."""
        return bool(self.exporter.force_flush(timeout_millis))


class ScrubbingSpanExporter:
    """A span exporter that scrubs ``secrets`` from every span before ``exporter`` sees it.

    Span names, attribute values (strings and lists of strings), event names and
    attributes, link attributes and the status description go through
    :func:`lamina.redact.scrub` (every encoding). lamina's layers already keep each
    request's own secrets out of spans; this removes values only the caller knows
    are secret, such as the environment values a flow file used (the CLI's
    ``--otlp-endpoint``) when they sit in a URL path or a body.
    """

    def __init__(self, exporter: SpanExporter, secrets: Iterable[str]) -> None:
        self.exporter = exporter
        self.secrets = frozenset(s for s in secrets if isinstance(s, str) and s)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export scrubbed copies of ``spans``."""
        return self.exporter.export([self.scrubbed(span) for span in spans])

    def scrubbed(self, span: ReadableSpan) -> ReadableSpan:
        """A copy of ``span`` with every secret value replaced."""
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import Link, Status

        if not self.secrets:
            return span
        status = span.status
        if status.description:
            status = Status(status.status_code, self._text(status.description))
        return ReadableSpan(
            name=self._text(span.name),
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=self._attributes(span.attributes),
            events=[
                Event(self._text(e.name), self._attributes(e.attributes), e.timestamp)
                for e in span.events
            ],
            links=[Link(link.context, self._attributes(link.attributes)) for link in span.links],
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _text(self, text: str) -> str:
        return scrub(text, self.secrets)

    def _attributes(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (attributes or {}).items():
            if isinstance(value, str):
                value = self._text(value)
            elif isinstance(value, list | tuple):
                value = tuple(self._text(v) if isinstance(v, str) else v for v in value)
            out[key] = value
        return out

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the wrapped exporter."""
        return bool(self.exporter.force_flush(timeout_millis))


def _signal_url(base: str, signal: str) -> str:
    """``base`` with ``/v1/<signal>`` added to its path (a query stays after it)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(base)
    except ValueError:  # the exporter will say what is wrong with it
        parts = urlsplit("")._replace(path=base)
    path = parts.path.rstrip("/")
    suffix = f"/v1/{signal}"
    if not path.endswith(suffix):
        path += suffix
    return urlunsplit(parts._replace(path=path))


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
    secrets: Iterable[str] = (),
    default_service_name: str | None = None,
    export_timeout: float | None = None,
    give_up_after_failure: bool = False,
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
    (the API allows that only once per process). ``secrets`` are values scrubbed
    from every exported span in any encoding (:class:`ScrubbingSpanExporter`; the
    CLI passes the environment values its flow used).

    ``default_service_name`` is the service name used only when neither
    ``service_name``, ``OTEL_SERVICE_NAME`` nor a ``service.name`` in
    ``OTEL_RESOURCE_ATTRIBUTES`` gives one. ``export_timeout`` bounds one export,
    retries included, in seconds (default: ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` /
    ``OTEL_EXPORTER_OTLP_TIMEOUT``, else the SDK's 10 s); ``give_up_after_failure``
    drops every batch after the first failed one (:class:`WatchedSpanExporter`).
    """
    require(OTEL_MODULES, "otel", "lamina.telemetry", field="otlp_endpoint")
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if service_name is not None and (not isinstance(service_name, str) or not service_name):
        raise ConfigError("must be a non-empty string", field="service_name")
    if otlp_endpoint is not None and not str(otlp_endpoint).startswith(("http://", "https://")):
        raise ConfigError(
            "must be an http(s) URL such as http://localhost:4318", field="otlp_endpoint"
        )
    metric_export_interval = check.seconds(metric_export_interval, "metric_export_interval")

    attributes: dict[str, Any] = dict(resource_attributes or {})
    if service_name is None and SERVICE_NAME not in attributes and not env_service_name():
        service_name = default_service_name
    if service_name is not None:
        attributes[SERVICE_NAME] = service_name
    resource = Resource.create(attributes)

    traces_url = _signal_url(otlp_endpoint, "traces") if otlp_endpoint else None
    if isinstance(secrets, str):
        raise ConfigError("must be a list of values, not one string", field="secrets")
    secret_set = frozenset(secrets)
    if export_timeout is not None:
        export_timeout = check.seconds(export_timeout, "export_timeout", high=3600)
    exporter: Any = OTLPSpanExporter(
        endpoint=traces_url, headers=dict(headers) if headers else None, timeout=export_timeout
    )
    if secret_set:
        exporter = ScrubbingSpanExporter(exporter, secret_set)
    watched = exporter = WatchedSpanExporter(exporter, give_up=give_up_after_failure)
    if tracer_provider is None:
        tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))

    meter_provider = None
    if export_metrics:
        require(
            ("opentelemetry.exporter.otlp.proto.http.metric_exporter",),
            "otel",
            "export_metrics=True",
            field="export_metrics",
        )
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

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
    return Telemetry(
        tracer_provider, meter_provider, endpoint or "http://localhost:4318/v1/traces", watched
    )


def env_service_name() -> str | None:
    """The service name the standard variables give: ``OTEL_SERVICE_NAME``, else a
    ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES`` (``key=value,key=value``)."""
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        return name
    for pair in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "service.name" and value.strip():
            return value.strip()
    return None
