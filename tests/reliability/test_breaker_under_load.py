"""Only the upstream's failures open the breaker (issue 12, item 11).

The issue's shape: a healthy upstream answering in 200 ms, the default stack with a
1 s timeout, 1,000 concurrent runs over a pool of 100 connections: the pool drains
in 2 s, so about half the attempts time out while they wait for a connection. Those
counted as upstream failures and 600-800 calls ended in CircuitOpenError, on both
transports. Here the same proportions, a tenth of the size so it runs in about a
second: 50 runs over 5 connections, 100 ms answers, a 0.5 s timeout.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import httpx
import pytest

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    CircuitOpenError,
    HttpxTransport,
    Service,
    TimeoutError,
)
from lamina.testing import LocalServer
from lamina.transports import AiohttpTransport

POOL = 5
RUNS = 50
ANSWER_MS = 100
TIMEOUT = 0.5


def small_pool_transport(kind: str) -> HttpxTransport | AiohttpTransport:
    if kind == "httpx":
        return HttpxTransport(limits=httpx.Limits(max_connections=POOL))
    return AiohttpTransport(connector=aiohttp.TCPConnector(limit=POOL))


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
async def test_waiting_for_a_connection_never_opens_the_breaker(
    kind: str, lamina_server: LocalServer
) -> None:
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(
                name="healthy",
                url=lamina_server.url_for(f"/json?ms={ANSWER_MS}"),
                timeout=TIMEOUT,
                retry_delay=0.05,
            )
        ],
        error_threshold=1.0,
    )
    transport: Service = small_pool_transport(kind)
    async with transport, APIOrchestrator(config, transport=transport) as orchestrator:
        reports = await asyncio.gather(*(orchestrator.run() for _ in range(RUNS)))
    outcomes: Counter[str] = Counter()
    for report in reports:
        endpoint = report.endpoints["healthy"]
        outcomes[type(endpoint.error).__name__ if endpoint.error else endpoint.outcome] += 1
        if isinstance(endpoint.error, TimeoutError):
            assert endpoint.error.request_sent is False or endpoint.error.waited > 0
    retried = sum(1 for r in reports if r.endpoints["healthy"].attempts > 1)
    print(f"\n[{kind}] {dict(outcomes)}, {retried} runs retried")
    assert outcomes[CircuitOpenError.__name__] == 0
    breaker = orchestrator._shared.breakers.breakers["healthy"]
    assert breaker.state == "closed"
    assert breaker.failure_count == 0
    assert retried > 0  # attempts did time out while they waited: the scenario happened
    assert lamina_server.hits("/json") >= RUNS // 2
