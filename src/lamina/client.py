"""``lamina.Client``: an httpx-like front door to a stack of layers.

::

    async with lamina.Client(base_url="https://api.example.com") as client:
        response = await client.get("/users/1", params={"expand": "teams"})
        response.raise_for_status()
        user = response.json()

Each call becomes a :class:`lamina.Request` that goes down the stack (``layers``,
outermost first, as :class:`lamina.ServiceBuilder` builds it) to the transport; the
answer is a :class:`lamina.Response`. A 4xx or 5xx is returned, as httpx does, unless
a layer (such as :class:`lamina.layers.ParseLayer`) raises for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Self
from urllib.parse import urlencode, urlsplit

import httpx

from . import _validate as check
from ._clock import Clock, default_clock
from ._closeable import AsyncCloseable
from ._core import Layer, Request, Response, Service, ServiceBuilder, stack_repr
from ._errors import ConfigError, LaminaError, TransportError
from ._headers import Headers, HeaderSource
from ._redact import redact_url
from .layers.parse import ParseLayer
from .layers.timeout import TimeoutLayer
from .metrics import IOMetrics
from .orchestration.config import TRANSPORT_NAMES, APIEndpoint, APIOrchestrationConfig
from .orchestration.stack import default_layers as endpoint_layers
from .orchestration.stack import new_shared_state
from .transports import HttpxTransport
from .transports._shared import REDIRECT_STATUSES, _redirected

__all__ = ["Client", "default_layers"]

#: name -> (module, class) of the transports whose client is an optional extra.
_OPTIONAL_TRANSPORTS = {
    "aiohttp": ("lamina.transports.aiohttp", "AiohttpTransport"),
    "pyreqwest": ("lamina.transports.pyreqwest", "PyreqwestTransport"),
}

TransportOption = Service | httpx.AsyncBaseTransport | str | None
#: ``params`` as httpx takes them: a mapping, ``(name, value)`` pairs or a query string.
ParamsOption = Mapping[str, Any] | Sequence[tuple[str, Any]] | str | None


class _UseClientDefault:
    """A call's ``timeout`` when omitted: the client's (``None`` means no timeout)."""

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT = _UseClientDefault()
#: Redirects a call follows at most with ``follow_redirects`` (httpx's default).
MAX_REDIRECTS = 20


def default_layers(*, clock: Clock | None = None, metrics: IOMetrics | None = None) -> list[Layer]:
    """The layers a :class:`Client` uses when ``layers`` is omitted, outermost first.

    They are the orchestrator's default stack for an endpoint whose fields are all at
    their defaults (call span, metrics, 3 retries from 1 s on 429/5xx within a retry
    budget, a circuit breaker of 5 failures / 60 s, a 30 s attempt timeout, attempt
    span), without the parse layer: a 4xx or 5xx is returned, not raised.
    """
    config = APIOrchestrationConfig(endpoints=[APIEndpoint(name="client", url="http://client")])
    shared = new_shared_state(config, clock)
    if metrics is not None:
        shared.metrics = metrics
    layers = endpoint_layers(config.endpoints[0], config, shared)
    return [layer for layer in layers if not isinstance(layer, ParseLayer)]


class Client(AsyncCloseable):
    """An async HTTP client whose every call goes through a lamina stack.

    ``layers`` (outermost first) wrap the ``transport``: a lamina transport or any
    service, an ``httpx`` transport (``httpx.MockTransport``), or ``"httpx"`` (the
    default), ``"aiohttp"`` or ``"pyreqwest"``. Omitted, ``layers`` is
    :func:`default_layers`; ``layers=[]`` sends straight to the transport.
    ``base_url``, ``headers`` and ``params`` are merged into every call, as httpx
    merges them; ``timeout`` (seconds, default none) bounds each whole call, retries
    included, and a call's own ``timeout=`` replaces it (``None``: no bound);
    ``follow_redirects`` is the default of a call's own. Closing the client (``aclose``
    or leaving ``async with``) closes the transport, whether the client made it or it
    was given one (as httpx does).
    """

    def __init__(
        self,
        *,
        layers: Sequence[Layer] | None = None,
        transport: TransportOption = None,
        base_url: str = "",
        headers: HeaderSource = None,
        params: ParamsOption = None,
        timeout: float | None = None,
        follow_redirects: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or default_clock
        self.base_url = _base_url(base_url)
        self.headers = _headers(headers)
        self.params: dict[str, Any] = _params(params)
        self.timeout = _timeout(timeout)
        self.follow_redirects = check.flag(follow_redirects, "follow_redirects")
        self.metrics = IOMetrics()
        if layers is None:
            chosen = default_layers(clock=self.clock, metrics=self.metrics)
        else:
            if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
                raise ConfigError("must be a list of layers", field="layers")
            chosen = list(layers)
            for index, layer in enumerate(chosen):
                if isinstance(layer, type):
                    raise ConfigError(
                        f"{layer.__name__} is a class: give a layer, {layer.__name__}(...)",
                        field=f"layers[{index}]",
                    )
                if not callable(getattr(layer, "wrap", None)):
                    raise ConfigError(
                        f"{type(layer).__name__} is not a Layer (no wrap method)",
                        field=f"layers[{index}]",
                    )
        self.layers: tuple[Layer, ...] = tuple(chosen)
        self.transport: Service = _make_transport(transport)
        # The outermost layer enforces a call's deadline over its retries and waits too.
        deadline = TimeoutLayer(None, clock=self.clock)
        # Redirects are followed under the layers, as httpx follows them under its auth:
        # a parse layer or a breaker sees the final answer.
        redirects = RedirectsService(self.transport)
        self._stack = ServiceBuilder([deadline, *self.layers]).service(redirects)
        self._closed = False

    async def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: ParamsOption = None,
        headers: HeaderSource = None,
        json: Any = None,
        content: bytes | str | None = None,
        data: Mapping[str, Any] | None = None,
        timeout: float | _UseClientDefault | None = USE_CLIENT_DEFAULT,  # noqa: ASYNC109
        follow_redirects: bool | _UseClientDefault = USE_CLIENT_DEFAULT,
        endpoint: str | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> Response:
        """Send one request through the stack and return its :class:`lamina.Response`.

        ``endpoint`` names the call for the breaker, metrics and spans (default: the
        URL's origin, so each upstream host has its own breaker). ``data`` is a form,
        sent URL-encoded as httpx sends it. ``timeout`` bounds
        the whole call in seconds (omitted: the client's; ``None``: no bound);
        ``extensions`` reach every layer.
        """
        if self._closed:
            raise RuntimeError("the client is closed: open a new one")
        if json is not None and content is not None:
            raise ConfigError("give json or content, not both", field="content")
        if data is not None:
            if not isinstance(data, Mapping):
                raise ConfigError(
                    "must be a mapping (a form); send raw bytes with content=", field="data"
                )
            if json is not None or content is not None:
                raise ConfigError("give data, json or content, not two of them", field="data")
            content = urlencode([(str(k), _form_value(v)) for k, v in data.items()], doseq=True)
            if "content-type" not in self.headers and not (
                headers and "content-type" in _headers(headers)
            ):
                headers = [*_headers(headers).multi_items(), ("Content-Type", _FORM)]
        full_url = self._url(url)
        merged_headers = self.headers
        if headers:
            # As httpx: a name the call gives replaces the client's, every value kept.
            items = _headers(headers).multi_items()
            kept = merged_headers.copy_with(remove=[name for name, _ in items])
            merged_headers = Headers([*kept.multi_items(), *items])
        merged_params = {**self.params, **_params(params)} if params else self.params
        seconds = self.timeout if isinstance(timeout, _UseClientDefault) else _timeout(timeout)
        request = Request(
            method,
            full_url,
            headers=merged_headers,
            params=dict(merged_params),
            json=json,
            content=content,
            endpoint=endpoint or _origin(full_url),
            deadline=None if seconds is None else self.clock.now() + seconds,
            extensions=dict(extensions) if extensions else None,
        )
        follow = (
            self.follow_redirects
            if isinstance(follow_redirects, _UseClientDefault)
            else check.flag(follow_redirects, "follow_redirects")
        )
        if follow:
            request.extensions[_FOLLOW] = True
        try:
            return _as_sent(await self._stack(request))
        except LaminaError as exc:  # its response and request name the URL sent, too
            answer = getattr(exc, "response", None)  # HTTPStatusError, ParseError...
            if isinstance(answer, Response):
                _as_sent(answer)
            if exc.request is not None and exc.request.params:
                exc.request = _with_params(exc.request)
            raise

    async def get(self, url: str | httpx.URL, **options: Any) -> Response:
        """``request("GET", url, ...)``."""
        return await self.request("GET", url, **options)

    async def head(self, url: str | httpx.URL, **options: Any) -> Response:
        """``request("HEAD", url, ...)``."""
        return await self.request("HEAD", url, **options)

    async def options(self, url: str | httpx.URL, **options: Any) -> Response:
        """``request("OPTIONS", url, ...)``."""
        return await self.request("OPTIONS", url, **options)

    async def post(self, url: str | httpx.URL, **options: Any) -> Response:
        """``request("POST", url, ...)``."""
        return await self.request("POST", url, **options)

    async def put(self, url: str | httpx.URL, **options: Any) -> Response:
        """``request("PUT", url, ...)``."""
        return await self.request("PUT", url, **options)

    async def patch(self, url: str | httpx.URL, **options: Any) -> Response:
        """``request("PATCH", url, ...)``."""
        return await self.request("PATCH", url, **options)

    async def delete(self, url: str | httpx.URL, **options: Any) -> Response:
        """``request("DELETE", url, ...)``."""
        return await self.request("DELETE", url, **options)

    async def __aenter__(self) -> Self:
        if self._closed:
            raise RuntimeError("the client is closed: open a new one")
        return self

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`aclose` has run."""
        return self._closed

    async def aclose(self) -> None:
        """Close the transport (its connections); later calls raise ``RuntimeError``."""
        if self._closed:
            return
        self._closed = True
        close = getattr(self.transport, "aclose", None)
        if close is not None:
            await close()

    def _url(self, url: str | httpx.URL) -> str:
        if isinstance(url, httpx.URL):
            url = str(url)
        if not isinstance(url, str):
            raise ConfigError("must be a string", field="url")
        if urlsplit(url).scheme:
            return url
        if not self.base_url:
            raise ConfigError(
                f"{redact_url(url)!r} is relative and the client has no base_url", field="url"
            )
        return self.base_url + url.lstrip("/")

    def __repr__(self) -> str:
        chain = stack_repr(getattr(self._stack, "inner", self._stack))  # after the deadline
        where = f" base_url={redact_url(self.base_url)!r}" if self.base_url else ""
        state = " closed" if self._closed else ""
        return f"<Client{where}{state} {chain}>"


def _base_url(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError("must be a string", field="base_url")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"must be an absolute http(s) URL, got {redact_url(value)!r}", field="base_url"
        )
    try:
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError:
        raise ConfigError("has a port that is not a number in 0-65535", field="base_url") from None
    if parts.query or parts.fragment:
        raise ConfigError("must not have a query or fragment (use params=)", field="base_url")
    return value if value.endswith("/") else value + "/"  # as httpx: paths join under it


_FORM = "application/x-www-form-urlencoded"


def _form_value(value: Any) -> Any:
    """A form value as httpx encodes it: lists repeat the name, bools are lower case,
    ``None`` is empty."""
    if isinstance(value, (list, tuple)):
        return [_form_value(item) for item in value]
    if value is True or value is False:
        return "true" if value else "false"
    return "" if value is None else str(value)


def _headers(value: HeaderSource) -> Headers:
    if value is None or isinstance(value, Headers):
        return Headers(value)
    try:
        pairs = [
            (_text(name), _text(item))
            for name, item in (value.items() if isinstance(value, Mapping) else value)
        ]
        made = Headers(pairs)
    except (TypeError, ValueError):
        raise ConfigError(
            "must be a mapping or a list of (name, value) pairs", field="headers"
        ) from None
    for name, item in pairs:
        if item is None:  # would go out as the text "None"
            raise ConfigError(f"{name!r} has no value (None)", field="headers")
    return made


def _text(value: Any) -> Any:
    """A header name or value given as bytes (httpx takes them), as text; checked for
    control and non-ASCII characters by the transport before anything is sent."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _params(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping) and not isinstance(value, httpx.QueryParams):
        return dict(value)
    is_pairs = isinstance(value, Sequence) and all(
        isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)
        for pair in value
    )
    if isinstance(value, (str, httpx.QueryParams)) or is_pairs:
        try:
            pairs = httpx.QueryParams(value).multi_items()  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
        else:
            grouped: dict[str, list[str]] = {}
            for name, item in pairs:
                grouped.setdefault(name, []).append(item)
            return {name: vals[0] if len(vals) == 1 else vals for name, vals in grouped.items()}
    raise ConfigError(
        "must be a mapping, a list of (name, value) pairs or a query string", field="params"
    )


_FOLLOW = "lamina.client.follow_redirects"


class RedirectsService:
    """Follows a redirect answer when the call asked to (``follow_redirects``), up to
    :data:`MAX_REDIRECTS`: credential headers are dropped when the origin changes, a 303
    (or a 301/302 to a POST) becomes a GET, the query is the new location's."""

    def __init__(self, inner: Service) -> None:
        self.inner = inner

    async def __call__(self, request: Request) -> Response:
        if not request.extensions.get(_FOLLOW):
            return await self.inner(request)
        current = request
        for _ in range(MAX_REDIRECTS + 1):
            response = await self.inner(current)
            location = response.headers.get("location")
            if response.status_code not in REDIRECT_STATUSES or not location:
                return response
            current = _redirected(current, response.status_code, location)
        raise TransportError(
            f"more than {MAX_REDIRECTS} redirects (follow_redirects)", request=request
        )


def _as_sent(response: Response) -> Response:
    """``response`` whose ``request`` (so ``response.url``) is the URL as the transports
    send it, its ``params`` merged into the query the way httpx merges them: what httpx's
    ``response.url`` shows."""
    sent = response.request
    if sent is not None and sent.params:
        response.request = _with_params(sent)
    return response


def _with_params(request: Request) -> Request:
    """``request`` with its ``params`` merged into its URL's query (none left apart)."""
    url = str(httpx.URL(request.url).copy_merge_params(request.params))
    return request.replace(url=url, params={})


def _timeout(value: object, field: str = "timeout") -> float | None:
    return None if value is None else check.seconds(value, field)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{(parts.netloc.rpartition('@')[2]).lower()}"


def _make_transport(option: TransportOption) -> Service:
    if option is None or option == "httpx":
        return HttpxTransport()
    if isinstance(option, str):
        if option not in TRANSPORT_NAMES:
            raise ConfigError(
                f"unknown transport {option!r} ({', '.join(TRANSPORT_NAMES)})", field="transport"
            )
        module, name = _OPTIONAL_TRANSPORTS[option]
        try:
            cls = getattr(importlib.import_module(module), name)
        except ImportError as exc:
            raise ConfigError(
                f"transport={option!r} needs: pip install 'lamina[{option}]'", field="transport"
            ) from exc
        made: Service = cls()
        return made
    if isinstance(option, httpx.AsyncBaseTransport):
        return HttpxTransport(transport=option)
    if isinstance(option, type):
        raise ConfigError(
            f"{option.__name__} is a class: give a transport, {option.__name__}(...)",
            field="transport",
        )
    if not callable(option):
        raise ConfigError(
            f"{type(option).__name__} is not a transport (a service, an httpx transport "
            f"or one of {', '.join(TRANSPORT_NAMES)})",
            field="transport",
        )
    return option
