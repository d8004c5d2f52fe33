import pytest

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    ConfigError,
    OrchestrationMode,
)

URL = "http://127.0.0.1:9/x"


def ep(name: str, **kw: object) -> APIEndpoint:
    return APIEndpoint(name=name, url=URL, **kw)  # type: ignore[arg-type]


def test_reference_defaults() -> None:
    endpoint = APIEndpoint(name="a", url=URL)
    assert (endpoint.method, endpoint.timeout, endpoint.retry_count, endpoint.retry_delay) == (
        "GET",
        30.0,
        3,
        1.0,
    )
    config = APIOrchestrationConfig(endpoints=[endpoint])
    assert config.mode is OrchestrationMode.SEQUENTIAL
    assert (config.max_concurrent, config.total_timeout, config.fail_fast) == (10, 300.0, False)
    assert (config.error_threshold, config.circuit_breaker_threshold) == (0.1, 5)
    assert (config.circuit_breaker_timeout, config.cache_ttl, config.rate_limit_window) == (
        60.0,
        None,
        60,
    )
    assert config.metrics_enabled
    assert not config.log_requests
    assert not config.log_responses


def test_reference_fragments_without_endpoints_are_accepted() -> None:
    # The reference's best-practice snippets build configs without endpoints.
    config = APIOrchestrationConfig(circuit_breaker_threshold=5, circuit_breaker_timeout=60.0)
    with pytest.raises(ConfigError, match="endpoints"):
        APIOrchestrator(config)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"method": "FETCH"}, "method"),
        ({"retry_count": -1}, "retry_count"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"burst_limit": 0}, "burst_limit"),
        ({"response_parser": "json"}, "response_parser"),
        ({"condition": 1}, "condition"),
        ({"retry_on": [999]}, "retry_on"),
        ({"depends_on": "a"}, "depends_on"),
    ],
)
def test_bad_endpoint_fields(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ep("e", **kwargs)
    assert info.value.field == field
    assert "[e]" in str(info.value)


@pytest.mark.parametrize("url", ["not a url", "ftp://h/x", "/relative", "", "http://{host}/x"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="url"):
        APIEndpoint(name="e", url=url)


def test_unknown_dependency_names_the_place() -> None:
    with pytest.raises(ConfigError, match=r"endpoints\[2\]\.depends_on: unknown endpoint 'auth'"):
        APIOrchestrationConfig(endpoints=[ep("a"), ep("b"), ep("c", depends_on=["auth"])])


def test_cycle_is_named() -> None:
    with pytest.raises(ConfigError, match="dependency cycle a -> c -> b -> a"):
        APIOrchestrationConfig(
            endpoints=[
                ep("a", depends_on=["c"]),
                ep("b", depends_on=["a"]),
                ep("c", depends_on=["b"]),
            ]
        )


def test_duplicates_and_bad_config_fields() -> None:
    with pytest.raises(ConfigError, match=r"endpoints\[1\]\.name: duplicate endpoint name 'a'"):
        APIOrchestrationConfig(endpoints=[ep("a"), ep("a")])
    for kwargs, field in [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"total_timeout": -5}, "total_timeout"),
        ({"global_rate_limit": 0}, "global_rate_limit"),
        ({"error_threshold": 1.5}, "error_threshold"),
        ({"circuit_breaker_threshold": 0}, "circuit_breaker_threshold"),
        ({"cache_ttl": 0}, "cache_ttl"),
        ({"mode": "sideways"}, "mode"),
        ({"result_merger": 3}, "result_merger"),
    ]:
        with pytest.raises(ConfigError) as info:
            APIOrchestrationConfig(endpoints=[ep("a")], **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field


def test_mode_accepts_strings() -> None:
    assert (
        APIOrchestrationConfig(endpoints=[ep("a")], mode="parallel").mode
        is OrchestrationMode.PARALLEL
    )  # type: ignore[arg-type]


def test_reprs_mask_secrets() -> None:
    endpoint = ep(
        "a", headers={"Authorization": "Bearer sekret-1234"}, params={"api_key": "k-5678"}
    )
    config = APIOrchestrationConfig(endpoints=[endpoint])
    for text in (repr(endpoint), repr(config)):
        assert "sekret-1234" not in text
        assert "k-5678" not in text
    assert "[REDACTED]" in repr(endpoint)
