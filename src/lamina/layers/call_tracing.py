"""CallTracingLayer: one INTERNAL span per logical call, with the layers' events."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._core import Request, Response, Service, stack_repr
from .._errors import ConfigError
from .._events import listen
from .._otel import (
    ATTEMPT_EVENT,
    TracerSource,
    call_outcome,
    instrumentation_suppressed,
    normalize_method,
    record_error,
    safe_attributes,
)
from .._redact import secret_values

__all__ = ["CallTracingLayer", "CallTracingService"]


class CallTracingLayer:
    """One INTERNAL span per logical call (``lamina {endpoint}``), around every attempt.

    Records ``lamina.endpoint``, ``lamina.outcome``, ``lamina.attempts``,
    ``lamina.from_cache`` and turns the layers' events (retries, breaker
    rejections, rate-limit waits, cache hits) into span events.
    """

    __slots__ = ("tracer_provider",)

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        if tracer_provider is not None and not hasattr(tracer_provider, "get_tracer"):
            raise ConfigError("must be an OpenTelemetry TracerProvider", field="tracer_provider")
        self.tracer_provider = tracer_provider

    def wrap(self, inner: Service) -> Service:
        return CallTracingService(inner, self.tracer_provider)

    def __repr__(self) -> str:
        return "CallTracingLayer()"


class _CallObserver:
    """Per-call listener: counts attempts and turns events into span events."""

    __slots__ = ("attempts", "done", "request", "secrets", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.attempts = 0
        self.done = False
        self.request: Request | None = None
        self.secrets: list[str] | None = None

    def __call__(self, name: str, attributes: Mapping[str, Any]) -> None:
        if name == ATTEMPT_EVENT:
            self.attempts += 1
            return
        if self.done:
            return  # e.g. a background cache refresh after the call returned
        if self.secrets is None:
            self.secrets = secret_values(self.request) if self.request is not None else []
        self.span.add_event(name, safe_attributes(attributes, self.secrets))


class CallTracingService:
    """Service made by :class:`CallTracingLayer`."""

    __slots__ = ("inner", "source")

    def __repr__(self) -> str:
        return stack_repr(self)

    def __init__(self, inner: Service, tracer_provider: trace.TracerProvider | None) -> None:
        self.inner = inner
        self.source = TracerSource(tracer_provider)

    def __call__(self, request: Request) -> Coroutine[Any, Any, Response]:
        # Not a coroutine itself: with no span to record it hands back the inner call's.
        tracer = self.source.get()
        if tracer is None or instrumentation_suppressed(http=False):
            return self.inner(request)
        return self._traced(tracer, request)

    async def _traced(self, tracer: trace.Tracer, request: Request) -> Response:
        method = normalize_method(request.method)[0]
        endpoint = request.endpoint
        attrs: dict[str, Any] = {"http.request.method": method}
        if endpoint:
            attrs["lamina.endpoint"] = endpoint
        span = tracer.start_span(
            f"lamina {endpoint or method}", kind=SpanKind.INTERNAL, attributes=attrs
        )
        observer = _CallObserver(span)
        request = listen(request, observer)
        observer.request = request
        token = otel_context.attach(trace.set_span_in_context(span))
        response: Response | None = None
        try:
            response = await self.inner(request)
        except asyncio.CancelledError:
            span.set_attribute("lamina.outcome", "cancelled")
            raise
        except BaseException as exc:
            record_error(span, exc, request)
            span.set_attribute("lamina.outcome", "error")
            raise
        finally:
            otel_context.detach(token)
            observer.done = True
            attempts = max(observer.attempts, response.attempts if response else 0)
            self._finish(span, response, attempts)
            span.end()
        return response

    @staticmethod
    def _finish(span: trace.Span, response: Response | None, attempts: int) -> None:
        attrs: dict[str, Any] = {"lamina.attempts": attempts} if attempts else {}
        if response is not None:
            outcome, kind = call_outcome(response, None)
            attrs["lamina.outcome"] = outcome
            attrs["lamina.from_cache"] = response.from_cache
            attrs["http.response.status_code"] = response.status_code
            if response.stale:
                attrs["lamina.stale"] = True
            if kind is not None:
                attrs["error.type"] = kind
                span.set_status(Status(StatusCode.ERROR))
        if attrs:
            span.set_attributes(attrs)


CallTracing = CallTracingService  # deprecated: the name before issue 15, kept for imports
