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


def test_old_names_are_aliases_of_the_new() -> None:
    """Services are <Name>Service; stores Memory<Thing>Store and Redis<Thing>Store."""
    import lamina.breaker
    import lamina.cache
    from lamina.layers import (
        cache,
        call_tracing,
        circuit_breaker,
        concurrency,
        logging,
        metrics,
        parse,
        retry,
        timeout,
        tracing,
    )

    services = [
        (timeout.Timeout, timeout.TimeoutService),
        (retry.Retry, retry.RetryService),
        (concurrency.ConcurrencyLimit, concurrency.ConcurrencyLimitService),
        (parse.Parse, parse.ParseService),
        (logging.Logging, logging.LoggingService),
        (metrics.Metrics, metrics.MetricsService),
        (tracing.Tracing, tracing.TracingService),
        (tracing.CallTracing, call_tracing.CallTracingService),
        (cache.Cache, cache.CacheService),
    ]
    for old, new in services:
        assert old is new
    assert circuit_breaker.CircuitBreakerService.__name__ == "CircuitBreakerService"
    assert lamina.breaker.MemoryBackend is circuit_breaker.MemoryBreakerStore
    assert lamina.breaker.BreakerBackend is circuit_breaker.BreakerStore
    assert lamina.RedisBreakerBackend is lamina.RedisBreakerStore
    assert lamina.backends.RedisBreakerBackend is lamina.RedisBreakerStore
    assert lamina.cache.MemoryStore is lamina.MemoryStore is lamina.MemoryCacheStore
    assert lamina.backends.InMemoryBackend().breaker_backend().__class__.__name__ == (
        "MemoryBreakerStore"
    )
