"""A cached response never crosses callers on a shared Redis (issue 12, item 2).

Two layers (or orchestrators) with their own ``RedisBackend`` stand in for two
workers; the upstream is the real loopback server's ``/echo`` route, which
answers with the request's headers, so a response served to the wrong tenant
shows in the value. Every scenario runs on both transports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import redis
from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    HttpxTransport,
    Request,
    Service,
    ServiceBuilder,
)
from lamina.backends.redis import RedisBackend
from lamina.layers.cache import ENV_SECRET, SECRET_REFRESH, CacheLayer
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, ManualClock
from lamina.transports import AiohttpTransport

from .conftest import keys_under

pytestmark = pytest.mark.timeout(30)

TENANT_HEADERS = ["X-RapidAPI-Key", "Ocp-Apim-Subscription-Key", "X-Auth-Key", "X-Tenant-ID"]
TENANT_A = "acme"  # short and guessable on purpose: it must not be findable in Redis
TENANT_B = "globex"


@pytest.fixture(params=["httpx", "aiohttp"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Service]:
    kind = HttpxTransport if request.param == "httpx" else AiohttpTransport
    async with kind() as t:
        yield t


@pytest.fixture(autouse=True)
def no_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_SECRET, raising=False)


def worker(redis_url: str, prefix: str, transport: Service, **options: Any) -> Service:
    """One worker's stack: its own backend and layer, the shared Redis and prefix."""
    layer = CacheLayer(store=RedisBackend(redis_url, prefix=prefix), ttl=60, **options)
    return ServiceBuilder([layer, ParseLayer()]).service(transport)


def echo(server: LocalServer, headers: dict[str, str], path: str = "/echo?q=1") -> Request:
    return Request("GET", server.url_for(path), endpoint="items", headers=headers)


def guesses(*values: str) -> list[str]:
    """A value and its unkeyed SHA-256 forms: none may appear in Redis."""
    found = []
    for value in values:
        digest = hashlib.sha256(value.encode()).hexdigest()
        found += [value, digest[:32], digest[:40]]
    return found


def cache_keys(client: redis.Redis, prefix: str) -> list[str]:
    return [k for k in keys_under(client, prefix) if k.startswith(f"{prefix}:v1:cache:")]


@pytest.mark.parametrize("header", TENANT_HEADERS)
async def test_tenants_on_two_workers_never_share_and_redis_holds_no_header_value(
    redis_url: str,
    prefix: str,
    sync_redis: redis.Redis,
    lamina_server: LocalServer,
    transport: Service,
    header: str,
) -> None:
    one = worker(redis_url, prefix, transport)
    two = worker(redis_url, prefix, transport)
    a = await one(echo(lamina_server, {header: TENANT_A}))
    b = await two(echo(lamina_server, {header: TENANT_B}))
    assert not b.from_cache
    assert a.value["headers"][header.lower()] == TENANT_A
    assert b.value["headers"][header.lower()] == TENANT_B
    assert lamina_server.hits("/echo") == 2
    # each tenant's entry is shared by both workers, and only with that tenant
    again_a = await two(echo(lamina_server, {header: TENANT_A}))
    again_b = await one(echo(lamina_server, {header: TENANT_B}))
    assert again_a.from_cache
    assert again_b.from_cache
    assert again_a.value == a.value
    assert again_b.value == b.value
    assert lamina_server.hits("/echo") == 2
    names = keys_under(sync_redis, prefix)
    assert len(cache_keys(sync_redis, prefix)) == 2
    for name in names:
        for guess in guesses(TENANT_A, TENANT_B, header.lower()):
            assert guess not in name
    for name in cache_keys(sync_redis, prefix):
        entry = json.loads(sync_redis.hget(name, "d") or b"{}")
        del entry["value"], entry["content"]  # the echoed body: the response itself
        stored = json.dumps(entry)
        for guess in guesses(TENANT_A, TENANT_B):
            assert guess not in stored


async def test_ignored_headers_share_across_workers(
    redis_url: str, prefix: str, lamina_server: LocalServer, transport: Service
) -> None:
    one = worker(redis_url, prefix, transport)
    two = worker(redis_url, prefix, transport)
    first = await one(echo(lamina_server, {"X-Tenant-ID": TENANT_A, "traceparent": "00-1"}))
    second = await two(
        echo(
            lamina_server,
            {"X-Tenant-ID": TENANT_A, "traceparent": "00-2", "User-Agent": "other/2"},
        )
    )
    assert second.from_cache
    assert second.value == first.value
    assert lamina_server.hits("/echo") == 1


async def test_vary_is_honoured_on_redis_one_entry_per_variant(
    redis_url: str,
    prefix: str,
    sync_redis: redis.Redis,
    lamina_server: LocalServer,
    transport: Service,
) -> None:
    lamina_server.route(
        "/lang/",
        lambda req: (
            200,
            {"lang": req.headers.get("accept-language")},
            {"Vary": "Accept-Language"},
        ),
    )
    one = worker(redis_url, prefix, transport)
    two = worker(redis_url, prefix, transport)
    for svc, lang, cached in [
        (one, "fr", False),
        (two, "de", False),
        (two, "fr", True),
        (one, "de", True),
        (one, "fr", True),
    ]:
        response = await svc(echo(lamina_server, {"Accept-Language": lang}, path="/lang/x"))
        assert response.value == {"lang": lang}
        assert response.from_cache == cached
    assert lamina_server.hits("/lang/x") == 2
    for name in cache_keys(sync_redis, prefix):
        entry = json.loads(sync_redis.hget(name, "d") or b"{}")
        assert entry["vary"] == ["accept-language"]
        assert entry["vary_digest"] not in guesses("fr", "de")


