"""Log requests, responses and errors on the stdlib logger ``lamina``, secrets removed."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from .. import _validate as check
from .._core import Request, Response, Service, stack_repr
from .._errors import ConfigError
from .._otel import error_type, full_url
from .._redact import redact_body, scrub, scrub_clip, secret_values

__all__ = ["LoggingLayer", "LoggingService"]


class LoggingLayer:
    """One log record per request and one per response (or error).

    Records carry structured ``extra`` fields: ``lamina_endpoint``,
    ``lamina_method``, ``lamina_url`` (redacted), ``lamina_attempt`` and, on the
    way back, ``lamina_status``, ``lamina_latency_ms`` (and ``lamina_error_type``).
    Requests and 2xx/3xx responses log at INFO, 4xx/5xx responses and errors at
    WARNING (errors show the exception type and its redacted message, no
    traceback). Bodies are logged only with ``log_bodies=True``, cut at
    ``max_body_chars`` and scrubbed of the request's secret values (in every
    encoding, before the cut). URLs are redacted by :mod:`lamina.redact`'s classifier.
    Inside the retry layer it logs every attempt; outside it, every call.
    """

    __slots__ = ("log_bodies", "log_requests", "log_responses", "logger", "max_body_chars")

    def __init__(
        self,
        log_requests: bool = True,
        log_responses: bool = True,
        *,
        log_bodies: bool = False,
        max_body_chars: int = 500,
        logger: logging.Logger | None = None,
    ) -> None:
        max_body_chars = check.count(max_body_chars, "max_body_chars", low=0)
        if logger is not None and not isinstance(logger, logging.Logger):
            raise ConfigError("must be a logging.Logger", field="logger")
        self.log_requests = bool(log_requests)
        self.log_responses = bool(log_responses)
        self.log_bodies = bool(log_bodies)
        self.max_body_chars = max_body_chars
        self.logger = logger if logger is not None else logging.getLogger("lamina")

    def wrap(self, inner: Service) -> Service:
        return LoggingService(inner, self)

    def __repr__(self) -> str:
        return (
            f"LoggingLayer(log_requests={self.log_requests}, log_responses={self.log_responses},"
            f" log_bodies={self.log_bodies})"
        )


class LoggingService:
    """Service made by :class:`LoggingLayer`."""

    __slots__ = ("config", "inner")

    def __repr__(self) -> str:
        return stack_repr(self)

    def __init__(self, inner: Service, config: LoggingLayer) -> None:
        self.inner = inner
        self.config = config

    async def __call__(self, request: Request) -> Response:
        cfg = self.config
        logger = cfg.logger
        if not logger.isEnabledFor(logging.WARNING):
            return await self.inner(request)
        base = {
            "lamina_endpoint": request.endpoint,
            "lamina_method": request.method,
            "lamina_url": full_url(request),
            "lamina_attempt": request.attempt,
        }
        name = request.endpoint or "-"
        if cfg.log_requests and logger.isEnabledFor(logging.INFO):
            extra = dict(base)
            message = "request %s %s %s attempt=%d"
            args: tuple[Any, ...] = (name, request.method, base["lamina_url"], request.attempt)
            if cfg.log_bodies:
                extra["lamina_body"] = self._body(request, _request_body(request))
                message += " body=%s"
                args = (*args, extra["lamina_body"])
            logger.info(message, *args, extra=extra)
        started = time.perf_counter()
        try:
            response = await self.inner(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if cfg.log_responses:
                self._log_error(request, base, exc, time.perf_counter() - started)
            raise
        if cfg.log_responses:
            self._log_response(request, base, response, time.perf_counter() - started)
        return response

    def _body(self, request: Request, text: str) -> str:
        # scrubbed before the cut, so a secret straddling it leaves no prefix behind
        limit = self.config.max_body_chars
        clipped = scrub_clip(redact_body(text), secret_values(request), limit)
        return clipped + ("…" if len(text) > limit else "")

    def _log_response(
        self, request: Request, base: dict[str, Any], response: Response, seconds: float
    ) -> None:
        logger = self.config.logger
        level = logging.WARNING if response.status_code >= 400 else logging.INFO
        if not logger.isEnabledFor(level):
            return
        latency = round(seconds * 1000.0, 3)
        extra = {**base, "lamina_status": response.status_code, "lamina_latency_ms": latency}
        message = "response %s %s %s -> %d in %.1fms"
        args: tuple[Any, ...] = (
            request.endpoint or "-",
            request.method,
            base["lamina_url"],
            response.status_code,
            latency,
        )
        if response.from_cache:
            extra["lamina_from_cache"] = True
            message += " (cache)"
        if self.config.log_bodies:
            extra["lamina_body"] = self._body(request, response.text)
            message += " body=%s"
            args = (*args, extra["lamina_body"])
        logger.log(level, message, *args, extra=extra)

    def _log_error(
        self, request: Request, base: dict[str, Any], exc: Exception, seconds: float
    ) -> None:
        kind = error_type(exc)
        detail = scrub(str(exc), secret_values(request))
        latency = round(seconds * 1000.0, 3)
        extra = {
            **base,
            "lamina_status": getattr(exc, "status_code", None),
            "lamina_latency_ms": latency,
            "lamina_error_type": kind,
        }
        self.config.logger.warning(
            "error %s %s %s -> %s: %s after %.1fms",
            request.endpoint or "-",
            request.method,
            base["lamina_url"],
            type(exc).__name__,
            detail,
            latency,
            extra=extra,
        )


def _request_body(request: Request) -> str:
    if request.json is not None:
        try:
            return json.dumps(request.json, default=str)
        except (TypeError, ValueError):
            return repr(request.json)
    if request.content:
        return request.content.decode("utf-8", errors="replace")
    return ""


Logging = LoggingService  # deprecated: the name before issue 15, kept for imports
