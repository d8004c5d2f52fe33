"""The core contracts: Request, Response, Service, Layer and ServiceBuilder.

A call is a :class:`Request` travelling down a chain of layers to a transport
and a :class:`Response` travelling back up. Nothing here depends on httpx.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import FunctionType
from typing import Any, Protocol, runtime_checkable

from ._headers import Headers, HeaderSource
from ._redact import redact_url, scrub, secret_values

__all__ = [
    "Handler",
    "Layer",
    "Middleware",
    "Request",
    "Response",
    "Service",
    "ServiceBuilder",
    "layer_fn",
    "service_fn",
    "stack_repr",
]


class Request:
    """One outgoing HTTP call and its per-call context.

    ``endpoint``, ``attempt`` and ``deadline`` (a time on the stack's clock)
    are read by the layers; ``extensions`` holds anything else a layer needs.
    Requests are treated as immutable: use :meth:`replace` to change one.
    """

    __slots__ = (
        "attempt",
        "content",
        "deadline",
        "endpoint",
        "extensions",
        "headers",
        "json",
        "method",
        "params",
        "url",
    )

    def __init__(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderSource = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        endpoint: str | None = None,
        attempt: int = 1,
        deadline: float | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.method = method.upper()
        self.url = url
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.params: Mapping[str, Any] = params if params is not None else {}
        self.json = json
        self.content = content.encode() if isinstance(content, str) else content
        self.endpoint = endpoint
        self.attempt = attempt
        self.deadline = deadline
        self.extensions: dict[str, Any] = extensions if extensions is not None else {}

    def replace(self, **changes: Any) -> Request:
        """A copy with some fields changed; ``extensions`` is shared unless given."""
        new = object.__new__(Request)
        new.method = self.method
        new.url = self.url
        new.headers = self.headers
        new.params = self.params
        new.json = self.json
        new.content = self.content
        new.endpoint = self.endpoint
        new.attempt = self.attempt
        new.deadline = self.deadline
        new.extensions = self.extensions
        for name, value in changes.items():
            if name not in _REQUEST_FIELDS:
                raise TypeError(f"Request has no field {name!r}")
            if name == "headers" and not isinstance(value, Headers):
                value = Headers(value)
            setattr(new, name, value)
        return new

    @property
    def redacted_url(self) -> str:
        """The URL with credentials and signed query values masked."""
        return redact_url(self.url)

    def scrub(self, text: str) -> str:
        """``text`` without this request's secret values (headers, query, user info),
        in every encoding: what an error message or a log line may show."""
        return scrub(text, secret_values(self))

    def __repr__(self) -> str:
        where = f" endpoint={self.endpoint!r}" if self.endpoint else ""
        return f"<Request {self.method} {self.redacted_url}{where} attempt={self.attempt}>"


_REQUEST_FIELDS = frozenset(Request.__slots__)


class Response:
    """An HTTP response with an httpx-like surface, independent of the transport.

    ``http`` is the transport's own response object; ``value`` is the parsed
    value set by the parse layer; ``from_cache``, ``stale``, ``attempts`` and
    ``elapsed`` (seconds) describe how it was obtained.
    """

    __slots__ = (
        "attempts",
        "content",
        "elapsed",
        "from_cache",
        "headers",
        "http",
        "request",
        "stale",
        "status_code",
        "value",
    )

    def __init__(
        self,
        status_code: int,
        *,
        headers: HeaderSource = None,
        content: bytes = b"",
        request: Request | None = None,
        http: Any = None,
        value: Any = None,
        from_cache: bool = False,
        stale: bool = False,
        attempts: int = 1,
        elapsed: float = 0.0,
    ) -> None:
        self.status_code = status_code
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.content = content
        self.request = request
        self.http = http
        self.value = value
        self.from_cache = from_cache
        self.stale = stale
        self.attempts = attempts
        self.elapsed = elapsed

    @property
    def url(self) -> str:
        """The URL of the request that produced this response."""
        return self.request.url if self.request is not None else ""

    @property
    def charset(self) -> str | None:
        """The charset named by Content-Type, if any."""
        content_type = self.headers.get("content-type", "")
        for part in content_type.split(";")[1:]:
            key, _, val = part.strip().partition("=")
            if key.lower() == "charset" and val:
                return val.strip("\"'")
        return None

    @property
    def encoding(self) -> str:
        """The charset named by Content-Type, else utf-8."""
        return self.charset or "utf-8"

    @property
    def text(self) -> str:
        """The body decoded as text."""
        try:
            return self.content.decode(self.encoding, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self, **kwargs: Any) -> Any:
        """The body decoded as JSON (raises ``json.JSONDecodeError`` if it is not)."""
        if self.charset is not None:
            return jsonlib.loads(self.text, **kwargs)
        return jsonlib.loads(self.content, **kwargs)

    @property
    def is_success(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status_code < 300

    @property
    def is_error(self) -> bool:
        """True for 4xx and 5xx."""
        return self.status_code >= 400

    def raise_for_status(self) -> Response:
        """Raise :class:`lamina.HTTPStatusError` unless the status is 2xx."""
        if not self.is_success:
            from ._errors import HTTPStatusError

            raise HTTPStatusError.from_response(self)
        return self

    def replace(self, **changes: Any) -> Response:
        """A copy with some fields changed."""
        new = object.__new__(Response)
        for name in Response.__slots__:
            setattr(new, name, changes.pop(name) if name in changes else getattr(self, name))
        if changes:
            raise TypeError(f"Response has no field(s) {sorted(changes)}")
        return new

    def __repr__(self) -> str:
        flags = " cached" if self.from_cache else ""
        flags += " stale" if self.stale else ""
        return f"<Response [{self.status_code}]{flags} attempts={self.attempts}>"


@runtime_checkable
class Service(Protocol):
    """Anything that turns a request into a response, asynchronously."""

    async def __call__(self, request: Request) -> Response: ...


@runtime_checkable
class Layer(Protocol):
    """Configuration that wraps an inner service into a new service. Does no I/O."""

    def wrap(self, inner: Service) -> Service: ...


Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Middleware = Callable[[Request, Service], Coroutine[Any, Any, Response]]


class ServiceBuilder:
    """Compose layers around a service.

    The first layer added is the **outermost**: on the way down its code runs
    first, on the way back up it runs last (as in Tower and Starlette)::

        ServiceBuilder().layer(a).layer(b).service(transport)
        # a(b(transport)): request -> a -> b -> transport -> b -> a -> caller

    Builders are immutable; ``layer`` returns a new builder.
    """

    __slots__ = ("_layers",)

    def __init__(self, layers: Sequence[Layer] = ()) -> None:
        for layer in layers:
            _check_layer(layer)
        self._layers: tuple[Layer, ...] = tuple(layers)

    def layer(self, layer: Layer) -> ServiceBuilder:
        """Add ``layer`` inside the ones already added."""
        _check_layer(layer)
        return ServiceBuilder((*self._layers, layer))

    def layer_fn(self, middleware: Middleware) -> ServiceBuilder:
        """Add ``async def middleware(request, call_next)`` as a layer."""
        return self.layer(layer_fn(middleware))

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers, outermost first."""
        return self._layers

    def service(self, inner: Service) -> Service:
        """Wrap ``inner`` (a service or an ``async def handler(request)``) in every layer."""
        if not callable(inner):
            from ._errors import ConfigError

            raise ConfigError("service() needs an async callable", field="inner")
        service = inner
        for layer in reversed(self._layers):
            service = layer.wrap(service)
        return service

    def __repr__(self) -> str:
        names = ", ".join(type(layer).__name__ for layer in self._layers)
        return f"ServiceBuilder([{names}])"


#: the deepest chain :func:`stack_repr` walks (a cycle would otherwise never end)
_MAX_CHAIN = 64


def stack_repr(service: object) -> str:
    """``Stack(call_tracing -> retry -> ... -> HttpxTransport)``: the chain from ``service``
    down to its transport, outermost first.

    A hop is followed through its ``inner`` attribute (every built-in service has one) and
    named after its class: ``CircuitBreakerService`` is ``circuit_breaker``. Only names are
    shown, never options or URLs, so no secret can appear.
    """
    hops: list[str] = []
    node: object = service
    for _ in range(_MAX_CHAIN):
        inner = getattr(node, "inner", None) or getattr(node, "_inner", None)
        if isinstance(node, _MiddlewareService):
            hops.append(f"layer_fn({getattr(node._middleware, '__name__', 'middleware')})")
        elif isinstance(node, _HandlerService):
            hops.append(f"service_fn({getattr(node._handler, '__name__', 'handler')})")
        elif isinstance(node, FunctionType):  # ServiceBuilder.service(async_function)
            hops.append(node.__name__)
        else:
            kind = type(node).__name__
            if inner is not None and kind.endswith("Service") and kind != "Service":
                kind = _SNAKE.sub("_", kind.removesuffix("Service")).lower()
            hops.append(kind)
        if inner is None:
            break
        node = inner
    else:
        hops.append("...")
    return f"Stack({' -> '.join(hops)})"


_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _check_layer(layer: object) -> None:
    if not callable(getattr(layer, "wrap", None)):
        from ._errors import ConfigError

        raise ConfigError(
            f"{type(layer).__name__!s} is not a Layer: it has no wrap(inner) method",
            field="layer",
        )


class _MiddlewareService:
    __slots__ = ("_inner", "_middleware")

    def __init__(self, middleware: Middleware, inner: Service) -> None:
        self._middleware = middleware
        self._inner = inner

    async def __call__(self, request: Request) -> Response:
        return await self._middleware(request, self._inner)

    def __repr__(self) -> str:
        return f"<{getattr(self._middleware, '__name__', 'middleware')} -> {self._inner!r}>"


class _MiddlewareLayer:
    __slots__ = ("middleware",)

    def __init__(self, middleware: Middleware) -> None:
        self.middleware = middleware

    def wrap(self, inner: Service) -> Service:
        return _MiddlewareService(self.middleware, inner)

    def __repr__(self) -> str:
        return f"layer_fn({getattr(self.middleware, '__name__', 'middleware')})"


def layer_fn(middleware: Middleware) -> Layer:
    """Turn ``async def mw(request, call_next) -> Response`` into a :class:`Layer`."""
    if not callable(middleware):
        from ._errors import ConfigError

        raise ConfigError("layer_fn() needs an async callable", field="middleware")
    return _MiddlewareLayer(middleware)


class _HandlerService:
    __slots__ = ("_handler",)

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def __call__(self, request: Request) -> Response:
        return await self._handler(request)

    def __repr__(self) -> str:
        return f"service_fn({getattr(self._handler, '__name__', 'handler')})"


def service_fn(handler: Handler) -> Service:
    """Turn ``async def handler(request) -> Response`` into a :class:`Service`."""
    if not callable(handler):
        from ._errors import ConfigError

        raise ConfigError("service_fn() needs an async callable", field="handler")
    return _HandlerService(handler)
