"""OpenTelemetry spans: one CLIENT span per HTTP attempt (and, re-exported, one per call).

Place :class:`CallTracingLayer` outermost and :class:`TracingLayer` just above
the transport (see ``docs/layers/tracing.md``). Both use the OpenTelemetry API
and the global tracer provider unless ``tracer_provider`` is given; with no SDK
installed they record nothing and cost little (figures in ``docs/layers/tracing.md``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._core import Request, Response, Service, stack_repr
from .._errors import ConfigError
from .._events import emit, wants_attempts
from .._otel import (
    ATTEMPT_EVENT,
    TracerSource,
    error_type,
    full_url,
    header_attributes,
    instrumentation_suppressed,
    normalize_method,
    record_error,
    recordable_headers,
    server_address_port,
    suppress_http_instrumentation,
)
from .call_tracing import CallTracing as CallTracing  # deprecated name
from .call_tracing import CallTracingLayer, CallTracingService

__all__ = ["CallTracingLayer", "CallTracingService", "TracingLayer", "TracingService"]

URL_TEMPLATE_KEY = "lamina.url_template"


def _check_names(value: Sequence[str] | None, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of header names", field=field)
    return recordable_headers(value)


class TracingLayer:
    """One CLIENT span per HTTP attempt, following the stable HTTP client conventions.

    Also injects W3C ``traceparent``/``tracestate`` through the global propagator.
    ``url_template`` (or ``request.extensions["lamina.url_template"]``) names the
    span ``"{method} {template}"``. ``record_headers`` lists request headers to
    record as ``http.request.header.<name>``; credentials are never recorded.
    ``suppress_http_instrumentation`` silences ``opentelemetry-instrumentation-httpx``
    under this span so an attempt is not traced twice; ``enabled=False`` turns the
    span off (keep the httpx instrumentation's spans instead).
    """

    __slots__ = (
        "enabled",
        "record_headers",
        "record_response_headers",
        "suppress_http_instrumentation",
        "tracer_provider",
        "url_template",
    )

    def __init__(
        self,
        *,
        url_template: str | None = None,
        record_headers: Sequence[str] | None = None,
        record_response_headers: Sequence[str] | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        enabled: bool = True,
        suppress_http_instrumentation: bool = True,
    ) -> None:
        if url_template is not None and (not isinstance(url_template, str) or not url_template):
            raise ConfigError("must be a non-empty string", field="url_template")
        if tracer_provider is not None and not hasattr(tracer_provider, "get_tracer"):
            raise ConfigError("must be an OpenTelemetry TracerProvider", field="tracer_provider")
        self.url_template = url_template
        self.record_headers = _check_names(record_headers, "record_headers")
        self.record_response_headers = _check_names(
            record_response_headers, "record_response_headers"
        )
        self.tracer_provider = tracer_provider
        self.enabled = bool(enabled)
        self.suppress_http_instrumentation = bool(suppress_http_instrumentation)

    def wrap(self, inner: Service) -> Service:
        return TracingService(inner, self)

    def __repr__(self) -> str:
        return f"TracingLayer(enabled={self.enabled}, url_template={self.url_template!r})"


class TracingService:
    """Service made by :class:`TracingLayer`."""

    __slots__ = ("config", "inner", "source")

    def __repr__(self) -> str:
        return stack_repr(self)

    def __init__(self, inner: Service, config: TracingLayer) -> None:
        self.inner = inner
        self.config = config
        self.source = TracerSource(config.tracer_provider)

    def __call__(self, request: Request) -> Coroutine[Any, Any, Response]:
        # Not a coroutine itself: with no span to record it hands back the inner call's.
        tracer = self.source.get() if self.config.enabled else None
        if tracer is None or instrumentation_suppressed():
            if wants_attempts(request):
                return self._timed(request)
            return self.inner(request)
        return self._traced(tracer, request)

    def _attributes(self, request: Request) -> tuple[str, dict[str, Any]]:
        method, original = normalize_method(request.method)
        template = self.config.url_template or request.extensions.get(URL_TEMPLATE_KEY)
        name = "HTTP" if method == "_OTHER" else method
        attrs: dict[str, Any] = {"http.request.method": method, "url.full": full_url(request)}
        if original is not None:
            attrs["http.request.method_original"] = original
        address, port = server_address_port(request.url)
        if address:
            attrs["server.address"] = address
        if port is not None:
            attrs["server.port"] = port
        if template:
            name = f"{name} {template}"
            attrs["url.template"] = str(template)
        if request.attempt > 1:
            attrs["http.request.resend_count"] = request.attempt - 1
        hedge = request.extensions.get("lamina.hedge")
        if hedge:  # a HedgeLayer's extra attempt (1, 2, ...): its own CLIENT span
            attrs["lamina.hedge"] = hedge
        if request.endpoint:
            attrs["lamina.endpoint"] = request.endpoint
        if self.config.record_headers:
            attrs.update(
                header_attributes(
                    "http.request.header.", self.config.record_headers, request.headers
                )
            )
        return name, attrs

    async def _traced(self, tracer: trace.Tracer, request: Request) -> Response:
        name, attrs = self._attributes(request)
        span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs)
        ctx = trace.set_span_in_context(span)
        if span.get_span_context().is_valid:
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=ctx)
            if carrier:
                request = request.replace(headers=request.headers.copy_with(carrier))
        if self.config.suppress_http_instrumentation:
            ctx = suppress_http_instrumentation(ctx)
        token = otel_context.attach(ctx)
        started = time.perf_counter()
        try:
            response = await self.inner(request)
        except asyncio.CancelledError:
            span.set_attribute("lamina.cancelled", True)  # the caller asked: not an error
            span.end()
            raise
        except BaseException as exc:
            failure = record_error(span, exc, request)
            span.end()
            self._emit(request, attrs, time.perf_counter() - started, None, failure)
            raise
        finally:
            otel_context.detach(token)
        status = response.status_code
        span.set_attribute("http.response.status_code", status)
        kind: str | None = None
        if status >= 400:
            kind = str(status)
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR))
        version = getattr(response.http, "http_version", None)
        if isinstance(version, str) and version.startswith("HTTP/"):
            span.set_attribute("network.protocol.version", version[5:])
        if self.config.record_response_headers:
            span.set_attributes(
                header_attributes(
                    "http.response.header.", self.config.record_response_headers, response.headers
                )
            )
        span.end()
        self._emit(request, attrs, time.perf_counter() - started, status, kind)
        return response

    async def _timed(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await self.inner(request)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._emit(request, None, time.perf_counter() - started, None, error_type(exc))
            raise
        status = response.status_code
        kind = str(status) if status >= 400 else None
        self._emit(request, None, time.perf_counter() - started, status, kind)
        return response

    @staticmethod
    def _emit(
        request: Request,
        span_attrs: Mapping[str, Any] | None,
        duration: float,
        status: int | None,
        kind: str | None,
    ) -> None:
        """Report the attempt (``http.attempt``) to call-level observers such as metrics."""
        if not wants_attempts(request):
            return
        if span_attrs is None:
            attrs = dict(_attempt_attributes(request.method, request.url))
        else:
            attrs = {"http.request.method": span_attrs["http.request.method"]}
            for key in ("server.address", "server.port"):
                if key in span_attrs:
                    attrs[key] = span_attrs[key]
        if status is not None:
            attrs["http.response.status_code"] = status
        if kind is not None:
            attrs["error.type"] = kind
        emit(request, ATTEMPT_EVENT, duration=duration, attributes=attrs)


@functools.lru_cache(maxsize=1024)
def _attempt_attributes(method: str, url: str) -> Mapping[str, Any]:
    """The attempt's method, server.address and server.port (a URL repeats per endpoint)."""
    attrs: dict[str, Any] = {"http.request.method": normalize_method(method)[0]}
    address, port = server_address_port(url)
    if address:
        attrs["server.address"] = address
    if port is not None:
        attrs["server.port"] = port
    return attrs


Tracing = TracingService  # deprecated: the name before issue 15, kept for imports
