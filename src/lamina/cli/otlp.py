"""``lamina run --otlp-endpoint URL``: export the run's spans with the standard ``OTEL_*``
variables honoured, and when the collector is not there, one warning line at the end
(not the SDK's retry messages) after a bounded wait."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

from .._redact import redact_text, redact_url, scrub_clip

__all__ = ["DEFAULT_SERVICE_NAME", "EXPORT_TIMEOUT", "CliTelemetry", "export_timeout"]

#: ``service.name`` when neither ``OTEL_SERVICE_NAME`` nor ``OTEL_RESOURCE_ATTRIBUTES`` names one.
DEFAULT_SERVICE_NAME = "lamina-cli"
#: Seconds one export may take, retries included, unless ``OTEL_EXPORTER_OTLP_TIMEOUT`` or
#: ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` says otherwise (the SDK's own default is 10 s).
EXPORT_TIMEOUT = 2.0
TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
#: The loggers the OpenTelemetry SDK and exporters write their retry messages to.
OTEL_LOGGER = "opentelemetry"
REASONS = (
    (re.compile(r"connection refused", re.I), "connection refused"),
    (re.compile(r"timed? ?out", re.I), "timed out"),
    (
        re.compile(r"name or service not known|nodename nor servname|getaddrinfo", re.I),
        "unknown host",
    ),
    (re.compile(r"status code (\d{3})|HTTP (\d{3})", re.I), "HTTP error"),
)


def export_timeout() -> float | None:
    """:data:`EXPORT_TIMEOUT`, or None when a ``*_TIMEOUT`` variable sets it."""
    if any(os.environ.get(name, "").strip() for name in TIMEOUT_VARIABLES):
        return None
    return EXPORT_TIMEOUT


class _Keep(logging.Handler):
    """Keeps the SDK's warnings for the one line at the end."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a record that cannot format is no reason to fail the run
            self.messages.append(record.msg if isinstance(record.msg, str) else "")


class CliTelemetry:
    """Set up the export for one ``lamina run``; :meth:`finish` flushes it and returns
    the warning line to print, or None when every span got through."""

    def __init__(self, endpoint: str, secrets: Iterable[str]) -> None:
        from ..telemetry import configure

        self.secrets = list(secrets)
        self._logger = logging.getLogger(OTEL_LOGGER)
        self._keep = _Keep()
        self._propagate = self._logger.propagate
        self._logger.addHandler(self._keep)
        self._logger.propagate = False  # no retry messages on stderr (nor Python's lastResort)
        try:
            self.telemetry = configure(  # exported spans are scrubbed of the flow's secrets
                otlp_endpoint=endpoint,
                secrets=self.secrets,
                default_service_name=DEFAULT_SERVICE_NAME,
                export_timeout=export_timeout(),
                give_up_after_failure=True,
            )
        except BaseException:
            self._restore()
            raise

    def _restore(self) -> None:
        self._logger.removeHandler(self._keep)
        self._logger.propagate = self._propagate

    def finish(self) -> str | None:
        """Export what is left, stop the exporter, and say once if spans were lost."""
        telemetry = self.telemetry
        try:
            telemetry.force_flush()
            telemetry.shutdown()
        finally:
            self._restore()
        watched = telemetry.exporter
        lost = watched.dropped if watched is not None else 0
        if watched is None or not watched.failures:
            return None
        reason = self._reason()
        where = redact_url(telemetry.traces_endpoint or "")  # a collector may take a key
        return (
            f"warning: {lost} span(s) not exported to {where}: {reason} "
            "(is a collector listening there? see docs/jaeger.md)"
        )

    def _reason(self) -> str:
        text = " ".join(self._keep.messages)
        for pattern, reason in REASONS:
            match = pattern.search(text)
            if match:
                code = next((g for g in match.groups() if g), None)
                return f"{reason} {code}" if code else reason
        last = self._keep.messages[-1] if self._keep.messages else "the export failed"
        return scrub_clip(redact_text(last), self.secrets, 160)
