"""APIOrchestrator: runs a config's endpoints through their stacks, in its mode."""

from __future__ import annotations

import asyncio
import builtins
import importlib
from collections.abc import AsyncGenerator
from typing import Any, ClassVar

import httpx
from opentelemetry import trace

from .._clock import Clock
from .._closeable import AsyncCloseable
from .._core import Layer, Request, Response, Service, ServiceBuilder
from .._errors import ConfigError, HTTPStatusError, LaminaError, OrchestrationTimeout
from .._extras import require
from .._loop import run as run_on_loop
from .._otel import TracerSource
from ..layers.cache import CacheLayer
from ..layers.call_tracing import CallTracingLayer
from ..layers.chaos import with_env_chaos
from ..layers.fallback import FallbackLayer, FallbackResponse
from ..layers.metrics import MetricsLayer
from ..layers.parse import ParseLayer
from ..metrics import IOMetrics
from ..transports import HttpxTransport
from .config import (
    TRANSPORT_NAMES,
    APIEndpoint,
    APIOrchestrationConfig,
    LayersOption,
    TransportName,
)
from .failures import log_failures
from .modes import IN_ORDER_MODES, SCHEDULERS, Scheduler
from .report import RunReport
from .run import Plan, Run
from .stack import building, current_state, default_layers, new_shared_state

__all__ = ["APIOrchestrator", "LayersOption", "StatusCheckLayer", "parses", "with_parse"]
#: name -> (module, class) of the transports whose client is an optional extra.
_OPTIONAL_TRANSPORTS = {
    "aiohttp": ("..transports.aiohttp", "AiohttpTransport"),
    "pyreqwest": ("..transports.pyreqwest", "PyreqwestTransport"),
}


