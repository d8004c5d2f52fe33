"""``transport_factory`` for the cache tests that talk to the real loopback server: the
same fixture (and transport list) as ``tests/transports``, so a cache test runs once per
transport; the Redis fixtures of ``tests/redis`` (``backend``, ``prefix``, ``sync_redis``);
``HoldConditional``, which holds a revalidation's answer."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lamina import Request, Response


def _load(name: str, folder: str) -> Any:
    """Another folder's conftest, as a module of its own."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / folder / "conftest.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_contract: Any = _load("_lamina_transport_contract", "transports")
_redis: Any = _load("_lamina_redis_fixtures", "redis")

# the Redis tests' fixtures: one definition (skip without Redis, fail under CI=true)
redis_url = _redis.redis_url
sync_redis = _redis.sync_redis
prefix = _redis.prefix
backend = _redis.backend

TRANSPORTS: dict[str, str] = _contract.TRANSPORTS


@pytest.fixture(params=list(TRANSPORTS))
async def transport_factory(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    factory = _contract.TransportFactory(request.param)
    yield factory
    for transport in factory.made:
        await transport.aclose()


class HoldConditional:
    """Between the parse layer and the transport: a conditional request's answer (the 304)
    is held once it has arrived, until the test releases it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, request: Request) -> Response:
        response: Response = await self.inner(request)
        if "if-none-match" in request.headers:
            self.arrived.set()
            await self.release.wait()
        return response
