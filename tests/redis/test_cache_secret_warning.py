"""The cache's HMAC key kept in Redis beside the entries is a trade-off the user is told
about once per process (issue 12 review, item 2), against a real Redis."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from lamina import Request, ServiceBuilder
from lamina.backends.redis import RedisBackend
from lamina.layers.cache import ENV_SECRET, CacheLayer
from lamina.layers.cache import shared as cache_module
from lamina.testing import LocalServer
from lamina.transports import AiohttpTransport, HttpxTransport

pytestmark = pytest.mark.timeout(60)

#: Redis answer time before a call counts as an outage. Not the default 0.25 s: on a
#: loaded machine redis-server can wait that long for a CPU, and the cache's fallback
#: then misses (two upstream hits, not one), which is not what these tests are about.
SLACK = 2.0


def warnings_about_the_key(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING
        and r.name.startswith("lamina")
        and "LAMINA_CACHE_KEY_SECRET" in r.getMessage()
    ]


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
async def test_a_key_kept_in_redis_is_warned_about_once(
    redis_url: str,
    prefix: str,
    lamina_server: LocalServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    monkeypatch.delenv(ENV_SECRET, raising=False)
    monkeypatch.setattr(cache_module, "_warned_key_beside_data", False)
    caplog.set_level(logging.WARNING, logger="lamina")
    transport = HttpxTransport() if kind == "httpx" else AiohttpTransport()
    async with transport:
        workers = [
            ServiceBuilder()
            .layer(CacheLayer(store=RedisBackend(redis_url, prefix=prefix, timeout=SLACK), ttl=60))
            .service(transport)
            for _ in range(2)
        ]
        for worker in workers * 3:
            response = await worker(
                Request("GET", lamina_server.url_for("/json?w=1"), endpoint="items")
            )
            assert response.status_code == 200
    assert lamina_server.hits("/json") == 1  # the two layers share the key: one entry
    [record] = warnings_about_the_key(caplog)
    message = record.getMessage()
    assert "RedisCacheStore keeps beside the cached entries" in message
    assert "LAMINA_CACHE_KEY_SECRET" in message
    assert "key_secret" in message


@pytest.mark.parametrize("how", ["env", "argument"])
async def test_no_warning_when_the_key_is_configured(
    redis_url: str,
    prefix: str,
    lamina_server: LocalServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    monkeypatch.setattr(cache_module, "_warned_key_beside_data", False)
    monkeypatch.delenv(ENV_SECRET, raising=False)
    options = {}
    if how == "env":
        monkeypatch.setenv(ENV_SECRET, "a-deployment-wide-secret-0123456789")
    else:
        options["key_secret"] = "a-deployment-wide-secret-0123456789"
    caplog.set_level(logging.WARNING, logger="lamina")
    layer = CacheLayer(
        store=RedisBackend(redis_url, prefix=prefix, timeout=SLACK), ttl=60, **options
    )
    async with HttpxTransport() as transport:
        service = ServiceBuilder().layer(layer).service(transport)
        for _ in range(2):
            await service(Request("GET", lamina_server.url_for("/json?w=2"), endpoint="items"))
    assert lamina_server.hits("/json") == 1
    assert warnings_about_the_key(caplog) == []


WORKER = """
import asyncio, logging, sys
from lamina import Request, ServiceBuilder
from lamina.backends.redis import RedisBackend
from lamina.layers.cache import CacheLayer
from lamina.transports import HttpxTransport

async def main(url, prefix, target):
    async with HttpxTransport() as transport:
        for _ in range(3):  # three layers, as three orchestrators in one process would
            layer = CacheLayer(store=RedisBackend(url, prefix=prefix, timeout=2.0), ttl=60)
            service = ServiceBuilder().layer(layer).service(transport)
            await service(Request("GET", target, endpoint="items"))

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
asyncio.run(main(*sys.argv[1:]))
"""


def test_once_per_process(redis_url: str, prefix: str, lamina_server: LocalServer) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_SECRET}
    runs = [
        subprocess.run(
            [sys.executable, "-c", WORKER, redis_url, prefix, lamina_server.url_for("/json")],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=True,
        )
        for _ in range(2)
    ]
    for run in runs:  # each process says it once, whatever it builds
        assert run.stderr.count("WARNING lamina.cache cache keys are HMACs") == 1, run.stderr
        assert "LAMINA_CACHE_KEY_SECRET" in run.stderr
    assert lamina_server.hits("/json") == 1  # and both processes shared the entry