class APIOrchestrator(AsyncCloseable):
    """Run an :class:`APIOrchestrationConfig`.

    Each endpoint gets its own stack: :meth:`default_layers` unless ``layers`` is
    given (a list used for every endpoint, or ``layers(endpoint, config)``); a list
    without a parse layer gets the endpoint's one where the default stack has it
    (:func:`with_parse`).
    ``transport`` swaps what sends requests: a lamina service, an httpx
    transport (``httpx.MockTransport``), ``"httpx"`` (the default), ``"aiohttp"``
    (``lamina[aiohttp]``: about 2.7x less time per call on loopback) or ``"pyreqwest"``
    (``lamina[pyreqwest]``: the fastest), or ``client=`` an ``httpx.AsyncClient``.
    ``tracer_provider`` (default: the global one) receives every span; each run
    is one trace: run span → call span per endpoint → attempt spans.
    One orchestrator can serve many runs, concurrently; they share connections,
    breakers, limiters, cache and metrics. Two orchestrators share none of these, even
    when built on one config. Close it with ``aclose()`` or ``async with``.
    """

    #: The transport used when none is given: one of :data:`TRANSPORT_NAMES` (process-wide).
    default_transport: ClassVar[TransportName] = "httpx"

    def __init__(
        self,
        config: APIOrchestrationConfig,
        *,
        layers: LayersOption = None,
        transport: Service | httpx.AsyncBaseTransport | TransportName | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        if not isinstance(config, APIOrchestrationConfig):
            raise ConfigError("must be an APIOrchestrationConfig", field="config")
        if not config.endpoints:
            raise ConfigError("an orchestration needs at least one endpoint", field="endpoints")
        if transport is not None and client is not None:
            raise ConfigError("pass transport or client, not both", field="transport")
        if isinstance(transport, str) and transport not in TRANSPORT_NAMES:
            raise ConfigError(
                f"unknown transport {transport!r} ({', '.join(TRANSPORT_NAMES)})",
                field="transport",
            )
        self.config = config
        self._shared = new_shared_state(config, clock, tracer_provider)
        self.clock = self._shared.clock
        self._transport_option = transport
        self._client = client
        self._transport: Service | None = None
        self._transport_loop: asyncio.AbstractEventLoop | None = None
        self._owned: Any = None  # the transport this orchestrator created and closes
        # closes the owned transport when the loop it is bound to shuts down
        self._keeper: AsyncGenerator[None, None] | None = None
        if layers is None:
            layers = config.layers
        self._layers = with_env_chaos(  # LAMINA_CHAOS: fault injection in every stack
            {e.name: self._layers_for(e, layers) for e in config.endpoints}, clock=self.clock
        )
        self._stacks: dict[str, Service] = {}
        self._build_stacks()  # built now, so the first run does not pay for it
        self._plan = Plan(config, self._layers)
        self._tracer = TracerSource(tracer_provider)

    @staticmethod
    def default_layers(endpoint: APIEndpoint, config: APIOrchestrationConfig) -> list[Layer]:
        """The default stack for ``endpoint``, outermost first (see ``orchestration.stack``).

        Called from a ``layers=`` callable, the layers share the orchestrator's breakers,
        limiters, cache and metrics; called elsewhere, they get new ones of their own.
        """
        return default_layers(endpoint, config, current_state(config))

    def _layers_for(self, endpoint: APIEndpoint, option: LayersOption) -> list[Layer]:
        if option is None:
            return default_layers(endpoint, self.config, self._shared)
        if callable(option):
            with building(self._shared):
                chosen = option(endpoint, self.config)
        else:
            chosen = option
        layers = list(chosen)
        for index, layer in enumerate(layers):
            if not callable(getattr(layer, "wrap", None)):
                raise ConfigError(
                    f"{type(layer).__name__} is not a Layer (no wrap method)",
                    field=f"layers[{index}]",
                    endpoint=endpoint.name,
                )
        return with_parse(layers, endpoint, self.config)

    # -- transport and stacks (bound to the running loop) ----------------------
    def _build_stacks(self) -> None:
        self._transport = self._make_transport()
        self._stacks = {
            name: ServiceBuilder(layers).service(self._transport)
            for name, layers in self._layers.items()
        }

    async def _stacks_for_loop(self) -> dict[str, Service]:
        """The stacks, bound to the running loop (a new loop gets a new owned client)."""
        loop = asyncio.get_running_loop()
        if self._transport_loop is not loop:
            if self._transport_loop is not None or self._transport is None:
                self._build_stacks()
            self._transport_loop = loop
            if self._owned is not None:
                # An async generator is closed by the loop's shutdown_asyncgens()
                # (asyncio.run, pytest-asyncio): the transport's connections are
                # closed on their own loop before it ends, aclose() or not.
                self._keeper = _close_at_shutdown(self._owned)
                await anext(self._keeper)
        return self._stacks

    def _make_transport(self) -> Service:
        option = self._transport_option
        if option is None and self._client is None:
            option = self.default_transport
        if isinstance(option, str) and option != "httpx":
            module, name = _OPTIONAL_TRANSPORTS[option]
            # a missing client is a MissingExtra naming the extra; a broken one, its error
            require((option,), option, f"transport={option!r}", field="transport")
            cls = getattr(importlib.import_module(module, __package__), name)
            owned: Service = cls(max_response_bytes=self.config.max_response_bytes)
            self._owned = owned
            return owned
        if option == "httpx":
            option = None
        if option is not None and not isinstance(option, httpx.AsyncBaseTransport):
            return option
        if self._client is not None:
            return HttpxTransport(self._client, max_response_bytes=self.config.max_response_bytes)
        # An owned client belongs to one event loop; a new loop (asyncio.run again) gets a new one.
        transport = HttpxTransport(
            transport=option, max_response_bytes=self.config.max_response_bytes
        )
        self._owned = transport
        return transport

    # -- running -----------------------------------------------------------------
    async def run(self, data: Any = None) -> RunReport:
        """Run once and return the report (``report.value`` is what ``execute`` returns)."""
        stacks = await self._stacks_for_loop()
        config = self.config
        run = Run(config, stacks, data, self.clock, self._plan)
        scheduler = SCHEDULERS[config.mode]
        tracer = self._tracer.get()
        if tracer is None:  # no-op tracing: skip the span's context work
            return await self._run(scheduler, run, trace.INVALID_SPAN)
        with tracer.start_as_current_span(
            f"lamina.run {config.mode.value}",
            attributes={"lamina.mode": config.mode.value, "lamina.endpoints": len(stacks)},
        ) as span:
            return await self._run(scheduler, run, span)

    async def _run(self, scheduler: Scheduler, run: Run, span: trace.Span) -> RunReport:
        try:
            await self._schedule(scheduler, run)
        except BaseException as exc:
            span.set_attribute("lamina.outcome", type(exc).__name__)
            if isinstance(exc, LaminaError):
                exc.report = self._report(run, None)
            raise
        report = self._report(run, run.merged_value())
        span.set_attribute("lamina.outcome", "ok" if report.ok else "partial")
        return report

    async def _schedule(self, scheduler: Scheduler, run: Run) -> None:
        timeout = self.config.total_timeout
        try:
            if timeout is None:
                await scheduler(run)
                return
            scope = asyncio.timeout(timeout)
            try:
                async with scope:
                    await scheduler(run)
            except builtins.TimeoutError as exc:
                if scope.expired():
                    raise OrchestrationTimeout(
                        f"run passed total_timeout={timeout:g}s", timeout=timeout
                    ) from exc
                raise
        except BaseExceptionGroup as group:
            error = _first_error(group)
            raise error from error.__cause__

    def _report(self, run: Run, value: Any) -> RunReport:
        return RunReport(
            value=value,
            mode=self.config.mode.value,
            endpoints=run.reports,
            duration=self.clock.now() - run.started,
            order=list(run.order),
            in_order=self.config.mode in IN_ORDER_MODES,
        )

    async def execute(self, data: Any = None) -> Any:
        """Run once and return the merged results (see ``result_merger``).

        An endpoint that fails gives ``None`` (or its ``error_handler``'s value): each
        such endpoint, and each one skipped because of it, logs one WARNING on the
        ``lamina`` logger naming it, the error's class and its scrubbed message. Use
        :meth:`run` for the whole report (it logs nothing: the report says it all).
        """
        report = await self.run(data)
        log_failures(report)
        return report.value

    def execute_sync(self, data: Any = None, *, loop: str = "auto") -> Any:
        """``execute`` for scripts and notebooks without a running event loop.

        Inside a running loop (Jupyter, an async framework) use ``await execute()``.
        Each call runs on a new event loop and closes what it opened on it (this
        orchestrator's connections, the Redis backend's client for that loop)
        before the loop ends. ``loop``: ``"auto"`` (uvloop when ``lamina[uvloop]``
        is installed, else asyncio's), ``"asyncio"`` or ``"uvloop"``.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return run_on_loop(self._execute_and_release(data), loop=loop)
        raise RuntimeError(
            "execute_sync() cannot run inside a running event loop; use 'await execute()'"
        )

    async def _execute_and_release(self, data: Any) -> Any:
        try:
            return await self.execute(data)
        finally:
            await self._release_loop()
            close_backend = getattr(self._shared.backend, "aclose", None)
            if close_backend is not None:  # closes only the client of this loop
                await close_backend()

    # -- state ------------------------------------------------------------------
    def get_metrics(self) -> IOMetrics:
        """Request counts, success rate, latency percentiles, per endpoint too."""
        return self._shared.metrics

    def clear_cache(self, name: str) -> int:
        """Drop the cached responses of endpoint ``name``; returns how many."""
        if name not in self._layers:
            raise KeyError(f"no endpoint named {name!r}")
        cache = self._shared.cache
        return cache.invalidate(name) if cache is not None else 0

    def clear_all_cache(self) -> int:
        """Drop every cached response; returns how many."""
        cache = self._shared.cache
        return cache.clear() if cache is not None else 0

    async def _release_loop(self) -> None:
        """Close the owned transport if it is bound to the running loop (or to none);
        one bound to another loop is closed by that loop's shutdown (see the keeper)."""
        cache = self._shared.cache
        if cache is not None:  # background refreshes (stale-while-revalidate) end first
            await cache.drain()
        owned, keeper, bound = self._owned, self._keeper, self._transport_loop
        self._owned = self._keeper = self._transport_loop = None
        self._transport = None  # the next run builds a new one
        if bound is not None and bound is not asyncio.get_running_loop():
            return  # its loop's shutdown_asyncgens() closes it, or has closed it
        if keeper is not None:
            await keeper.aclose()  # closes ``owned``
        elif owned is not None:
            await owned.aclose()

    async def aclose(self) -> None:
        """Close the connections this orchestrator opened (safe after ``execute_sync()``
        and on another loop than the one the runs used)."""
        await self._release_loop()
        aclose = getattr(self._transport_option, "aclose", None)
        if aclose is not None and not isinstance(self._transport_option, httpx.AsyncBaseTransport):
            await aclose()

    def __repr__(self) -> str:
        return (
            f"APIOrchestrator(mode={self.config.mode.value!r}, "
            f"endpoints={self.config.endpoint_names!r})"
        )


def parses(layer: object) -> bool:
    """True for a layer that turns responses into values and refuses bad statuses: a
    :class:`~lamina.layers.ParseLayer`, or one whose class sets ``parses_response = True``."""
    return isinstance(layer, ParseLayer) or getattr(layer, "parses_response", False) is True


#: Layers the parse layer goes inside of, as in the default stack (everything else it
#: goes outside of: retry, breaker, limits, timeout, attempt tracing, logging ...).
OUTSIDE_PARSE: tuple[type, ...] = (CallTracingLayer, MetricsLayer, FallbackLayer, CacheLayer)


def with_parse(
    layers: list[Layer], endpoint: APIEndpoint, config: APIOrchestrationConfig
) -> list[Layer]:
    """``layers``, with the endpoint's parse layer added when none of them parses, where
    the default stack has it: just inside the last call tracing, metrics, fallback or
    cache layer (outermost when there is none). So the orchestrator's values
    (``response_parser``, ``transform_output``, JSON or text) and its status handling (a
    non-2xx status fails the endpoint, or reaches a fallback as an ``HTTPStatusError``)
    hold with any ``layers=`` list."""
    if any(parses(layer) for layer in layers):
        return layers
    parse = ParseLayer(
        endpoint.response_parser,
        endpoint.transform_output,
        max_response_bytes=config.max_response_bytes,
    )
    at = 1 + max((i for i, lay in enumerate(layers) if isinstance(lay, OUTSIDE_PARSE)), default=-1)
    stack = [*layers[:at], parse, *layers[at:]]
    if any(not isinstance(layer, OUTSIDE_PARSE) for layer in layers[:at]):
        # a layer outside the parse layer may answer on its own (chaos injecting a 503):
        # that answer's status is judged too, as the parse layer would
        stack.insert(0, StatusCheckLayer())
    return stack


class StatusCheckLayer:
    """Refuses a non-2xx answer that reached it unparsed with :class:`lamina.HTTPStatusError`
    (what :class:`~lamina.layers.ParseLayer` does): :func:`with_parse` puts it outermost
    when a layer of the list sits outside the parse layer it added."""

    __slots__ = ()

    def wrap(self, inner: Service) -> Service:
        return _StatusCheckService(inner)

    def __repr__(self) -> str:
        return "StatusCheckLayer()"


class _StatusCheckService:
    __slots__ = ("inner",)

    def __init__(self, inner: Service) -> None:
        self.inner = inner

    async def __call__(self, request: Request) -> Response:
        response = await self.inner(request)
        if not response.is_success and not isinstance(response, FallbackResponse):
            raise HTTPStatusError.from_response(response)
        return response

    def __repr__(self) -> str:
        return f"<StatusCheck -> {self.inner!r}>"


async def _close_at_shutdown(owned: Any) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await owned.aclose()


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The error that stopped a task group: a lamina error first, else the first one."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    for exc in leaves:
        if isinstance(exc, LaminaError):
            return exc
    return leaves[0]
