"""What happens when Redis is unreachable, slow or restarted: on_error local / closed / open."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from lamina import CircuitOpenError, HttpxTransport, RateLimitExceeded, Request, ServiceBuilder
from lamina._errors import BackendUnavailable, ConfigError
from lamina._events import listen
from lamina.backends import InMemoryBackend, resolve_backend
from lamina.backends.redis import RedisBackend
from lamina.layers.cache import CacheLayer
from lamina.layers.circuit_breaker import CircuitBreakerLayer
from lamina.layers.parse import ParseLayer
from lamina.layers.rate_limit import RateLimitLayer
from lamina.testing import LocalServer

from .conftest import SpareRedis, free_port


def full_stack(backend: RedisBackend, transport: HttpxTransport, rate: float = 100) -> Any:
    return ServiceBuilder(
        [
            CacheLayer(store=backend, ttl=30),
            ParseLayer(),
            CircuitBreakerLayer(2, 30, backend=backend),
            RateLimitLayer(rate, 60, backend=backend, name="api", max_wait=0.1),
        ]
    ).service(transport)


@pytest.fixture
async def transport() -> AsyncIterator[HttpxTransport]:
    async with HttpxTransport() as t:
        yield t


def dead_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


async def test_local_policy_keeps_runs_going_and_warns_once(
    transport: HttpxTransport, lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisBackend(dead_url(), prefix="lamina-test-dead", retry_interval=30)
    svc = full_stack(backend, transport, rate=2)
    events: list[tuple[str, dict[str, Any]]] = []
    caplog.set_level(logging.WARNING, logger="lamina.backends")
    async with asyncio.timeout(5):  # an outage never hangs a call
        for i in range(3):
            request = listen(
                Request("GET", lamina_server.url_for(f"/json?i={i}"), endpoint="e"),
                lambda name, attrs: events.append((name, dict(attrs))),
            )
            if i < 2:
                assert (await svc(request)).status_code == 200
            else:  # the local fallback still enforces 2/min in this process
                with pytest.raises(RateLimitExceeded):
                    await svc(request.replace(extensions={**request.extensions}))
    assert lamina_server.hits("/json") == 2
    warnings = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "127.0.0.1" in warnings[0]
    assert backend.errors == 1  # after the first failure Redis is left alone for a while
    assert backend.fallbacks >= 9  # cache get + breaker acquire/release + limiter, per call
    assert (
        "backend.unavailable",
        {"backend": "redis", "what": "rate limit", "policy": "local"},
    ) in events


async def test_closed_policy_rejects_with_a_typed_error(
    transport: HttpxTransport, lamina_server: LocalServer
) -> None:
    backend = RedisBackend(dead_url(), prefix="lamina-test-dead", on_error="closed")
    async with asyncio.timeout(5):
        for layer in (
            CacheLayer(store=backend, ttl=30),
            CircuitBreakerLayer(2, 30, backend=backend),
            RateLimitLayer(10, 1, backend=backend, name="api"),
        ):
            svc = ServiceBuilder([layer]).service(transport)
            with pytest.raises(BackendUnavailable) as info:
                await svc(Request("GET", lamina_server.url_for("/json"), endpoint="e"))
            assert info.value.backend == "redis"
    assert lamina_server.hits("/json") == 0


async def test_open_policy_lets_calls_through(
    transport: HttpxTransport, lamina_server: LocalServer
) -> None:
    backend = RedisBackend(dead_url(), prefix="lamina-test-dead", on_error="open")
    svc = full_stack(backend, transport, rate=1)
    async with asyncio.timeout(5):
        for _ in range(3):  # unlimited, unguarded, uncached
            response = await svc(Request("GET", lamina_server.url_for("/json"), endpoint="e"))
            assert response.status_code == 200
            assert not response.from_cache
    assert lamina_server.hits("/json") == 3


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung Redis)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


async def test_a_hung_redis_costs_at_most_the_short_timeout(
    transport: HttpxTransport, lamina_server: LocalServer, silent_server: int
) -> None:
    backend = RedisBackend(
        f"redis://127.0.0.1:{silent_server}/0", prefix="lamina-test-hung", timeout=0.1
    )
    svc = full_stack(backend, transport)
    async with asyncio.timeout(2):  # one 0.1-0.2 s timeout, then the fallback answers at once
        for _ in range(3):
            assert (await svc(Request("GET", lamina_server.url_for("/json")))).status_code == 200
    assert backend.errors == 1


async def test_redis_restart_local_then_recover(
    spare_redis: SpareRedis, transport: HttpxTransport, lamina_server: LocalServer
) -> None:
    import redis as sync

    backend = RedisBackend(spare_redis.url, prefix="lamina-test-restart", retry_interval=0.1)
    breaker = CircuitBreakerLayer(3, 30, backend=backend)
    svc = ServiceBuilder([breaker]).service(transport)
    url = lamina_server.url_for("/status/500")
    await svc(Request("GET", url, endpoint="x"))  # one failure counted in Redis
    client = sync.Redis(port=spare_redis.port)
    assert client.hget("lamina-test-restart:v1:breaker:{x}", "failures") == b"1"

    spare_redis.stop()
    for _ in range(4):  # keeps completing on local state; opens locally at 3
        try:
            await svc(Request("GET", url, endpoint="x"))
        except CircuitOpenError:
            break
    assert backend.errors >= 1
    assert backend.fallbacks >= 3
    # the local record starts from the last state seen in Redis (1 failure): 2 more open it
    assert lamina_server.hits("/status/500") == 3

    spare_redis.start()  # an empty server on the same port
    await asyncio.sleep(0.15)  # past retry_interval: the next call asks Redis again
    response = await svc(Request("GET", url, endpoint="x"))  # Redis's record: closed, 0
    assert response.status_code == 500
    assert backend.recoveries == 1
    assert client.hget("lamina-test-restart:v1:breaker:{x}", "failures") == b"1"
    client.close()
    await backend.aclose()


async def test_closed_policy_rejects_during_the_outage_and_recovers(
    spare_redis: SpareRedis, transport: HttpxTransport, lamina_server: LocalServer
) -> None:
    backend = RedisBackend(
        spare_redis.url, prefix="lamina-test-closed", on_error="closed", retry_interval=0.1
    )
    svc = ServiceBuilder([RateLimitLayer(100, 1, backend=backend, name="api")]).service(transport)
    url = lamina_server.url_for("/json")
    assert (await svc(Request("GET", url))).status_code == 200
    spare_redis.stop()
    with pytest.raises(BackendUnavailable):
        await svc(Request("GET", url))
    spare_redis.start()
    await asyncio.sleep(0.15)
    assert (await svc(Request("GET", url))).status_code == 200
    assert lamina_server.hits("/json") == 2
    await backend.aclose()


async def test_redis_dying_mid_call_never_replaces_the_upstream_outcome(
    spare_redis: SpareRedis, transport: HttpxTransport, lamina_server: LocalServer
) -> None:
    for sent, policy in enumerate(("closed", "local", "open"), 1):
        if spare_redis.proc is None:
            spare_redis.start()
        backend = RedisBackend(spare_redis.url, prefix=f"lamina-test-{policy}", on_error=policy)
        svc = ServiceBuilder([CircuitBreakerLayer(2, 30, backend=backend)]).service(transport)
        call = asyncio.create_task(svc(Request("GET", lamina_server.url_for("/json?ms=150"))))
        # admitted by Redis, upstream still answering (its 150 ms pause); a fixed 80 ms
        # sleep could end before a loaded machine's Redis admitted the call
        async with asyncio.timeout(10):
            while lamina_server.hits("/json") < sent:  # noqa: ASYNC110 - polls the server
                await asyncio.sleep(0.002)
        spare_redis.stop()
        response = await call  # the release fails in Redis; the response stands
        assert response.status_code == 200
        await backend.aclose()


def test_config_and_resolution() -> None:
    with pytest.raises(ConfigError) as info:
        RedisBackend(on_error="ignore")  # type: ignore[arg-type]
    assert info.value.field == "on_error"
    with pytest.raises(ConfigError) as info:
        RedisBackend("http://x")
    assert info.value.field == "url"
    with pytest.raises(ConfigError) as info:
        resolve_backend("postgres://u:hunter2@db/0")
    assert "hunter2" not in str(info.value)
    assert isinstance(resolve_backend(None), InMemoryBackend)
    backend = resolve_backend("redis://user:hunter2@cache.internal:6380/2")
    assert isinstance(backend, RedisBackend)
    assert "hunter2" not in repr(backend)
    assert backend.address == "cache.internal:6380/2"
    assert backend.key("ratelimit", "a b*").startswith("lamina:v1:ratelimit:{h-")
