"""lamina's error tree.

::

    LaminaError
     ├── ConfigError (ValueError)        invalid configuration, raised at construction
     ├── TransportError                  the request failed on the wire
     │    └── ConnectError               nothing was sent (always safe to retry)
     │         └── ConnectTimeout        ... because connecting timed out (also a TimeoutError)
     ├── TimeoutError (builtins.TimeoutError)
     │                                   an attempt, a deadline or a connection timed out
     ├── HTTPStatusError                 the server answered with a non-2xx status
     ├── ParseError                      the body is not what was promised
     │    ├── ResponseTooLarge           the body passed max_response_bytes
     │    └── UnsupportedContentEncoding a Content-Encoding lamina cannot decode
     ├── CircuitOpenError                the endpoint's breaker is open (retry_after)
     ├── RateLimitExceeded               a limiter would make the call wait too long
     ├── ConcurrencyLimitExceeded        a bulkhead has no room and too many waiters
     ├── EndpointError                   an endpoint failed a fail_fast run (cause chained)
     ├── ErrorThresholdExceeded          a run's failed fraction passed error_threshold
     ├── OrchestrationTimeout (builtins.TimeoutError)
     │                                   a run passed its total_timeout
     └── BackendUnavailable              a shared-state backend (Redis) is unreachable
                                         and its policy is on_error="closed"

Every error carries ``endpoint`` (when known) and ``request`` (whose repr and
URL are redacted). Messages never contain header values or secret query values:
an error built with a ``request`` scrubs the request's secret values from its
message (and a ParseError from its snippet) in every encoding, so text copied
from a lower library (``Illegal header value b'Bearer tok\\n'``) is safe too.
"""

from __future__ import annotations

import builtins
import math
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._core import Request, Response
    from .orchestration.report import RunReport

__all__ = [
    "BackendUnavailable",
    "CircuitOpenError",
    "ConcurrencyLimitExceeded",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "EndpointError",
    "ErrorThresholdExceeded",
    "HTTPStatusError",
    "LaminaError",
    "OrchestrationTimeout",
    "ParseError",
    "RateLimitExceeded",
    "ResponseTooLarge",
    "TimeoutError",
    "TransportError",
    "UnsupportedContentEncoding",
]


class LaminaError(Exception):
    """Root of every error lamina raises.

    ``attempts`` is set by the retry layer to the number of tries made; ``report``
    by the orchestrator, when the error stopped a run, to what the run had done.
    """

    attempts: int | None = None
    report: RunReport | None = None

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        request: Request | None = None,
    ) -> None:
        if endpoint is None and request is not None:
            endpoint = request.endpoint
        if request is not None and message:
            message = request.scrub(message)
        self.endpoint = endpoint
        self.request = request
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"[{self.endpoint}] " if self.endpoint else ""
        target = ""
        if self.request is not None:
            target = f" ({self.request.method} {self.request.redacted_url})"
        return f"{where}{self.message}{target}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__))


def _rebuild(cls: type[LaminaError], state: dict[str, Any]) -> LaminaError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, err._render())
    return err


class ConfigError(LaminaError, ValueError):
    """Invalid configuration. ``field`` names the offending field."""

    def __init__(self, message: str, *, field: str | None = None, endpoint: str | None = None):
        self.field = field
        prefix = f"{field}: " if field else ""
        super().__init__(f"{prefix}{message}", endpoint=endpoint)


class TransportError(LaminaError):
    """The request failed on the wire (connect, read, write, protocol).

    ``request_sent`` is False only when nothing can have reached the server.
    """

    request_sent = True


class ConnectError(TransportError):
    """The connection could not be established; nothing was sent."""

    request_sent = False


#: The message of a ``CancelledError`` that a transport raises when the call was cancelled
#: while it still waited for its turn: nothing reached the server.
CANCELLED_BEFORE_SENDING = "lamina: cancelled before the request was sent"
#: ... when it was cancelled while connecting to the server (TCP, TLS): nothing was sent,
#: but the server (or the way to it) is what the attempt waited for.
CANCELLED_WHILE_CONNECTING = "lamina: cancelled while connecting"
#: ... and when it was cancelled after it had first waited for its turn (a connection).
#: Each carries the seconds waited for a connection as its second argument, once known.
CANCELLED_AFTER_WAITING = "lamina: cancelled after waiting for a connection"
_CANCELLED = (CANCELLED_BEFORE_SENDING, CANCELLED_WHILE_CONNECTING, CANCELLED_AFTER_WAITING)


def cancelled_before_sending(exc: BaseException) -> bool:
    """True if ``exc`` is a transport's cancellation of a request it had not sent yet
    (waiting for a connection, or connecting)."""
    return exc.args[:1] in ((CANCELLED_BEFORE_SENDING,), (CANCELLED_WHILE_CONNECTING,))


def cancelled_while_connecting(exc: BaseException) -> bool:
    """True if ``exc`` is a transport's cancellation of a request while it connected."""
    return exc.args[:1] == (CANCELLED_WHILE_CONNECTING,)


def connection_wait(exc: BaseException) -> float:
    """Seconds a cancelled request had waited for a connection (0.0 if unknown or none)."""
    args = exc.args
    if len(args) == 2 and args[0] in _CANCELLED:
        return float(args[1])
    return 0.0


