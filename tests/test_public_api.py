import lamina
import lamina.layers


def test_all_is_sorted_and_importable() -> None:
    names = [n for n in lamina.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in lamina.__all__:
        assert hasattr(lamina, name), name


def test_core_names_are_exported() -> None:
    for name in [
        "Request",
        "Response",
        "Service",
        "Layer",
        "ServiceBuilder",
        "layer_fn",
        "service_fn",
        "HttpxTransport",
        "LaminaError",
        "TransportError",
        "TimeoutError",
        "HTTPStatusError",
        "ParseError",
        "ConfigError",
    ]:
        assert name in lamina.__all__


def test_layers_all_is_sorted() -> None:
    assert list(lamina.layers.__all__) == sorted(lamina.layers.__all__)
    for name in lamina.layers.__all__:
        assert hasattr(lamina.layers, name)


def test_old_module_paths_still_import() -> None:
    """Paths the docs and the reference used before every middleware got its folder."""
    import lamina.breaker
    import lamina.cache
    import lamina.layers.retry_policy
    import lamina.ratelimit
    from lamina.layers import cache, circuit_breaker, rate_limit, retry

    assert lamina.breaker.exception_outcome is circuit_breaker.exception_outcome
    assert lamina.breaker.CircuitBreaker is lamina.CircuitBreaker
    assert lamina.cache.IGNORED_HEADERS is cache.IGNORED_HEADERS
    assert lamina.cache.KeyScheme is cache.KeyScheme
    assert lamina.ratelimit.InMemoryRateLimiter is rate_limit.InMemoryRateLimiter
    assert lamina.ratelimit.RateLimiterConfig is lamina.RateLimiterConfig
    assert lamina.layers.retry_policy.RetryBudget is retry.RetryBudget
    assert lamina.layers.retry_policy.parse_retry_after is retry.parse_retry_after
