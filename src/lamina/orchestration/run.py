"""One run of an orchestration: the state the mode schedulers drive.

A scheduler decides *when* to call :meth:`Run.call` for which endpoint; the run
decides *what* a call is (condition, payload, URL, request), sends it through the
endpoint's stack and records the outcome. Nothing here knows about retries,
caches or spans.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from .._clock import Clock
from .._core import Request, Service
from .._errors import EndpointError, ErrorThresholdExceeded
from .._events import EVENTS_KEY
from .._headers import Headers
from .._redact import scrub, secret_values, url_secret_values
from ..layers.chaos import CHAOS_NOTE_KEY
from ..layers.fallback import FallbackResponse
from .config import APIEndpoint, APIOrchestrationConfig, topological_order
from .report import EndpointReport
from .urls import fill_url

__all__ = ["NO_BODY_METHODS", "NO_PAYLOAD", "Plan", "Run"]

NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
MIN_CALLS_FOR_THRESHOLD = 10
NO_PAYLOAD: Any = object()  # "no previous result": the payload falls back to the input
NO_SECRETS: frozenset[str] = frozenset()
_NO_EXTENSIONS: Mapping[str, Any] = {}
#: The headers of every request of an endpoint without headers (Headers never change).
NO_HEADERS = Headers()


class Plan:
    """What every run of one config shares, worked out once: the topological order,
    the ``url.template`` of each endpoint whose path has placeholders, the secret
    values each endpoint's requests carry (scrubbed from its report's error), and
    which endpoints' stacks may write a note to the report (``notes``).

    ``layers`` (each endpoint's layer list) tells whether a stack may note anything:
    one made only of the built-in layers that never do (:data:`QUIET_LAYERS`: no cache,
    no chaos, no user layer) gets no note callbacks on its requests (a bound method, a
    listener and its list less per call). Without ``layers`` every endpoint gets them."""

    __slots__ = ("extensions", "has_dependencies", "notes", "secrets", "topological")

    def __init__(
        self,
        config: APIOrchestrationConfig,
        layers: Mapping[str, Sequence[object]] | None = None,
    ) -> None:
        self.topological = topological_order(config.endpoints)
        self.has_dependencies = any(e.depends_on for e in config.endpoints)
        self.extensions: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, frozenset[str]] = {}
        self.notes: dict[str, bool] = {}
        for endpoint in config.endpoints:
            chosen = None if layers is None else layers.get(endpoint.name)
            self.notes[endpoint.name] = chosen is None or not all(
                type(layer) in QUIET_LAYERS for layer in chosen
            )
            probe = Request(
                endpoint.method, endpoint.url, headers=endpoint.headers, params=endpoint.params
            )
            # most endpoints carry none: share one empty set (each is ~200 bytes)
            self.secrets[endpoint.name] = frozenset(secret_values(probe)) or NO_SECRETS
            path = urlsplit(endpoint.url).path  # never the query
            if "{" in path:
                self.extensions[endpoint.name] = {"lamina.url_template": path}


class Run:
    """State of one run: input, results, reports, limits."""

    def __init__(
        self,
        config: APIOrchestrationConfig,
        stacks: Mapping[str, Service],
        data: Any,
        clock: Clock,
        plan: Plan | None = None,
    ) -> None:
        self.config = config
        self.stacks = stacks
        self.data = data
        self.clock = clock
        self.started = clock.now()
        self.deadline = (
            None if config.total_timeout is None else self.started + config.total_timeout
        )
        self.context: dict[str, Any] = dict(data) if isinstance(data, Mapping) else {"input": data}
        self.results: dict[str, Any] = {}
        self.order: list[str] = []
        self.plan = plan if plan is not None else Plan(config)
        self.reports = {
            e.name: EndpointReport(
                e.name, depends_on=e.dependencies, secrets=self.plan.secrets[e.name]
            )
            for e in config.endpoints
        }
        # each endpoint is called at most once a run: with no fewer slots than endpoints
        # the semaphore could never make a call wait, so the run goes without one
        self.slots: asyncio.Semaphore | None = (
            asyncio.Semaphore(config.max_concurrent)
            if config.max_concurrent < len(config.endpoints)
            else None
        )
        self.finished = 0
        self.failed = 0
        self.stopped = False
        self.blocked: set[str] = set()  # skipped because a dependency did not succeed

    def blocked_by(self, endpoint: APIEndpoint) -> str | None:
        """A dependency that failed, was cancelled or was itself blocked, if any."""
        if not endpoint.depends_on:  # most have none: no empty list to iterate
            return None
        for dep in endpoint.depends_on:
            if dep in self.blocked or self.reports[dep].outcome in ("failed", "cancelled"):
                return dep
        return None

    # -- one call ------------------------------------------------------------
    async def call(self, endpoint: APIEndpoint, previous: Any = NO_PAYLOAD) -> Any:
        """Run ``endpoint`` once (or skip it) and record what happened.

        ``previous`` is the payload a PIPELINE passes on. Returns the result.
        Raises only what should stop the run (fail_fast, error threshold).
        """
        report = self.reports[endpoint.name]
        if self.stopped:
            report.outcome, report.reason = "cancelled", "the run stopped"
            return None
        blocker = self.blocked_by(endpoint)
        if blocker is not None:
            self.blocked.add(endpoint.name)
            return self._skip(report, f"dependency {blocker!r} did not succeed")
        try:
            if endpoint.condition is not None and not endpoint.condition(self.context):
                return self._skip(report, "condition is false")
            request = self._request(endpoint, previous, report)
        except Exception as exc:  # a user callback or a URL placeholder failed
            return self._fail(endpoint, report, exc)
        if request.url != endpoint.url:  # placeholders filled: the query may hold more
            report.secrets = report.secrets | frozenset(url_secret_values(request.url))
        slots = self.slots
        if slots is not None:
            await slots.acquire()
        try:
            if self.stopped:
                report.outcome, report.reason = "cancelled", "the run stopped"
                return None
            self.order.append(endpoint.name)
            report.start = self.clock.now() - self.started
            try:
                response = await self.stacks[endpoint.name](request)
            except asyncio.CancelledError:
                report.outcome = "cancelled"
                report.end = self.clock.now() - self.started
                raise
            except Exception as exc:
                report.end = self.clock.now() - self.started
                report.latency = report.end - report.start
                report.attempts = getattr(exc, "attempts", None) or max(report.attempts, 1)
                status = getattr(exc, "status_code", None)
                report.status_code = status if isinstance(status, int) else None
                return self._fail(endpoint, report, exc)
        finally:
            if slots is not None:
                slots.release()
        report.end = self.clock.now() - self.started
        report.latency = report.end - report.start
        report.attempts = response.attempts
        report.status_code = response.status_code
        report.outcome = "stale" if response.stale else "cached" if response.from_cache else "ok"
        if isinstance(response, FallbackResponse):  # the value stands in for the error
            status = getattr(response.error, "status_code", None)
            report.status_code = status if isinstance(status, int) else None
            report.error = response.error
            report.outcome = "fallback"
        self._finish(endpoint, report, response.value, failed=False)
        return response.value

    def _request(self, endpoint: APIEndpoint, previous: Any, report: EndpointReport) -> Request:
        if endpoint.transform_input is not None:
            payload = endpoint.transform_input(self.context)
        elif endpoint.body is not None:
            payload = endpoint.body
        elif previous is not NO_PAYLOAD:
            payload = previous
        else:
            payload = self.data
        url = fill_url(endpoint.url, self.context, endpoint=endpoint.name)
        json_body = content = None
        if endpoint.method not in NO_BODY_METHODS and payload is not None:
            if isinstance(payload, bytes | str):
                content = payload
            else:
                json_body = payload
        # a new dict per call (layers add to it): the plan's (which never holds
        # listeners), a chaos layer's note to the report, and the cache's reason for
        # not storing a response (the report shows it), where the stack may note them
        plan = self.plan
        if plan.notes.get(endpoint.name, True):
            extensions = {
                **plan.extensions.get(endpoint.name, _NO_EXTENSIONS),
                CHAOS_NOTE_KEY: report.note_chaos,
                EVENTS_KEY: [_CacheNote(report)],
            }
        else:
            extensions = {**plan.extensions.get(endpoint.name, _NO_EXTENSIONS)}
        headers = endpoint.headers
        return Request(
            endpoint.method,
            url,
            headers=NO_HEADERS if headers is None else headers,
            params=endpoint.params,
            json=json_body,
            content=content,
            endpoint=endpoint.name,
            deadline=self.deadline,
            extensions=extensions,
        )

    def _skip(self, report: EndpointReport, reason: str) -> None:
        report.outcome, report.reason = "skipped", reason
        self.results[report.name] = None
        self.context[report.name] = None
        return None

    def _fail(self, endpoint: APIEndpoint, report: EndpointReport, exc: Exception) -> Any:
        report.error = exc
        if endpoint.error_handler is not None:
            try:
                result = endpoint.error_handler(exc)
            except Exception as handler_exc:
                handler_exc.__cause__ = exc
                report.error = handler_exc
            else:
                report.outcome = "handled"
                self._finish(endpoint, report, result, failed=False)
                return result
        report.outcome = "failed"
        self._finish(endpoint, report, None, failed=True)
        if self.config.fail_fast:
            self.stopped = True
            detail = scrub(str(getattr(report.error, "message", report.error)), report.secrets)
            raise EndpointError(
                f"failed: {type(report.error).__name__}: {detail}", endpoint=endpoint.name
            ) from report.error
        self._check_threshold()
        return None

    def _finish(
        self, endpoint: APIEndpoint, report: EndpointReport, value: Any, *, failed: bool
    ) -> None:
        report.result = value
        self.results[endpoint.name] = value
        self.context[endpoint.name] = value
        self.finished += 1
        self.failed += failed

    def _check_threshold(self) -> None:
        if self.finished < MIN_CALLS_FOR_THRESHOLD:
            return
        if self.failed / self.finished > self.config.error_threshold:
            self.stopped = True
            raise ErrorThresholdExceeded(
                f"{self.failed} of {self.finished} calls failed, more than "
                f"error_threshold={self.config.error_threshold:g}",
                failed=self.failed,
                finished=self.finished,
                threshold=self.config.error_threshold,
            )

    def merged_value(self) -> Any:
        """The run's value: result_merger over results in config order, else a dict."""
        config = self.config
        results = self.results
        if config.result_merger is not None:
            value = config.result_merger([results.get(e.name) for e in config.endpoints])
        else:
            value = {e.name: results.get(e.name) for e in config.endpoints}
        if config.result_transformer is not None:
            value = config.result_transformer(value)
        return value


def _quiet_layers() -> frozenset[type]:
    """The built-in layers that never emit ``cache.skip`` nor read the chaos note."""
    from ..layers.circuit_breaker import CircuitBreakerLayer
    from ..layers.logging import LoggingLayer
    from ..layers.metrics import MetricsLayer
    from ..layers.parse import ParseLayer
    from ..layers.rate_limit import RateLimitLayer
    from ..layers.retry import RetryLayer
    from ..layers.timeout import TimeoutLayer
    from ..layers.tracing import CallTracingLayer, TracingLayer

    return frozenset(
        {
            CallTracingLayer,
            MetricsLayer,
            ParseLayer,
            RetryLayer,
            CircuitBreakerLayer,
            RateLimitLayer,
            TimeoutLayer,
            TracingLayer,
            LoggingLayer,
        }
    )


#: Layers whose stacks need no note callbacks (exact types: a subclass may note).
QUIET_LAYERS = _quiet_layers()


class _CacheNote:
    """Listener that writes why the cache did not store a call's response (its
    ``cache.skip`` event) into the report's note: ``not cached: <reason>``.

    Skips decided before the call (a method the layer does not cache, ``bypass``) say
    nothing about the response and are left out: the call may still fail, and a
    failed call's note is its error."""

    __slots__ = ("report",)

    def __init__(self, report: EndpointReport) -> None:
        self.report = report

    def __call__(self, name: str, attributes: Mapping[str, Any]) -> None:
        if name == "cache.skip":
            reason = str(attributes.get("reason"))
            if not reason.startswith(_BEFORE_THE_CALL):
                self.report.reason = f"not cached: {reason}"


#: ``cache.skip`` reasons given before the call is made (lamina.layers.cache.layer).
_BEFORE_THE_CALL = ("method ", "bypass")
