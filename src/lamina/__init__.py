"""lamina: composable middleware stacks and orchestration for async HTTP API calls."""

from ._clock import Clock, LoopClock
from ._core import Layer, Request, Response, Service, ServiceBuilder, layer_fn, service_fn
from ._errors import (
    CircuitOpenError,
    ConcurrencyLimitExceeded,
    ConfigError,
    ConnectError,
    HTTPStatusError,
    LaminaError,
    ParseError,
    RateLimitExceeded,
    ResponseTooLarge,
    TimeoutError,
    TransportError,
)
from ._headers import Headers
from .transport import HttpxTransport

__version__ = "0.1.0"

__all__ = [
    "CircuitOpenError",
    "Clock",
    "ConcurrencyLimitExceeded",
    "ConfigError",
    "ConnectError",
    "HTTPStatusError",
    "Headers",
    "HttpxTransport",
    "LaminaError",
    "Layer",
    "LoopClock",
    "ParseError",
    "RateLimitExceeded",
    "Request",
    "Response",
    "ResponseTooLarge",
    "Service",
    "ServiceBuilder",
    "TimeoutError",
    "TransportError",
    "__version__",
    "layer_fn",
    "service_fn",
]