class TimeoutError(LaminaError, builtins.TimeoutError):
    """An attempt, a deadline or a connection timed out.

    ``timeout`` is the limit in seconds when known; ``request_sent`` is False
    for connect and pool timeouts. ``waited`` is how much of the attempt went
    to waiting for a connection inside the transport (seconds): time the
    upstream never had, so a circuit breaker does not count such a timeout.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        request: Request | None = None,
        timeout: float | None = None,
        request_sent: bool = True,
        waited: float = 0.0,
    ) -> None:
        self.timeout = timeout
        self.request_sent = request_sent
        self.waited = waited
        super().__init__(message, endpoint=endpoint, request=request)


class ConnectTimeout(ConnectError, TimeoutError):
    """Connecting to the server timed out: nothing was sent, and the server (or the
    network to it) is what failed, so a circuit breaker counts it. ``waited`` is the
    part of the attempt spent waiting for a connection before connecting started."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        request: Request | None = None,
        timeout: float | None = None,
        waited: float = 0.0,
    ) -> None:
        TimeoutError.__init__(
            self,
            message,
            endpoint=endpoint,
            request=request,
            timeout=timeout,
            request_sent=False,
            waited=waited,
        )


def parse_retry_after(value: str, *, wall_now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    A date in the past gives ``0.0``; an unreadable value gives ``None``.
    ``wall_now`` is the current Unix time (default ``time.time()``).
    """
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        now = time.time() if wall_now is None else wall_now
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


class HTTPStatusError(LaminaError):
    """The server answered with a status the caller did not accept.

    ``retry_after`` is the response's ``Retry-After`` in seconds, when it had a readable one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        endpoint: str | None = None,
        request: Request | None = None,
        response: Response | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.response = response
        self.retry_after = retry_after
        if retry_after is not None:
            message = f"{message}; Retry-After {retry_after:g}s"
        super().__init__(message, endpoint=endpoint, request=request)

    @classmethod
    def from_response(cls, response: Response) -> HTTPStatusError:
        """Build the error for a non-2xx ``response``."""
        kind = "client error" if response.status_code < 500 else "server error"
        if response.status_code < 400:
            kind = "unexpected status"
        retry_after = None
        header = response.headers.get("retry-after")
        if header is not None:
            retry_after = parse_retry_after(header)
        error = cls(
            f"HTTP {response.status_code} {kind}",
            status_code=response.status_code,
            request=response.request,
            response=response,
            retry_after=retry_after,
        )
        error.attempts = response.attempts
        return error


class ParseError(LaminaError):
    """The body could not be turned into the promised value.

    ``snippet`` is a short, redacted start of the body.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        request: Request | None = None,
        status_code: int | None = None,
        snippet: str = "",
    ) -> None:
        self.status_code = status_code
        self.snippet = request.scrub(snippet) if snippet and request else snippet
        super().__init__(message, endpoint=endpoint, request=request)

    def _render(self) -> str:
        text = super()._render()
        if getattr(self, "status_code", None) is not None:
            text += f" status={self.status_code}"
        if getattr(self, "snippet", ""):
            text += f" body starts {self.snippet!r}"
        return text


class ResponseTooLarge(ParseError):
    """The body passed the configured ``max_response_bytes``."""

    def __init__(
        self,
        *,
        limit: int,
        endpoint: str | None = None,
        request: Request | None = None,
        status_code: int | None = None,
    ) -> None:
        self.limit = limit
        super().__init__(
            f"response body exceeds max_response_bytes={limit}",
            endpoint=endpoint,
            request=request,
            status_code=status_code,
        )


class UnsupportedContentEncoding(ParseError):
    """The response's ``Content-Encoding`` names a coding lamina cannot decode
    (``encoding``), or more codings than it decodes in a row."""

    def __init__(
        self,
        encoding: str,
        message: str,
        *,
        endpoint: str | None = None,
        request: Request | None = None,
        status_code: int | None = None,
    ) -> None:
        self.encoding = encoding
        super().__init__(message, endpoint=endpoint, request=request, status_code=status_code)


class CircuitOpenError(LaminaError):
    """The endpoint's circuit breaker is open; ``retry_after`` is in seconds."""

    def __init__(
        self,
        message: str = "circuit breaker is open",
        *,
        retry_after: float,
        endpoint: str | None = None,
        request: Request | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"{message}; next try in {retry_after:.3g}s", endpoint=endpoint, request=request
        )


class RateLimitExceeded(LaminaError):
    """A rate limiter would make the call wait longer than allowed."""

    def __init__(
        self,
        message: str = "rate limit exceeded",
        *,
        retry_after: float | None = None,
        endpoint: str | None = None,
        request: Request | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, endpoint=endpoint, request=request)


class ConcurrencyLimitExceeded(LaminaError):
    """A concurrency limit is full and its waiting room too."""


class EndpointError(LaminaError):
    """An endpoint failed and stopped the run (``fail_fast``); the cause is chained."""


class ErrorThresholdExceeded(LaminaError):
    """Too large a fraction of a run's calls failed (``error_threshold``)."""

    def __init__(self, message: str, *, failed: int, finished: int, threshold: float) -> None:
        self.failed = failed
        self.finished = finished
        self.threshold = threshold
        super().__init__(message)


class OrchestrationTimeout(LaminaError, builtins.TimeoutError):
    """A run passed its ``total_timeout``; nothing of it is left running."""

    def __init__(self, message: str, *, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(message)


class BackendUnavailable(LaminaError):
    """A shared-state backend (e.g. Redis) is unreachable and its policy is ``on_error="closed"``.

    ``backend`` names the kind of backend (``"redis"``).
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        endpoint: str | None = None,
        request: Request | None = None,
    ) -> None:
        self.backend = backend
        super().__init__(message, endpoint=endpoint, request=request)
