"""Numbers in a config or a layer: not finite, denormal or absurd ends in ConfigError at
construction, naming the field and the allowed range (lamina._validate)."""

from __future__ import annotations

from typing import Any

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, ConfigError
from lamina._validate import MAX_BYTES, MAX_COUNT, MAX_RETRIES, MAX_SECONDS
from lamina.layers import (
    CacheLayer,
    CircuitBreakerLayer,
    RateLimitLayer,
    RetryLayer,
    TimeoutLayer,
)
from lamina.layers.circuit_breaker import BreakerMachine
from lamina.layers.rate_limit import Limiter
from lamina.layers.retry import RetryBudget, StatusRetryPolicy

URL = "http://127.0.0.1:9/x"
HOSTILE = [1e-320, 1e308, float("nan"), float("inf"), float("-inf"), -1, 0, True, "5", None]

# field -> values that are valid despite being in HOSTILE
ZERO_OK = {"retry_count", "retry_delay", "error_threshold"}
NONE_OK = {"total_timeout", "global_rate_limit", "cache_ttl", "rate_limit", "burst_limit"}

ENDPOINT_FIELDS = ["timeout", "retry_count", "retry_delay", "rate_limit", "burst_limit"]
CONFIG_FIELDS = [
    "max_concurrent",
    "total_timeout",
    "global_rate_limit",
    "rate_limit_window",
    "error_threshold",
    "circuit_breaker_threshold",
    "circuit_breaker_timeout",
    "cache_ttl",
    "max_response_bytes",
]


def _valid(field: str, value: Any) -> bool:
    return (value == 0 and value is not True and field in ZERO_OK) or (
        value is None and field in NONE_OK
    )


def _cases(fields: list[str]) -> list[Any]:
    return [
        pytest.param(field, value, id=f"{field}={value!r}")
        for field in fields
        for value in HOSTILE
        if not _valid(field, value)
    ]


