"""Call metrics: the in-process :class:`IOMetrics` snapshot and the OpenTelemetry instruments.

:class:`IOMetrics` answers "how is it going?" from inside the program
(``metrics.success_rate``, ``metrics.p95``); :class:`OtelInstruments` feeds the
same facts to an OpenTelemetry ``MeterProvider`` for dashboards.

Counting rule: every call is recorded **once**, either with
``record_request(name, latency, success=...)`` or, when it failed, with
``record_error(name, error_type=..., latency=...)``. Both count a request, so
``total_requests == successes + errors`` and
``success_rate == 100 * (1 - error_rate)`` always hold.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import _internal as _metrics_internal

from . import _validate as check

__all__ = [
    "DURATION_BUCKETS",
    "EVENT_KINDS",
    "EndpointMetrics",
    "IOMetrics",
    "OtelInstruments",
]

#: The bucket boundaries the HTTP semantic conventions advise for durations (s).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

#: Event names reported by the layers and the counter kind each one feeds.
EVENT_KINDS: Mapping[str, str] = {
    "retry.scheduled": "retries",
    "cache.hit": "cache_hits",
    "cache.stale": "cache_stale",
    "cache.miss": "cache_misses",
    "cache.revalidated": "cache_revalidations",
    "cache.skip": "cache_skips",
    "breaker.rejected": "breaker_rejections",
    "ratelimit.wait": "ratelimit_waits",
    "hedge.sent": "hedges",
    "adaptive.rejected": "adaptive_rejections",
    "fallback.used": "fallbacks",
    "chaos.injected": "chaos_injections",
}


def _percentile(ordered: list[float], q: float) -> float:
    """Linear-interpolated percentile of sorted samples (``q`` in 0..100)."""
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class EndpointMetrics:
    """Counts and latency samples for one endpoint (or for all of them).

    Latencies are in milliseconds; percentiles use the most recent
    ``max_samples`` latencies, averages use every one.
    """

    max_samples: int = 1024
    requests: int = 0
    errors: int = 0
    latency_total: float = 0.0
    latency_count: int = 0
    samples: deque[float] = field(default_factory=deque)
    errors_by_type: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.samples = deque(self.samples, maxlen=self.max_samples)

    def _add(self, latency: float | None, error: str | None) -> None:
        self.requests += 1
        if error is not None:
            self.errors += 1
            self.errors_by_type[error] += 1
        if latency is not None:
            self.latency_total += latency
            self.latency_count += 1
            self.samples.append(latency)

    @property
    def total_requests(self) -> int:
        """Requests recorded, failed ones included."""
        return self.requests

    @property
    def successes(self) -> int:
        """Requests that succeeded."""
        return self.requests - self.errors

    @property
    def error_rate(self) -> float:
        """Failed requests as a fraction 0..1 (0 when nothing was recorded)."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def success_rate(self) -> float:
        """Successful requests in percent 0..100; always ``100 * (1 - error_rate)``."""
        return 100.0 * (1.0 - self.error_rate)

    @property
    def avg_latency(self) -> float:
        """Mean latency in ms over every recorded latency (0 when none)."""
        return self.latency_total / self.latency_count if self.latency_count else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile in ms (``q`` in 0..100) over the recent samples."""
        q = check.number(q, "q", low=0, high=100, what="a percentile")
        return _percentile(sorted(self.samples), q)

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def retries(self) -> int:
        return self.events["retries"]

    @property
    def cache_hits(self) -> int:
        return self.events["cache_hits"]

    @property
    def breaker_rejections(self) -> int:
        return self.events["breaker_rejections"]

    @property
    def ratelimit_waits(self) -> int:
        return self.events["ratelimit_waits"]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot."""
        ordered = sorted(self.samples)
        return {
            "total_requests": self.requests,
            "errors": self.errors,
            "success_rate": self.success_rate,
            "error_rate": self.error_rate,
            "avg_latency": self.avg_latency,
            "p50": _percentile(ordered, 50),
            "p95": _percentile(ordered, 95),
            "p99": _percentile(ordered, 99),
            "errors_by_type": dict(self.errors_by_type),
            "events": dict(self.events),
        }


