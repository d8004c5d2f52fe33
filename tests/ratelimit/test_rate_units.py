"""Issue 14 item 5: a rate says its unit. ``per_second=``/``per_minute=``/``per_hour=``
next to ``rate``/``period``, one form at a time, and the unit in every error and repr."""

from __future__ import annotations

import pytest

from lamina import ConfigError, RateLimitExceeded, Request, Response, ServiceBuilder
from lamina.layers.circuit_breaker import BreakerPool, CircuitBreakerLayer
from lamina.layers.rate_limit import Limiter, RateLimit, RateLimiter, RateLimitLayer
from lamina.orchestration.config import APIEndpoint, APIOrchestrationConfig
from lamina.orchestration.stack import default_layers, new_shared_state
from lamina.testing import ManualClock


async def ok(request: Request) -> Response:
    return Response(200, request=request)


@pytest.mark.parametrize(
    ("form", "rate", "period"),
    [
        ({"per_second": 5}, 5.0, 1.0),
        ({"per_minute": 600}, 600.0, 60.0),
        ({"per_hour": 5000}, 5000.0, 3600.0),
        ({"rate": 10}, 10.0, 1.0),  # rate alone is per second, as before
        ({"rate": 10, "period": 60}, 10.0, 60.0),
    ],
)
def test_each_form_builds_the_limit_it_names(
    form: dict[str, float], rate: float, period: float
) -> None:
    for limiter in (RateLimitLayer(**form).limiter, Limiter(**form)):  # type: ignore[arg-type]
        assert (limiter.rate, limiter.period) == (rate, period)


async def test_per_minute_paces_per_minute(manual_clock: ManualClock) -> None:
    layer = RateLimitLayer(per_minute=2, max_wait=0, clock=manual_clock)
    service = ServiceBuilder().layer(layer).service(ok)
    for _ in range(2):
        await service(Request("GET", "http://x/"))
    with pytest.raises(RateLimitExceeded, match=r"2/min burst=2 would delay the call 60s"):
        await service(Request("GET", "http://x/"))
    manual_clock.advance(59.9)
    with pytest.raises(RateLimitExceeded):
        await service(Request("GET", "http://x/"))
    manual_clock.advance(0.1)
    assert (await service(Request("GET", "http://x/"))).status_code == 200


@pytest.mark.parametrize(
    ("form", "field", "words"),
    [
        ({"per_minute": 10, "period": 60}, "per_minute", "leave out period"),
        ({"per_minute": 10, "rate": 10}, "per_minute", "leave out rate"),
        ({"per_second": 1, "per_minute": 60}, "per_second", "leave out per_minute"),
        ({}, "rate", "per_minute="),
        ({"period": 60}, "rate", "a rate is required"),
    ],
)
def test_one_form_at_a_time(form: dict[str, float], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimitLayer(**form)  # type: ignore[arg-type]
    assert info.value.field == field
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("form", "field", "unit"),
    [
        ({"rate": 0}, "rate", "calls per second"),
        ({"rate": 0, "period": 60}, "rate", "calls per minute"),
        ({"rate": 0, "period": 90}, "rate", "calls per 90 s"),
        ({"per_minute": 0}, "per_minute", "calls per minute"),
        ({"per_hour": -1}, "per_hour", "calls per hour"),
        ({"per_second": "x"}, "per_second", "calls per second"),
        ({"rate": 10, "period": 0}, "period", "duration in seconds"),
        ({"rate": 10, "burst": 0}, "burst", "number of calls at once"),
        ({"rate": 10, "max_wait": -1}, "max_wait", "duration in seconds"),
    ],
)
def test_every_error_names_the_unit(form: dict[str, object], field: str, unit: str) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimitLayer(**form)  # type: ignore[arg-type]
    assert info.value.field == field
    assert unit in str(info.value)