@pytest.mark.parametrize(("field", "value"), _cases(ENDPOINT_FIELDS))
def test_endpoint_numbers_are_bounded(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        APIEndpoint(name="a", url=URL, **{field: value})
    assert err.value.field == field
    assert err.value.endpoint == "a"
    assert " between " in err.value.message  # the allowed range is in the message


@pytest.mark.parametrize(("field", "value"), _cases(CONFIG_FIELDS))
def test_config_numbers_are_bounded(field: str, value: Any) -> None:
    kwargs: dict[str, Any] = {field: value}
    if field == "global_rate_limit":
        kwargs["rate_limit_window"] = 60
    with pytest.raises(ConfigError) as err:
        APIOrchestrationConfig(endpoints=[APIEndpoint(name="a", url=URL)], **kwargs)
    assert err.value.field == field
    assert " between " in err.value.message


def test_messages_name_the_range() -> None:
    with pytest.raises(ConfigError) as err:
        APIOrchestrationConfig(rate_limit_window=1e-320)
    assert str(err.value) == (
        "rate_limit_window: must not be a denormal number: a duration in seconds between "
        "0.001 (1 ms) and 2592000 (30 days), got 1e-320"
    )
    with pytest.raises(ConfigError) as err:
        APIEndpoint(name="a", url=URL, retry_delay=1e308)
    assert "0 or a duration in seconds between 0.001 (1 ms) and 2592000 (30 days)" in str(err.value)
    with pytest.raises(ConfigError, match="must be finite"):
        APIOrchestrationConfig(circuit_breaker_timeout=float("nan"))
    with pytest.raises(ConfigError, match="must be an integer between 0 and 100, got 1000"):
        APIEndpoint(name="a", url=URL, retry_count=1000)


def test_a_rate_slower_than_one_call_per_30_days_is_refused() -> None:
    # 1 call per 60 s window is fine; 1e-5 per 60 s is one call per 69 days
    with pytest.raises(ConfigError, match=r"calls per 60 s between 2\.31e-05") as err:
        APIOrchestrationConfig(global_rate_limit=1e-5)
    assert err.value.field == "global_rate_limit"
    with pytest.raises(ConfigError, match="calls per minute"):
        APIEndpoint(name="a", url=URL, rate_limit=1e-300)


def test_huge_integers_do_not_overflow() -> None:
    with pytest.raises(ConfigError) as err:
        APIOrchestrationConfig(max_response_bytes=10**400)
    assert err.value.field == "max_response_bytes"


def test_the_largest_values_are_accepted() -> None:
    slowest = 60 / MAX_SECONDS  # calls per minute: one per 30 days
    endpoint = APIEndpoint(
        name="a",
        url=URL,
        timeout=MAX_SECONDS,
        retry_count=MAX_RETRIES,
        retry_delay=MAX_SECONDS,
        rate_limit=slowest,
        burst_limit=MAX_COUNT,
    )
    config = APIOrchestrationConfig(
        endpoints=[endpoint],
        max_concurrent=MAX_COUNT,
        total_timeout=MAX_SECONDS,
        global_rate_limit=1,
        rate_limit_window=MAX_SECONDS,
        error_threshold=1,
        circuit_breaker_threshold=MAX_COUNT,
        circuit_breaker_timeout=MAX_SECONDS,
        cache_ttl=MAX_SECONDS,
        max_response_bytes=MAX_BYTES,
    )
    assert config.endpoints[0].rate_limit == slowest
    smallest = APIEndpoint(name="b", url=URL, timeout=0.001, retry_count=0, retry_delay=0)
    assert smallest.timeout == 0.001


# -- the layers' own constructors -------------------------------------------------------


LAYERS: list[Any] = [
    pytest.param(lambda v: Limiter(v, 1.0), "rate", id="Limiter.rate"),
    pytest.param(lambda v: Limiter(10, v), "period", id="Limiter.period"),
    pytest.param(lambda v: Limiter(10, 1.0, burst=v), "burst", id="Limiter.burst"),
    pytest.param(lambda v: RateLimitLayer(10, max_wait=v), "max_wait", id="RateLimit.max_wait"),
    pytest.param(lambda v: CircuitBreakerLayer(v), "threshold", id="Breaker.threshold"),
    pytest.param(lambda v: CircuitBreakerLayer(5, v), "timeout", id="Breaker.timeout"),
    pytest.param(lambda v: BreakerMachine(5, v), "timeout", id="BreakerMachine.timeout"),
    pytest.param(lambda v: TimeoutLayer(v), "timeout", id="TimeoutLayer"),
    pytest.param(lambda v: RetryLayer(retries=v), "retries", id="Retry.retries"),
    pytest.param(lambda v: RetryLayer(attempts=v), "attempts", id="Retry.attempts"),
    pytest.param(lambda v: RetryLayer(max_delay=v), "max_delay", id="Retry.max_delay"),
    pytest.param(lambda v: RetryLayer(total_timeout=v), "total_timeout", id="Retry.total"),
    pytest.param(lambda v: RetryLayer(deadline=v), "deadline", id="Retry.deadline"),
    pytest.param(lambda v: StatusRetryPolicy(backoff=v), "backoff", id="Policy.backoff"),
    pytest.param(lambda v: RetryBudget(ttl=v), "ttl", id="Budget.ttl"),
    pytest.param(lambda v: RetryBudget(min_per_second=v), "min_per_second", id="Budget.min"),
    pytest.param(lambda v: RetryBudget(percent=v), "percent", id="Budget.percent"),
    pytest.param(lambda v: CacheLayer(ttl=v), "ttl", id="Cache.ttl"),
    pytest.param(lambda v: CacheLayer(stale_if_error=v), "stale_if_error", id="Cache.stale"),
]


@pytest.mark.parametrize("value", [1e-320, 1e308, float("nan"), float("inf"), -1, True])
@pytest.mark.parametrize(("build", "field"), LAYERS)
def test_layer_constructors_are_bounded(build: Any, field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as err:
        build(value)
    assert err.value.field == field
    assert " between " in err.value.message


def test_layer_zero_only_where_allowed() -> None:
    assert RateLimitLayer(10, max_wait=0).max_wait == 0
    for build in (lambda: Limiter(0, 1.0), lambda: CircuitBreakerLayer(0), lambda: TimeoutLayer(0)):
        with pytest.raises(ConfigError):
            build()