class IOMetrics(EndpointMetrics):
    """Request counts, error rates and latency percentiles, overall and per endpoint.

    ``metrics.total_requests``, ``metrics.success_rate`` (percent),
    ``metrics.error_rate`` (fraction), ``metrics.avg_latency`` and
    ``metrics.p50``/``p95``/``p99`` (ms) cover every endpoint;
    ``metrics.endpoint("users")`` gives the same for one.
    Safe to share between threads; recording costs a lock and a deque append.
    """

    def __init__(self, *, max_samples: int = 1024) -> None:
        super().__init__(max_samples=check.count(max_samples, "max_samples"))
        self._lock = threading.Lock()
        self._endpoints: dict[str, EndpointMetrics] = {}

    def _for(self, name: str) -> EndpointMetrics:
        stats = self._endpoints.get(name)
        if stats is None:
            stats = self._endpoints[name] = EndpointMetrics(max_samples=self.max_samples)
        return stats

    def record_request(self, name: str, latency: float = 0.0, *, success: bool = True) -> None:
        """Record one finished request to ``name`` taking ``latency`` ms."""
        if not success:
            self.record_error(name, "error", latency=latency)
            return
        with self._lock:  # EndpointMetrics._add's success path, inlined for both
            stats = self._endpoints.get(name) or self._for(name)
            self.requests += 1
            self.latency_total += latency
            self.latency_count += 1
            self.samples.append(latency)
            stats.requests += 1
            stats.latency_total += latency
            stats.latency_count += 1
            stats.samples.append(latency)

    def record_error(
        self, name: str, error_type: str = "error", *, latency: float | None = None
    ) -> None:
        """Record one failed request to ``name`` (counts as a request; ``latency`` in ms)."""
        with self._lock:
            self._add(latency, error_type)
            self._for(name)._add(latency, error_type)

    def record_event(self, name: str, kind: str, count: int = 1) -> None:
        """Count ``kind`` (``"retries"``, ``"cache_hits"``, ...) for endpoint ``name``."""
        with self._lock:
            self.events[kind] += count
            self._for(name).events[kind] += count

    def endpoint(self, name: str) -> EndpointMetrics:
        """The metrics of one endpoint (empty if nothing was recorded for it)."""
        with self._lock:
            return self._endpoints.get(name) or EndpointMetrics(max_samples=self.max_samples)

    @property
    def per_endpoint(self) -> dict[str, EndpointMetrics]:
        """Every endpoint's metrics, by name."""
        with self._lock:
            return dict(self._endpoints)

    def reset(self) -> None:
        """Forget everything recorded."""
        with self._lock:
            self.requests = self.errors = self.latency_count = 0
            self.latency_total = 0.0
            self.samples.clear()
            self.errors_by_type.clear()
            self.events.clear()
            self._endpoints.clear()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot, with ``endpoints`` by name."""
        with self._lock:
            snapshot = super().as_dict()
            snapshot["endpoints"] = {n: s.as_dict() for n, s in self._endpoints.items()}
        return snapshot

    def __repr__(self) -> str:
        return (
            f"IOMetrics(total_requests={self.requests}, success_rate={self.success_rate:.1f}%,"
            f" avg_latency={self.avg_latency:.1f}ms, endpoints={len(self._endpoints)})"
        )


class OtelInstruments:
    """The OpenTelemetry instruments lamina records (scope ``lamina``).

    * ``http.client.request.duration`` (histogram, s) per HTTP attempt, with the
      semantic-convention attributes;
    * ``lamina.call.duration`` (histogram, s) per logical call, with
      ``lamina.endpoint``, ``lamina.outcome`` and ``error.type``;
    * counters ``lamina.retries``, ``lamina.cache.hits``, ``lamina.cache.revalidations``,
      ``lamina.breaker.rejections`` and ``lamina.ratelimit.waits``.
    """

    __slots__ = ("_global", "_recording", "call_duration", "counters", "request_duration")

    @classmethod
    def for_provider(
        cls, meter_provider: otel_metrics.MeterProvider | None = None
    ) -> OtelInstruments:
        """The instruments of ``meter_provider`` (default: the global one), made once per provider.

        Every ``MetricsLayer.wrap()`` asks for them, so a config of 2,000 endpoints
        shares one set. Creating them per stack is not free: without an SDK the
        global provider is a proxy that keeps every instrument ever created (to
        upgrade it when an SDK is set), about 1.2 KB per endpoint for good.
        Instruments made on the proxy start recording once an SDK provider is set.
        """
        provider = meter_provider or otel_metrics.get_meter_provider()
        with _PER_PROVIDER_LOCK:
            try:
                found = _PER_PROVIDER.get(provider)
            except TypeError:  # not hashable: nothing to share it under
                return cls(provider)
            if found is None:
                found = cls(provider)
                with contextlib.suppress(TypeError):  # not weak-referenceable: not shared
                    _PER_PROVIDER[provider] = found
        return found

    def __init__(self, meter_provider: otel_metrics.MeterProvider | None = None) -> None:
        from ._version import __version__

        provider = meter_provider or otel_metrics.get_meter_provider()
        # The global provider before an SDK is set is a proxy: nothing records until then.
        self._global = provider is _proxy_meter_provider()
        self._recording = not self._global and not isinstance(
            provider, otel_metrics.NoOpMeterProvider
        )
        meter = provider.get_meter("lamina", __version__)
        self.request_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.call_duration = meter.create_histogram(
            "lamina.call.duration",
            unit="s",
            description="Duration of logical calls, retries and waits included.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.counters: dict[str, otel_metrics.Counter] = {
            "retries": meter.create_counter(
                "lamina.retries", unit="{retry}", description="Retries scheduled."
            ),
            "cache_hits": meter.create_counter(
                "lamina.cache.hits", unit="{hit}", description="Calls answered from the cache."
            ),
            "cache_revalidations": meter.create_counter(
                "lamina.cache.revalidations",
                unit="{call}",
                description="Stale cache entries confirmed by a 304 Not Modified.",
            ),
            "breaker_rejections": meter.create_counter(
                "lamina.breaker.rejections",
                unit="{call}",
                description="Calls refused by an open circuit breaker.",
            ),
            "ratelimit_waits": meter.create_counter(
                "lamina.ratelimit.waits",
                unit="{wait}",
                description="Calls that waited for a rate limiter.",
            ),
            "fallbacks": meter.create_counter(
                "lamina.fallbacks", unit="{call}", description="Calls a fallback answered."
            ),
            "chaos_injections": meter.create_counter(
                "lamina.chaos.injections",
                unit="{injection}",
                description="Faults, statuses and delays a chaos layer injected.",
            ),
        }

    def recording(self) -> bool:
        """Whether what these instruments record reaches a meter provider that keeps it
        (false for the no-op provider, and for the global proxy until an SDK is set)."""
        if self._recording or not self._global:
            return self._recording
        provider = getattr(_metrics_internal, "_METER_PROVIDER", True)  # True: can't tell
        if provider is None or isinstance(provider, otel_metrics.NoOpMeterProvider):
            return False
        self._recording = True
        return True


def _proxy_meter_provider() -> object:
    return getattr(_metrics_internal, "_PROXY_METER_PROVIDER", None)


# The instruments of each meter provider, dropped with the provider.
_PER_PROVIDER: weakref.WeakKeyDictionary[Any, OtelInstruments] = weakref.WeakKeyDictionary()
_PER_PROVIDER_LOCK = threading.Lock()
