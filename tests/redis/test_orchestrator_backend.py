"""The orchestrator's shared state on Redis: two orchestrators stand in for two workers."""

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CircuitOpenError,
    RedisBackend,
)
from lamina.testing import LocalServer


def config(server: LocalServer, backend: RedisBackend) -> APIOrchestrationConfig:
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="down", url=server.url_for("/status/503"), retry_count=0),
            APIEndpoint(name="user", url=server.url_for("/json?user=1")),
        ],
        mode="parallel",
        circuit_breaker_threshold=2,
        circuit_breaker_timeout=30,
        cache_ttl=60,
        backend=backend,
    )


async def test_two_workers_share_breaker_and_cache(
    lamina_server: LocalServer, redis_url: str, prefix: str
) -> None:
    worker_a = APIOrchestrator(config(lamina_server, RedisBackend(redis_url, prefix=prefix)))
    worker_b = APIOrchestrator(config(lamina_server, RedisBackend(redis_url, prefix=prefix)))
    async with worker_a, worker_b:
        for _ in range(2):
            await worker_a.run()  # opens the breaker of "down" and caches "user"
        report = await worker_b.run()
    assert lamina_server.hits("/status/503") == 2  # worker B never reached it
    assert isinstance(report.endpoints["down"].error, CircuitOpenError)
    assert report.endpoints["user"].outcome == "cached"
    assert lamina_server.hits("/json") == 1


def test_backend_url_in_config_is_validated_without_leaking() -> None:
    import pytest

    from lamina import ConfigError

    with pytest.raises(ConfigError) as info:
        APIOrchestrationConfig(
            endpoints=[APIEndpoint(name="a", url="http://x.test/")],
            backend="mysql://user:hunter2secret@db/0",
        )
    assert info.value.field == "backend"
    assert "hunter2secret" not in str(info.value)
