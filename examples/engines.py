"""Bring your own engines: an aiolimiter.AsyncLimiter and a purgatory breaker factory
you already use, plugged into lamina's layers (``pip install 'lamina[aiolimiter,purgatory]'``).

Run: ``python examples/engines.py`` (starts lamina's local test server).
"""

from __future__ import annotations

import asyncio

import purgatory
from aiolimiter import AsyncLimiter

from lamina import CircuitOpenError, HttpxTransport, Request, ServiceBuilder
from lamina.layers.circuit_breaker import CircuitBreakerLayer
from lamina.layers.rate_limit import RateLimitLayer
from lamina.testing import LocalServer


async def main() -> None:
    limiter = AsyncLimiter(4, 0.2)  # yours, perhaps shared with code outside lamina
    breakers = purgatory.AsyncCircuitBreakerFactory(default_threshold=2, default_ttl=30)
    with LocalServer() as server:
        async with HttpxTransport() as transport:
            stack = (
                ServiceBuilder()
                .layer(CircuitBreakerLayer(backend=breakers))  # threshold 2, 30 s: the factory's
                .layer(RateLimitLayer(limiters=[limiter]))
                .service(transport)
            )
            ok = [Request("GET", server.url_for("/json"), endpoint="catalog") for _ in range(8)]
            responses = await asyncio.gather(*(stack(request) for request in ok))
            print("catalog:", [r.status_code for r in responses])
            for _ in range(3):
                request = Request("GET", server.url_for("/status/503"), endpoint="payments")
                try:
                    print("payments:", (await stack(request)).status_code)
                except CircuitOpenError as exc:
                    print(f"payments: CircuitOpenError, retry in {exc.retry_after:.0f}s")
            print(f"server saw {server.hits('/status/503')} calls to payments")


if __name__ == "__main__":
    asyncio.run(main())
