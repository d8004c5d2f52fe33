"""Hedged requests against an upstream with a slow tail.

One call in ten to ``/slow-some/...`` takes 300 ms, the others 5 ms (seeded: every run
sees the same slow calls). The same 60 sequential calls go through a plain stack and
through one with ``HedgeLayer(delay=0.03, max_hedges=2)``; the hedged stack answers the
slow calls with another attempt sent 30 ms in, and the upstream sees a few more requests.

Run: ``python examples/hedging.py``
"""

from __future__ import annotations

import asyncio
import time

from lamina import Request, Service, ServiceBuilder
from lamina.layers.hedge import HedgeLayer
from lamina.layers.timeout import TimeoutLayer
from lamina.testing import LocalServer
from lamina.transports import HttpxTransport

CALLS = 60


async def slowest(service: Service, url: str) -> float:
    worst = 0.0
    for _ in range(CALLS):
        started = time.perf_counter()
        response = await service(Request("GET", url, endpoint="slow_tail"))
        assert response.status_code == 200
        worst = max(worst, time.perf_counter() - started)
    return worst


async def main(server: LocalServer) -> None:
    query = "?rate=0.1&seed=7&slow_ms=300&fast_ms=5"
    async with HttpxTransport() as transport:
        plain = TimeoutLayer(2.0).wrap(transport)
        hedged = (
            ServiceBuilder()
            .layer(HedgeLayer(delay=0.03, max_hedges=2))
            .layer(TimeoutLayer(2.0))
            .service(transport)
        )
        plain_worst = await slowest(plain, server.url_for("/slow-some/plain" + query))
        hedged_worst = await slowest(hedged, server.url_for("/slow-some/hedged" + query))
    await asyncio.sleep(0.05)  # let the server log the cancelled attempts
    print(
        f"plain:  slowest call {plain_worst * 1000:.0f} ms, "
        f"upstream requests {server.hits('/slow-some/plain')}"
    )
    print(
        f"hedged: slowest call {hedged_worst * 1000:.0f} ms, "
        f"upstream requests {server.hits('/slow-some/hedged')}"
    )
    extra = server.hits("/slow-some/hedged") - CALLS
    print(f"extra upstream requests: {extra} ({extra / CALLS:.0%})")


if __name__ == "__main__":
    with LocalServer() as local:
        asyncio.run(main(local))
