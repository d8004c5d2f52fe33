"""The reference's configuration objects: APIEndpoint, OrchestrationMode, APIOrchestrationConfig.

Everything is validated at construction; errors are ``ConfigError`` naming the field
(``endpoints[2].depends_on: unknown endpoint 'auth'``).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Literal, TypeAlias, get_args
from urllib.parse import urlsplit

from .. import _validate as check
from .._core import Layer, Request
from .._errors import ConfigError
from .._redact import redact_headers, redact_params, redact_url
from ..backends.base import Backend, resolve_backend
from ..layers.cache.keys import cache_header_options
from ..transports._shared import check_headers

__all__ = [
    "TRANSPORT_NAMES",
    "APIEndpoint",
    "APIOrchestrationConfig",
    "LayersCallable",
    "LayersOption",
    "OrchestrationMode",
    "TransportName",
]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: ``layers(endpoint, config)``: one endpoint's layers, outermost first.
LayersCallable: TypeAlias = Callable[["APIEndpoint", "APIOrchestrationConfig"], Sequence[Layer]]
#: A list of layers for every endpoint, a :data:`LayersCallable`, or None for the defaults.
LayersOption: TypeAlias = Sequence[Layer] | LayersCallable | None
#: A transport chosen by name: ``APIOrchestrator(transport="pyreqwest")``, a flow's
#: ``transport:``, ``lamina run --transport``.
TransportName: TypeAlias = Literal["httpx", "aiohttp", "pyreqwest"]
TRANSPORT_NAMES: tuple[str, ...] = get_args(TransportName)


class OrchestrationMode(StrEnum):
    """How endpoints are scheduled (see ``lamina.orchestration.modes``)."""

    SEQUENTIAL = "sequential"  # one after another, in config order
    PARALLEL = "parallel"  # all at once, bounded by max_concurrent
    FANOUT = "fanout"  # the single input sent to every endpoint, concurrently
    PIPELINE = "pipeline"  # in order, each payload is the previous result
    CONDITIONAL = "conditional"  # in order, each gated by its condition
    HYBRID = "hybrid"  # a dependency graph: each starts when its depends_on are done


def _callable(value: Any, name: str, endpoint: str | None) -> None:
    if value is not None and not callable(value):
        raise ConfigError(
            f"must be callable, got {type(value).__name__}", field=name, endpoint=endpoint
        )


@dataclass(eq=False)
class APIEndpoint:
    """One upstream call: where, how, and what to do with the answer.

    ``url`` may hold ``{name}`` placeholders, filled per run from the input data
    and earlier results. ``rate_limit`` is requests per minute, ``burst_limit``
    the most at once. ``retry_count`` retries (not attempts) with exponential
    backoff from ``retry_delay`` seconds on ``retry_on`` statuses.
    """

    name: str
    url: str
    method: str = "GET"
    headers: dict[str, str] | None = None
    params: dict[str, Any] | None = None
    body: Any = None
    timeout: float = 30.0
    retry_count: int = 3
    retry_delay: float = 1.0
    rate_limit: float | None = None
    burst_limit: int | None = None
    response_parser: Callable[[Any], Any] | None = None
    error_handler: Callable[[Exception], Any] | None = None
    depends_on: list[str] | None = None
    transform_input: Callable[[dict[str, Any]], Any] | None = None
    transform_output: Callable[[Any], Any] | None = None
    condition: Callable[[dict[str, Any]], bool] | None = None
    retry_on: list[int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"must be a non-empty string, got {self.name!r}", field="name")
        if not self.name.isprintable():  # a line feed would forge log lines and table rows
            raise ConfigError(
                f"must not contain control characters, got {self.name!r}", field="name"
            )
        name = self.name
        if not isinstance(self.method, str) or self.method.upper() not in METHODS:
            raise ConfigError(
                f"unsupported method {self.method!r} (one of {', '.join(sorted(METHODS))})",
                field="method",
                endpoint=name,
            )
        self.method = self.method.upper()
        _check_url(self.url, name)
        check.seconds(self.timeout, "timeout", endpoint=name)
        check.count(self.retry_count, "retry_count", low=0, high=check.MAX_RETRIES, endpoint=name)
        check.seconds(self.retry_delay, "retry_delay", allow_zero=True, endpoint=name)
        if self.rate_limit is not None:
            check.rate(self.rate_limit, "rate_limit", period=60, unit="per minute", endpoint=name)
        if self.burst_limit is not None:
            check.count(self.burst_limit, "burst_limit", endpoint=name)
        for attr in (
            "response_parser",
            "error_handler",
            "transform_input",
            "transform_output",
            "condition",
        ):
            _callable(getattr(self, attr), attr, name)
        if self.headers is not None:
            _check_headers(self.headers, name)
        if self.params is not None and not isinstance(self.params, Mapping):
            raise ConfigError("must be a mapping", field="params", endpoint=name)
        if self.depends_on is not None:
            if not isinstance(self.depends_on, list | tuple) or not all(
                isinstance(d, str) for d in self.depends_on
            ):
                raise ConfigError(
                    "must be a list of endpoint names", field="depends_on", endpoint=name
                )
            self.depends_on = list(self.depends_on)
        if self.retry_on is not None:
            if not isinstance(self.retry_on, list | tuple | set | frozenset):
                raise ConfigError(
                    f"must be a list of HTTP status codes, got {self.retry_on!r}",
                    field="retry_on",
                    endpoint=name,
                )
            codes = list(self.retry_on)
            for code in codes:
                if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                    raise ConfigError(
                        f"must hold HTTP status codes, got {code!r}",
                        field="retry_on",
                        endpoint=name,
                    )
            self.retry_on = codes

    @property
    def dependencies(self) -> list[str]:
        """``depends_on`` as a list (empty when unset)."""
        return self.depends_on or []

    @property
    def placeholders(self) -> list[str]:
        """Names of the ``{placeholders}`` in ``url``."""
        return PLACEHOLDER.findall(self.url)

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"url={redact_url(self.url)!r}", f"method={self.method!r}"]
        if self.headers:
            parts.append(f"headers={redact_headers(self.headers.items())!r}")
        if self.params:
            parts.append(f"params={redact_params(self.params)!r}")
        if self.depends_on:
            parts.append(f"depends_on={self.depends_on!r}")
        return f"APIEndpoint({', '.join(parts)})"


def _check_headers(headers: Any, endpoint: str) -> None:
    """The transports' header rule (:func:`lamina.transports._shared.check_headers`),
    applied once here: a bad value is a ConfigError at construction naming the endpoint
    and the header, never the value. Values filled at run time are checked on sending."""
    if not isinstance(headers, Mapping):
        raise ConfigError("must be a mapping", field="headers", endpoint=endpoint)
    try:
        check_headers(Request("GET", "http://localhost/", headers=headers, endpoint=endpoint))
    except ConfigError as exc:
        header = exc.field or ""
        message = exc.message.removeprefix(f"{header}: ") if header else exc.message
        raise ConfigError(message, field=f"headers.{header}", endpoint=endpoint) from None


def _check_url(url: Any, endpoint: str) -> None:
    if not isinstance(url, str) or not url:
        raise ConfigError(
            f"must be a non-empty string, got {url!r}", field="url", endpoint=endpoint
        )
    probe = PLACEHOLDER.sub("x", url)
    try:
        parts = urlsplit(probe)
    except ValueError as exc:
        raise ConfigError(f"invalid URL ({exc})", field="url", endpoint=endpoint) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"must be an absolute http(s) URL, got {redact_url(url)!r}",
            field="url",
            endpoint=endpoint,
        )
    if any(ch in probe for ch in " \r\n\t"):
        raise ConfigError("must not contain whitespace", field="url", endpoint=endpoint)
    host_part = url.split("://", 1)[1].split("/", 1)[0]
    if "{" in host_part:
        raise ConfigError(
            "placeholders may be used in the path and query only, not in the host",
            field="url",
            endpoint=endpoint,
        )


@dataclass(eq=False)
class APIOrchestrationConfig:
    """The whole orchestration: endpoints, mode and the shared policies.

    ``layers`` optionally replaces the default stack (a list, or a callable
    ``(endpoint, config) -> list``; flows set it from their ``layers:`` list).
    ``global_rate_limit`` is requests per ``rate_limit_window`` seconds across all
    endpoints; ``error_threshold`` the largest tolerated fraction of failed calls
    (checked once 10 calls have finished); ``cache_ttl`` seconds (None: no cache).
    ``retry_budget`` is the fraction of the last 10 s of calls to one upstream origin
    that may be retried, plus ``retry_budget_min_per_second`` retries (None: no budget).
    """

    endpoints: list[APIEndpoint] = field(default_factory=list)
    mode: OrchestrationMode = OrchestrationMode.SEQUENTIAL
    max_concurrent: int = 10
    total_timeout: float | None = 300.0
    fail_fast: bool = False
    global_rate_limit: float | None = None
    rate_limit_window: float = 60
    result_merger: Callable[[list[Any]], Any] | None = None
    result_transformer: Callable[[Any], Any] | None = None
    error_threshold: float = 0.1
    circuit_breaker_threshold: int = 5
    circuit_breaker_timeout: float = 60.0
    cache_ttl: float | None = None
    cache_key_generator: Callable[[APIEndpoint], str] | None = None
    cache_headers: Mapping[str, Any] | None = None
    """``{"ignore": [names], "include": [names]}``: headers to leave out of cache keys
    on top of ``lamina.cache.IGNORED_HEADERS``, and headers to keep in them even if
    ignored by default (docs/layers/cache.md). Stored with sorted lower-case names."""
    metrics_enabled: bool = True
    log_requests: bool = False
    log_responses: bool = False
    max_response_bytes: int = 10 * 1024 * 1024
    retry_budget: float | None = 0.2
    retry_budget_min_per_second: float = 3.0
    layers: LayersOption = field(default=None, repr=False, compare=False)
    backend: str | Backend | None = None  # None | "memory" | "redis://..." | a Backend

    def __post_init__(self) -> None:
        if isinstance(self.mode, str) and not isinstance(self.mode, OrchestrationMode):
            try:
                self.mode = OrchestrationMode(self.mode.lower())
            except ValueError:
                modes = ", ".join(m.value for m in OrchestrationMode)
                raise ConfigError(
                    f"unknown mode {self.mode!r} (one of {modes})", field="mode"
                ) from None
        if not isinstance(self.mode, OrchestrationMode):
            raise ConfigError(f"must be an OrchestrationMode, got {self.mode!r}", field="mode")
        # Bounds: lamina._validate (docs/security.md, "Flows are data, not code").
        check.count(self.max_concurrent, "max_concurrent")
        if self.total_timeout is not None:
            check.seconds(self.total_timeout, "total_timeout")
        window = check.seconds(self.rate_limit_window, "rate_limit_window")
        if self.global_rate_limit is not None:
            check.rate(self.global_rate_limit, "global_rate_limit", period=window)
        check.fraction(self.error_threshold, "error_threshold")
        check.count(self.circuit_breaker_threshold, "circuit_breaker_threshold")
        check.seconds(self.circuit_breaker_timeout, "circuit_breaker_timeout")
        if self.cache_ttl is not None:
            check.seconds(self.cache_ttl, "cache_ttl")
        check.count(self.max_response_bytes, "max_response_bytes", high=check.MAX_BYTES)
        if self.retry_budget is not None:
            check.fraction(self.retry_budget, "retry_budget", high=1000)
        check.number(
            self.retry_budget_min_per_second,
            "retry_budget_min_per_second",
            low=0,
            high=check.MAX_RATE,
            allow_zero=True,
            what="a number of retries per second",
        )
        resolve_backend(self.backend)  # ConfigError(field="backend"), never showing the URL
        for attr in ("result_merger", "result_transformer", "cache_key_generator"):
            _callable(getattr(self, attr), attr, None)
        if self.cache_headers is not None:
            self.cache_headers = cache_header_options(self.cache_headers)
        self.endpoints = list(self.endpoints)
        _check_endpoints(self.endpoints)

    @property
    def endpoint_names(self) -> list[str]:
        """Endpoint names, in config order."""
        return [e.name for e in self.endpoints]

    def endpoint(self, name: str) -> APIEndpoint:
        """The endpoint called ``name``."""
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise KeyError(name)

    def __repr__(self) -> str:
        shown = [
            f"{f.name}={getattr(self, f.name)!r}"
            if f.name != "backend" or not isinstance(self.backend, str)
            else f"backend={redact_url(self.backend)!r}"  # a Redis URL's password
            for f in fields(self)
            if f.repr and f.name != "endpoints"
        ]
        return f"APIOrchestrationConfig(endpoints={self.endpoint_names!r}, {', '.join(shown)})"


def _check_endpoints(endpoints: list[APIEndpoint]) -> None:
    seen: dict[str, int] = {}
    for index, endpoint in enumerate(endpoints):
        if not isinstance(endpoint, APIEndpoint):
            raise ConfigError(
                f"must be an APIEndpoint, got {type(endpoint).__name__}",
                field=f"endpoints[{index}]",
            )
        if endpoint.name in seen:
            raise ConfigError(
                f"duplicate endpoint name {endpoint.name!r} "
                f"(also endpoints[{seen[endpoint.name]}])",
                field=f"endpoints[{index}].name",
            )
        seen[endpoint.name] = index
    for index, endpoint in enumerate(endpoints):
        for dep in endpoint.dependencies:
            if dep not in seen:
                raise ConfigError(
                    f"unknown endpoint {dep!r}", field=f"endpoints[{index}].depends_on"
                )
            if dep == endpoint.name:
                raise ConfigError(
                    "an endpoint cannot depend on itself", field=f"endpoints[{index}].depends_on"
                )
    cycle = find_cycle(endpoints)
    if cycle:
        index = seen[cycle[0]]
        raise ConfigError(
            f"dependency cycle {' -> '.join(cycle)}", field=f"endpoints[{index}].depends_on"
        )


def _kahn(endpoints: list[APIEndpoint]) -> tuple[list[APIEndpoint], set[str]]:
    """Topological order (ties broken by config order) and the names left in cycles."""
    index = {e.name: i for i, e in enumerate(endpoints)}
    waiting = {e.name: len(set(e.dependencies)) for e in endpoints}
    dependents: dict[str, list[str]] = {e.name: [] for e in endpoints}
    for endpoint in endpoints:
        for dep in set(endpoint.dependencies):
            dependents[dep].append(endpoint.name)
    ready = [index[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[APIEndpoint] = []
    while ready:
        endpoint = endpoints[heapq.heappop(ready)]
        ordered.append(endpoint)
        for name in dependents[endpoint.name]:
            waiting[name] -= 1
            if waiting[name] == 0:
                heapq.heappush(ready, index[name])
    left = {e.name for e in endpoints} - {e.name for e in ordered}
    return ordered, left


def find_cycle(endpoints: list[APIEndpoint]) -> list[str] | None:
    """A dependency cycle as a path of names (first == last), or None."""
    _, left = _kahn(endpoints)
    if not left:
        return None
    graph = {e.name: [d for d in e.dependencies if d in left] for e in endpoints if e.name in left}
    name = next(e.name for e in endpoints if e.name in left)
    path: list[str] = []
    while name not in path:
        path.append(name)
        name = graph[name][0]  # every node left has a dependency that is also left
    return [*path[path.index(name) :], name]


def topological_order(endpoints: list[APIEndpoint]) -> list[APIEndpoint]:
    """Endpoints ordered so each comes after its dependencies, otherwise in config order."""
    ordered, left = _kahn(endpoints)
    if left:  # pragma: no cover - cycles are rejected at construction
        raise ConfigError(f"dependency cycle among {sorted(left)}", field="endpoints")
    return ordered
