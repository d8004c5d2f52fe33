"""OpenTelemetry helpers shared by the tracing, metrics and logging layers.

Everything here uses the OpenTelemetry *API* only; the SDK is optional
(see :mod:`lamina.telemetry`). Attribute names follow the stable HTTP client
semantic conventions.
"""

from __future__ import annotations

import asyncio
import functools
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from ._core import Request, Response
from ._errors import HTTPStatusError, LaminaError
from ._headers import Headers
from ._redact import is_secret_header, redact_url, scrub, secret_values

__all__ = [
    "ATTEMPT_EVENT",
    "KNOWN_METHODS",
    "SCOPE_NAME",
    "TracerSource",
    "call_outcome",
    "error_type",
    "full_url",
    "header_attributes",
    "instrumentation_suppressed",
    "normalize_method",
    "record_error",
    "recordable_headers",
    "safe_attributes",
    "server_address_port",
    "suppress_http_instrumentation",
]

SCOPE_NAME = "lamina"

#: Event the attempt-level TracingLayer emits per HTTP attempt (duration, attributes).
ATTEMPT_EVENT = "http.attempt"

#: Methods the HTTP semantic conventions know; anything else is reported as ``_OTHER``.
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)

#: Headers never recorded, even when a user lists them.
NEVER_RECORDED = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

_SUPPRESS_HTTP = getattr(otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)
_SUPPRESS_ALL = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)
_MAX_MESSAGE = 500
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _version() -> str:
    from ._version import __version__

    return __version__


class TracerSource:
    """The ``lamina`` tracer of a given provider, or of the global one.

    With the global provider, :meth:`get` answers ``None`` (cheaply) until an
    SDK provider is installed, so layers can skip all span work on the no-op
    path; once one is installed it returns the real tracer, not the proxy.
    """

    __slots__ = ("_provider", "_tracer")

    def __init__(self, tracer_provider: trace.TracerProvider | None) -> None:
        self._provider = tracer_provider
        self._tracer: trace.Tracer | None = None
        if tracer_provider is None:
            trace.get_tracer_provider()  # loads OTEL_PYTHON_TRACER_PROVIDER if set
        elif not isinstance(tracer_provider, trace.NoOpTracerProvider):
            self._tracer = tracer_provider.get_tracer(SCOPE_NAME, _version())

    def get(self) -> trace.Tracer | None:
        """The tracer to use now, or ``None`` when tracing is a no-op."""
        tracer = self._tracer
        if tracer is not None or self._provider is not None:
            return tracer
        # The global provider can be set once; until then the API is a no-op.
        if getattr(trace, "_TRACER_PROVIDER", True) is None:
            return None
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.NoOpTracerProvider):
            return None
        tracer = provider.get_tracer(SCOPE_NAME, _version())
        if not isinstance(provider, trace.ProxyTracerProvider):
            self._tracer = tracer
        return tracer


def instrumentation_suppressed(http: bool = True) -> bool:
    """True when the current context asks instrumentations to stay quiet."""
    if _SUPPRESS_ALL is not None and otel_context.get_value(_SUPPRESS_ALL):
        return True
    return bool(http and _SUPPRESS_HTTP is not None and otel_context.get_value(_SUPPRESS_HTTP))


def suppress_http_instrumentation(ctx: otel_context.Context) -> otel_context.Context:
    """``ctx`` with the key that tells HTTP client instrumentations (httpx, ...) to skip."""
    if _SUPPRESS_HTTP is None:
        return ctx
    return otel_context.set_value(_SUPPRESS_HTTP, True, ctx)


def normalize_method(method: str) -> tuple[str, str | None]:
    """``(http.request.method, http.request.method_original or None)``."""
    upper = method.upper()
    if upper in KNOWN_METHODS:
        return upper, (method if method != upper else None)
    return "_OTHER", method


def _param_value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def full_url(request: Request) -> str:
    """The redacted absolute URL, ``params`` included."""
    url = request.url
    if request.params:
        pairs: list[tuple[str, str]] = []
        for key, value in request.params.items():
            if isinstance(value, list | tuple):
                pairs += [(str(key), _param_value(v)) for v in value]
            else:
                pairs.append((str(key), _param_value(value)))
        try:
            parts = urlsplit(url)
            query = "&".join(q for q in (parts.query, urlencode(pairs)) if q)
            url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
        except ValueError:
            return "<invalid url>"
    return redact_url(url)


@functools.lru_cache(maxsize=512)
def server_address_port(url: str) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port`` (scheme default when absent)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None, None
    return parts.hostname, port if port is not None else _DEFAULT_PORTS.get(parts.scheme)


def header_attributes(prefix: str, names: Iterable[str], headers: Headers) -> dict[str, list[str]]:
    """``{prefix + name: [values]}`` for listed, non-secret headers that are present."""
    out: dict[str, list[str]] = {}
    for name in names:
        values = headers.get_list(name)
        if values:
            out[prefix + name] = list(values)
    return out


def recordable_headers(names: Iterable[str] | None) -> tuple[str, ...]:
    """Lower-cased header names minus every credential-bearing one."""
    if not names:
        return ()
    kept = []
    for name in names:
        lowered = str(name).strip().lower()
        if lowered and lowered not in NEVER_RECORDED and not is_secret_header(lowered):
            kept.append(lowered)
    return tuple(dict.fromkeys(kept))


def error_type(exc: BaseException) -> str:
    """Low-cardinality ``error.type``: the status for HTTP errors, else the class name.

    lamina's own errors are named as exported (``lamina.TimeoutError``).
    """
    if isinstance(exc, HTTPStatusError):
        return str(exc.status_code)
    cls = type(exc)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    if isinstance(exc, LaminaError) and module.startswith("lamina."):
        return f"lamina.{cls.__qualname__}"
    return f"{module}.{cls.__qualname__}"


def call_outcome(response: Response | None, exc: BaseException | None) -> tuple[str, str | None]:
    """``("success" | "error" | "cancelled", error.type or None)`` for a finished call."""
    if exc is not None:
        if isinstance(exc, asyncio.CancelledError):
            return "cancelled", None
        return "error", error_type(exc)
    if response is not None and response.status_code >= 400:
        return "error", str(response.status_code)
    return "success", None


def safe_attributes(
    attributes: Mapping[str, Any], secrets: Iterable[str], prefix: str = ""
) -> dict[str, str | bool | int | float]:
    """Event attributes made OTel-valid (primitives, ``None`` dropped) and scrubbed."""
    secrets = list(secrets)
    out: dict[str, str | bool | int | float] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, bool | int | float):
            out[prefix + key] = value
        else:
            out[prefix + key] = scrub(str(value), secrets)
    return out


def record_error(span: trace.Span, exc: BaseException, request: Request) -> str:
    """Mark ``span`` failed by ``exc``; message and stack trace are scrubbed of secrets."""
    kind = error_type(exc)
    secrets = secret_values(request)
    message = scrub(str(exc), secrets)[:_MAX_MESSAGE]
    stack = scrub("".join(traceback.format_exception(exc)), secrets)
    span.set_attribute("error.type", kind)
    span.add_event(
        "exception",
        {
            "exception.type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "exception.message": message,
            "exception.stacktrace": stack,
        },
    )
    span.set_status(Status(StatusCode.ERROR, message or kind))
    return kind
