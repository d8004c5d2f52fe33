"""Record every logical call into :class:`lamina.metrics.IOMetrics` and OpenTelemetry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics as otel_metrics

from .._core import Request, Response, Service, stack_repr
from .._errors import ConfigError
from .._events import listen
from .._otel import ATTEMPT_EVENT, call_outcome
from ..metrics import EVENT_KINDS, IOMetrics, OtelInstruments

__all__ = ["MetricsLayer", "MetricsService"]

UNNAMED = "default"


class MetricsLayer:
    """Count calls, errors, latency, retries, cache hits, breaker rejections and waits.

    Place it at call level (outside the cache and the retry layer). Each call is
    recorded once into ``metrics`` (an :class:`IOMetrics`, created if not given)
    under ``request.endpoint`` and into the OpenTelemetry instruments of
    ``meter_provider`` (the global one by default): ``lamina.call.duration``,
    the ``lamina.*`` counters and, from the ``http.attempt`` events that
    :class:`~lamina.layers.tracing.TracingLayer` reports, the semantic-convention
    histogram ``http.client.request.duration`` per attempt. Cancelled calls are
    not counted.
    """

    __slots__ = ("meter_provider", "metrics")

    def __init__(
        self,
        metrics: IOMetrics | None = None,
        *,
        meter_provider: otel_metrics.MeterProvider | None = None,
    ) -> None:
        if metrics is not None and not isinstance(metrics, IOMetrics):
            raise ConfigError("must be an IOMetrics", field="metrics")
        if meter_provider is not None and not hasattr(meter_provider, "get_meter"):
            raise ConfigError("must be an OpenTelemetry MeterProvider", field="meter_provider")
        self.metrics = metrics if metrics is not None else IOMetrics()
        self.meter_provider = meter_provider

    def wrap(self, inner: Service) -> Service:
        return MetricsService(
            inner, self.metrics, OtelInstruments.for_provider(self.meter_provider)
        )

    def __repr__(self) -> str:
        return f"MetricsLayer({self.metrics!r})"


class _Recorder:
    """Per-call listener turning layer events into counters."""

    __slots__ = ("endpoint", "instruments", "metrics")

    def __init__(self, endpoint: str, metrics: IOMetrics, instruments: OtelInstruments) -> None:
        self.endpoint = endpoint
        self.metrics = metrics
        self.instruments = instruments

    def __call__(self, name: str, attributes: Mapping[str, Any]) -> None:
        if name == ATTEMPT_EVENT:
            duration = attributes.get("duration")
            if isinstance(duration, int | float):
                self.instruments.request_duration.record(  # a fresh dict per event
                    float(duration), attributes.get("attributes") or {}
                )
            return
        kind = EVENT_KINDS.get(name)
        if kind is None:
            return
        self.metrics.record_event(self.endpoint, kind)
        counter = self.instruments.counters.get(kind)
        if counter is not None:
            counter.add(1, {"lamina.endpoint": self.endpoint})


class MetricsService:
    """Service made by :class:`MetricsLayer`."""

    __slots__ = ("inner", "instruments", "metrics", "recorders")

    def __repr__(self) -> str:
        return stack_repr(self)

    def __init__(self, inner: Service, metrics: IOMetrics, instruments: OtelInstruments) -> None:
        self.inner = inner
        self.metrics = metrics
        self.instruments = instruments
        self.recorders: dict[str, _Recorder] = {}  # by endpoint: a recorder holds no call state

    async def __call__(self, request: Request) -> Response:
        endpoint = request.endpoint or UNNAMED
        recorder = self.recorders.get(endpoint)
        if recorder is None:
            recorder = self.recorders[endpoint] = _Recorder(
                endpoint, self.metrics, self.instruments
            )
        recording = self.instruments.recording()
        # http.attempt only feeds an OpenTelemetry histogram: ask for it only then
        request = listen(request, recorder, attempts=recording)
        started = time.perf_counter()
        try:
            response = await self.inner(request)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._record(endpoint, time.perf_counter() - started, None, exc, recording)
            raise
        seconds = time.perf_counter() - started
        if response.status_code < 400 and not recording:  # the common case, in short
            self.metrics.record_request(endpoint, latency=seconds * 1000.0)
        else:
            self._record(endpoint, seconds, response, None, recording)
        return response

    def _record(
        self,
        endpoint: str,
        seconds: float,
        response: Response | None,
        exc: BaseException | None,
        recording: bool,
    ) -> None:
        outcome, kind = call_outcome(response, exc)
        if kind is None:
            self.metrics.record_request(endpoint, latency=seconds * 1000.0)
        else:
            self.metrics.record_error(endpoint, error_type=kind, latency=seconds * 1000.0)
        if not recording:
            return
        attrs = {"lamina.endpoint": endpoint, "lamina.outcome": outcome}
        if kind is not None:
            attrs["error.type"] = kind
        self.instruments.call_duration.record(seconds, attrs)


Metrics = MetricsService  # deprecated: the name before issue 15, kept for imports
