import re
from pathlib import Path

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


# -- extension points are public (issue 14 item 11) -------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
PRIVATE_IMPORT = re.compile(
    r"^\s*(?:from\s+lamina(?:\.\w+)*\._\w+[\s.]|import\s+lamina(?:\.\w+)*\._\w+"
    r"|from\s+lamina(?:\.\w+)*\s+import\s+(?:\(?\s*)?_\w+)",
    re.M,
)
CODE_BLOCK = re.compile(r"^ *```(?:python|py)\b[^\n]*\n(.*?)^ *```", re.S | re.M)


def private_imports(text: str) -> list[str]:
    return [m.group(0).strip() for m in PRIVATE_IMPORT.finditer(text)]


def test_the_private_import_check_catches_each_form() -> None:
    for line in [
        "from lamina._events import emit",
        "import lamina._redact",
        "from lamina.layers._x import y",
        "from lamina import _redact",
    ]:
        assert private_imports(line), line
    for line in ["from lamina.events import emit", "import lamina.redact", "from lamina import x"]:
        assert not private_imports(line), line


def test_docs_and_the_example_plugin_import_nothing_private() -> None:
    found = []
    pages = sorted((ROOT / "docs").rglob("*.md"))
    assert pages
    for page in pages:
        for block in CODE_BLOCK.findall(page.read_text(encoding="utf-8")):
            found += [f"{page.relative_to(ROOT)}: {hit}" for hit in private_imports(block)]
    sources = sorted((ROOT / "examples" / "plugin").rglob("*.py"))
    assert sources
    for source in sources:
        hits = private_imports(source.read_text(encoding="utf-8"))
        found += [f"{source.relative_to(ROOT)}: {hit}" for hit in hits]
    assert found == []


def test_events_and_redaction_are_public_modules() -> None:
    import lamina.events
    import lamina.redact

    assert list(lamina.events.__all__) == sorted(lamina.events.__all__)
    for module in (lamina.events, lamina.redact):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
    assert {"subscribe", "emit", "listen", "Event", "RetryScheduled"} <= set(lamina.events.__all__)
    assert {"scrub", "secret_values", "redact_url", "is_secret"} <= set(lamina.redact.__all__)
