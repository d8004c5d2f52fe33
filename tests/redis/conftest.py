"""Fixtures for the Redis backend tests: a real Redis, a spare one we can stop, worker processes.

* ``redis_url``: ``LAMINA_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).
  If it does not answer the tests skip, except under ``CI=true`` where they fail.
* ``prefix`` / ``backend``: a random key prefix per test (``lamina-test-<uuid>``);
  every key under it is deleted afterwards (never FLUSHALL).
* ``spare_redis``: a ``redis-server`` of our own on a free port, which a test may
  stop and start again.
* ``workers``: OS processes (``python -c WORKER``) that build lamina stacks on a
  shared Redis and run calls on command, one JSON line in, one JSON line out.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import redis
from lamina.backends.redis import RedisBackend

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long real-time test (the multi-process rate test)")


def _url() -> str:
    return os.environ.get("LAMINA_REDIS_URL", DEFAULT_URL)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the Redis tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = _url()
    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        _unavailable(
            f"no Redis at LAMINA_REDIS_URL ({type(exc).__name__}); start one with "
            "`redis-server --daemonize yes --port 6379 --save '' --appendonly no`"
        )
    return url


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    yield client
    client.close()


@pytest.fixture
def prefix(sync_redis: redis.Redis) -> Iterator[str]:
    name = f"lamina-test-{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(sync_redis.scan_iter(match=f"{name}:*", count=500))
    if keys:
        sync_redis.delete(*keys)


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    be = RedisBackend(redis_url, prefix=prefix)
    yield be
    await be.aclose()


def keys_under(client: redis.Redis, prefix: str) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*", count=500))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SpareRedis:
    """A redis-server process this test session owns (stop/start, freeze/thaw at will)."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            _unavailable("redis-server is not installed")
        assert exe is not None
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        extra = self.extra
        password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
        client = redis.Redis(
            port=self.port, password=password, socket_timeout=0.2, socket_connect_timeout=0.2
        )
        for _ in range(100):
            try:
                client.ping()
                client.close()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("spare redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # our own child, by its pid
            self.proc.wait(5)
            self.proc = None

    def freeze(self) -> None:
        """SIGSTOP our own child: connections stay open, nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def spare_redis(redis_url: str) -> Iterator[SpareRedis]:
    server = SpareRedis()
    server.start()
    yield server
    server.stop()


WORKER = r"""
import asyncio, json, sys, time

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
from lamina import HttpxTransport, Request, ServiceBuilder
from lamina.backends.redis import RedisBackend
from lamina.layers.cache import CacheLayer
from lamina.layers.circuit_breaker import CircuitBreakerLayer
from lamina.layers.parse import ParseLayer
from lamina.layers.rate_limit import RateLimitLayer


def build(spec, backend, transport):
    if spec.get("orchestrator"):
        return Orchestrated(spec["orchestrator"], backend, transport)
    layers = []
    if spec.get("cache"):
        layers += [CacheLayer(store=backend, **spec["cache"]), ParseLayer()]
    if spec.get("breaker"):
        layers.append(CircuitBreakerLayer(backend=backend, **spec["breaker"]))
    if spec.get("rate"):
        layers.append(RateLimitLayer(backend=backend, **spec["rate"]))
    return ServiceBuilder(layers).service(transport)


class Orchestrated:
    # an APIOrchestrator with one endpoint (url): the issue's "runs"

    def __init__(self, options, backend, transport):
        self.options, self.backend, self.transport = options, backend, transport
        self.orchestrators = {}

    async def run(self, url, endpoint):
        orch = self.orchestrators.get(url)
        if orch is None:
            options = dict(self.options)
            endpoint_options = options.pop("endpoint", {})
            config = APIOrchestrationConfig(
                endpoints=[APIEndpoint(name=endpoint or "api", url=url, **endpoint_options)],
                backend=self.backend,
                **options,
            )
            orch = self.orchestrators[url] = APIOrchestrator(config, transport=self.transport)
        report = await orch.run()
        (only,) = report.endpoints.values()
        if only.error is not None:
            return type(only.error).__name__
        return f"ok:{only.status_code}:{int(only.outcome == 'cached')}"


def make_backend(cmd):
    options = dict(cmd.get("backend") or {})
    pool = options.pop("client_pool", None)
    if pool is not None:  # a client of the user's own, on a non-blocking pool of that size
        from redis.asyncio import ConnectionPool, Redis

        options["client"] = Redis(
            connection_pool=ConnectionPool.from_url(cmd["redis"], max_connections=pool)
        )
    return RedisBackend(cmd["redis"], prefix=cmd["prefix"], **options)


async def call(svc, url, endpoint):
    if isinstance(svc, Orchestrated):
        try:
            return await svc.run(url, endpoint)
        except Exception as exc:
            return type(exc).__name__
    try:
        resp = await svc(Request("GET", url, endpoint=endpoint))
        return f"ok:{resp.status_code}:{int(resp.from_cache)}"
    except Exception as exc:
        return type(exc).__name__


async def main():
    loop = asyncio.get_running_loop()
    backend = current = None
    stacks = {}
    async with HttpxTransport() as transport:
        print(json.dumps({"ready": True}), flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            cmd = json.loads(line)
            backend_key = json.dumps([cmd["prefix"], cmd.get("backend")], sort_keys=True)
            if backend is None or backend_key != current:
                backend, current = make_backend(cmd), backend_key
                stacks = {}
            key = json.dumps(cmd["stack"], sort_keys=True)
            svc = stacks.get(key) or stacks.setdefault(key, build(cmd["stack"], backend, transport))
            if cmd.get("invalidate"):
                await svc.config.ainvalidate(cmd["invalidate"])
            if cmd.get("at"):
                await asyncio.sleep(max(0.0, cmd["at"] - time.time()))
            reply = {}
            if cmd.get("until"):
                outcomes, slowest = {}, [0.0]
                async def loop_calls():
                    n = 0
                    while time.time() < cmd["until"]:
                        started = time.monotonic()
                        result = await call(svc, cmd["url"], cmd.get("endpoint"))
                        slowest[0] = max(slowest[0], time.monotonic() - started)
                        outcomes[result] = outcomes.get(result, 0) + 1
                        n += 1
                    return n
                counts = await asyncio.gather(*(loop_calls() for _ in range(cmd.get("tasks", 1))))
                reply["count"] = sum(counts)
                reply["outcomes"], reply["slowest"] = outcomes, slowest[0]
            else:
                slowest = [0.0]
                async def timed():
                    started = time.monotonic()
                    result = await call(svc, cmd["url"], cmd.get("endpoint"))
                    slowest[0] = max(slowest[0], time.monotonic() - started)
                    return result
                reply["results"] = await asyncio.gather(*(timed() for _ in range(cmd.get("n", 1))))
                reply["slowest"] = slowest[0]
            counters = ("errors", "fallbacks", "recoveries", "pool_waits", "slow_answers")
            reply["backend"] = {k: getattr(backend, k, None) for k in counters}
            print(json.dumps(reply), flush=True)


asyncio.run(main())
"""


class Worker:
    """One OS process running :data:`WORKER`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Bounded on its own: the tests using ``workers`` time their calls only (a loaded
        machine may take tens of seconds to start ten interpreters)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            raise RuntimeError(f"worker not ready within {timeout:g}s")
        line = self.proc.stdout.readline()
        if not line.startswith('{"ready"'):
            raise RuntimeError(f"worker did not start: {line!r}")

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("worker exited")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Workers:
    """A pool of worker processes; :meth:`run` sends one command to several at once."""

    def __init__(self, count: int) -> None:
        self.all = [Worker() for _ in range(count)]
        for worker in self.all:
            worker.wait_ready()

    def run(self, indices: list[int], cmd: dict[str, Any]) -> list[dict[str, Any]]:
        for i in indices:
            self.all[i].send(cmd)
        return [self.all[i].receive() for i in indices]

    def close(self) -> None:
        """All at once: this session teardown runs inside the timeout of whichever test
        ended last, and ten workers closed one after the other (up to 5 s each) took more
        than a 10 s test's budget on a loaded machine."""
        for worker in self.all:
            if worker.proc.stdin is not None:
                worker.proc.stdin.close()  # each worker ends on EOF
        deadline = time.monotonic() + 5
        for worker in self.all:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()  # our own child, by its pid
                worker.proc.wait(5)


@pytest.fixture(scope="session")
def workers(redis_url: str) -> Iterator[Workers]:
    pool = Workers(10)
    yield pool
    pool.close()
