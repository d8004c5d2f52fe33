"""``transport_factory`` for the cache tests that talk to the real loopback server: the
same fixture (and transport list) as ``tests/transports``, so a cache test runs once per
transport."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

_spec = importlib.util.spec_from_file_location(
    "_lamina_transport_contract", Path(__file__).resolve().parents[1] / "transports" / "conftest.py"
)
assert _spec is not None
assert _spec.loader is not None
_contract: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_contract)

TRANSPORTS: dict[str, str] = _contract.TRANSPORTS


@pytest.fixture(params=list(TRANSPORTS))
async def transport_factory(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    factory = _contract.TransportFactory(request.param)
    yield factory
    for transport in factory.made:
        await transport.aclose()
