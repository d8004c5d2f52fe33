"""lamina: composable middleware stacks and orchestration for async HTTP API calls."""

from ._clock import Clock, LoopClock
from ._core import Layer, Request, Response, Service, ServiceBuilder, layer_fn, service_fn
from ._errors import (
    CircuitOpenError,
    ConcurrencyLimitExceeded,
    ConfigError,
    ConnectError,
    EndpointError,
    ErrorThresholdExceeded,
    HTTPStatusError,
    LaminaError,
    OrchestrationTimeout,
    ParseError,
    RateLimitExceeded,
    ResponseTooLarge,
    TimeoutError,
    TransportError,
)
from ._headers import Headers
from .breaker import CircuitBreaker, CircuitState, StateChange
from .layers.retry_policy import RetryBudget, RetryPolicy
from .transport import HttpxTransport

__version__ = "0.1.0"

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Clock",
    "ConcurrencyLimitExceeded",
    "ConfigError",
    "ConnectError",
    "EndpointError",
    "ErrorThresholdExceeded",
    "HTTPStatusError",
    "Headers",
    "HttpxTransport",
    "LaminaError",
    "Layer",
    "LoopClock",
    "OrchestrationTimeout",
    "ParseError",
    "RateLimitExceeded",
    "Request",
    "Response",
    "ResponseTooLarge",
    "RetryBudget",
    "RetryPolicy",
    "Service",
    "ServiceBuilder",
    "StateChange",
    "TimeoutError",
    "TransportError",
    "__version__",
    "layer_fn",
    "service_fn",
]