@pytest.mark.parametrize(
    ("layer", "shown"),
    [
        (RateLimitLayer(20), "RateLimitLayer([20/s burst=20], max_wait=None)"),
        (
            RateLimitLayer(per_minute=10, burst=5, max_wait=2),
            "RateLimitLayer([10/min burst=5], max_wait=2s)",
        ),
        (RateLimitLayer(per_hour=5000), "RateLimitLayer([5000/h burst=5000], max_wait=None)"),
        (RateLimitLayer(10, 90), "RateLimitLayer([10 per 90 s burst=10], max_wait=None)"),
        (RateLimitLayer(0.5), "RateLimitLayer([0.5/s burst=1], max_wait=None)"),
    ],
)
def test_every_repr_names_the_unit(layer: RateLimitLayer, shown: str) -> None:
    assert repr(layer) == shown


def test_an_endpoints_rate_limit_is_per_minute_as_the_docs_table_says() -> None:
    """docs/concepts.md: ``rate_limit``/``burst_limit`` -> ``RateLimitLayer(per_minute=,
    burst=)``; ``global_rate_limit``/``rate_limit_window`` -> ``rate=, period=``."""
    endpoint = APIEndpoint("users", "http://x/users", rate_limit=10, burst_limit=5)
    config = APIOrchestrationConfig(
        endpoints=[endpoint], global_rate_limit=100, rate_limit_window=30
    )
    layers = default_layers(endpoint, config, new_shared_state(config))
    [layer] = [layer for layer in layers if isinstance(layer, RateLimitLayer)]
    own, shared = layer.limiters
    expected = RateLimitLayer(per_minute=10, burst=5).limiter
    assert (own.rate, own.period, own.burst) == (expected.rate, expected.period, expected.burst)
    assert str(own) == "'users' 10/min burst=5"
    assert (shared.rate, shared.period) == (100, 30)
    assert "10/min burst=5" in repr(layer)


@pytest.mark.parametrize(
    ("spec", "field", "unit"),
    [
        ({"limit": 0, "interval": 60}, "limit", "calls per minute (interval=60s)"),
        ({"limit": 1.5}, "limit", "calls per second"),
        ({"limit": 10, "burst": 0}, "burst", "calls at once"),
        ({"limit": 10, "interval": 0}, "interval", "duration in seconds"),
    ],
)
def test_the_references_rate_spec_names_its_unit(
    spec: dict[str, float], field: str, unit: str
) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimit(**spec)  # type: ignore[arg-type]
    assert info.value.field == field
    assert unit in str(info.value)


def test_the_breakers_reprs_name_seconds() -> None:
    assert repr(CircuitBreakerLayer(2, 1.5)) == (
        "CircuitBreakerLayer(threshold=2, timeout=1.5s, breakers=0)"
    )
    assert repr(BreakerPool()) == "BreakerPool(threshold=5, timeout=60s, breakers=0)"


def test_a_flows_layers_list_takes_the_per_unit_forms() -> None:
    from lamina.flows.layers import parse_layers

    [spec] = parse_layers([{"rate_limit": {"per_minute": 10, "burst": 2}}])
    assert spec.options == {"per_minute": 10, "burst": 2}
    with pytest.raises(ConfigError) as info:
        parse_layers([{"rate_limit": {"per_minute": 10, "period": 60}}])
    assert info.value.field == "layers[0].options.per_minute"


def test_a_rate_above_the_largest_burst_needs_no_burst_argument() -> None:
    limiter = Limiter(per_second=100_000_000)  # the default burst used to fail as "burst"
    assert (limiter.rate, limiter.burst, limiter.window) == (1e8, 1_000_000, 100_000_000)


def test_a_limits_status_names_its_units(manual_clock: ManualClock) -> None:
    limiter = Limiter(per_minute=2, clock=manual_clock)
    assert limiter.try_acquire(2)
    shown = repr(limiter.status())
    # was LimitStatus(rate=2.0, period=60.0, burst=2, available=0, retry_after=30.0, ...)
    assert shown == "LimitStatus(2/min burst=2, available=0, retry_after=60s, waiters=0)"
    assert repr(RateLimiter(3, window=0.5).status()) == (
        "LimitStatus(3 per 0.5 s burst=3, available=3, retry_after=0s, waiters=0)"
    )


def test_a_name_with_limiters_is_refused_not_dropped() -> None:
    """``name`` names the limit a rate builds; with ``limiters=`` it named nothing."""
    with pytest.raises(ConfigError, match="name") as info:
        RateLimitLayer(limiters=[Limiter(1)], name="users")
    assert info.value.field == "limiters"