async def test_custom_key_functions_stay_per_caller_on_redis(
    redis_url: str, prefix: str, lamina_server: LocalServer, transport: Service
) -> None:
    one = worker(redis_url, prefix, transport, key=lambda request: "everyone")
    two = worker(redis_url, prefix, transport, key=lambda request: "everyone")
    a = await one(echo(lamina_server, {"X-Tenant-ID": TENANT_A}))
    b = await two(echo(lamina_server, {"X-Tenant-ID": TENANT_B}))
    assert not b.from_cache
    assert b.value["headers"]["x-tenant-id"] == TENANT_B
    assert (await two(echo(lamina_server, {"X-Tenant-ID": TENANT_A}))).value == a.value
    assert lamina_server.hits("/echo") == 2


def tenant_config(
    server: LocalServer, backend: RedisBackend, headers: dict[str, str], **options: Any
) -> APIOrchestrationConfig:
    endpoint = APIEndpoint(name="items", url=server.url_for("/echo?q=orch"), headers=headers)
    return APIOrchestrationConfig(endpoints=[endpoint], cache_ttl=60, backend=backend, **options)


@pytest.mark.parametrize(
    "options",
    [{}, {"cache_key_generator": lambda endpoint: endpoint.name}],
    ids=["default-key", "cache_key_generator"],
)
async def test_orchestrators_of_two_tenants_on_one_redis(
    redis_url: str,
    prefix: str,
    lamina_server: LocalServer,
    transport: Service,
    options: dict[str, Any],
) -> None:
    def run_as(tenant: str) -> APIOrchestrator:
        backend = RedisBackend(redis_url, prefix=prefix)
        config = tenant_config(lamina_server, backend, {"X-Tenant-ID": tenant}, **options)
        return APIOrchestrator(config, transport=transport)

    async with run_as(TENANT_A) as a1, run_as(TENANT_B) as b1, run_as(TENANT_A) as a2:
        first = (await a1.run()).endpoints["items"]
        other = (await b1.run()).endpoints["items"]
        again = (await a2.run()).endpoints["items"]
    assert other.outcome == "ok"
    assert other.result["headers"]["x-tenant-id"] == TENANT_B
    assert again.outcome == "cached"
    assert again.result == first.result
    assert lamina_server.hits("/echo") == 2


@pytest.mark.parametrize(
    ("cache_headers", "calls"),
    [(None, 1), ({"include": ["User-Agent"]}, 2), ({"ignore": ["X-Client-Build"]}, 1)],
)
async def test_orchestrator_cache_headers_extend_the_ignored_set(
    redis_url: str,
    prefix: str,
    lamina_server: LocalServer,
    transport: Service,
    cache_headers: dict[str, list[str]] | None,
    calls: int,
) -> None:
    def run_as(agent: str) -> APIOrchestrator:
        headers = {"User-Agent": agent, "X-Client-Build": agent}
        if cache_headers is None or "include" in cache_headers:
            del headers["X-Client-Build"]
        config = tenant_config(
            lamina_server,
            RedisBackend(redis_url, prefix=prefix),
            headers,
            cache_headers=cache_headers,
        )
        return APIOrchestrator(config, transport=transport)

    async with run_as("bot/1") as one, run_as("bot/2") as two:
        await one.run()
        await two.run()
    assert lamina_server.hits("/echo") == calls


async def test_env_secret_is_shared_and_nothing_is_kept_in_redis(
    redis_url: str,
    prefix: str,
    sync_redis: redis.Redis,
    lamina_server: LocalServer,
    transport: Service,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_SECRET, "a-deployment-wide-secret-0123456789")
    one = worker(redis_url, prefix, transport)
    two = worker(redis_url, prefix, transport)
    await one(echo(lamina_server, {"X-Tenant-ID": TENANT_A}))
    assert (await two(echo(lamina_server, {"X-Tenant-ID": TENANT_A}))).from_cache
    names = keys_under(sync_redis, prefix)
    assert names == cache_keys(sync_redis, prefix)  # no shared secret in Redis
    assert len(names) == 1


async def test_the_shared_secret_survives_its_key_being_lost(
    redis_url: str,
    prefix: str,
    sync_redis: redis.Redis,
    lamina_server: LocalServer,
    transport: Service,
    manual_clock: ManualClock,
) -> None:
    svc = worker(redis_url, prefix, transport, clock=manual_clock)
    await svc(echo(lamina_server, {"X-Tenant-ID": TENANT_A}))
    secret_key = f"{prefix}:v1:cache-secret:{{hmac}}"
    secret = sync_redis.get(secret_key)
    assert secret is not None
    assert 29 * 86_400_000 < sync_redis.pttl(secret_key) <= 30 * 86_400_000
    sync_redis.delete(secret_key)  # expired, or FLUSHDB'd by an operator
    manual_clock.advance(SECRET_REFRESH + 1)
    # the worker puts its secret back when it renews it, so the entries stay reachable
    assert (await svc(echo(lamina_server, {"X-Tenant-ID": TENANT_A}))).from_cache
    assert sync_redis.get(secret_key) == secret
    # a new worker adopts it
    other = worker(redis_url, prefix, transport)
    assert (await other(echo(lamina_server, {"X-Tenant-ID": TENANT_A}))).from_cache
    assert lamina_server.hits("/echo") == 1
