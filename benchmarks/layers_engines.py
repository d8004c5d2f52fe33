"""Per-call cost of plugging aiolimiter and purgatory in as lamina's engines (issue 14
item 9), next to lamina's own limiter and breaker, in microseconds.

Run: ``python benchmarks/layers_engines.py`` (needs ``lamina[aiolimiter,purgatory]``).
Prints the median over ``ROUNDS`` interleaved rounds of ``CALLS`` sequential calls each,
through one layer over a service that answers 200 at once; the limits never bind and the
breakers stay closed, so this is the admitted-call path. No I/O.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import purgatory
from aiolimiter import AsyncLimiter

from lamina import Layer, Request, Response, ServiceBuilder
from lamina.layers.circuit_breaker import CircuitBreakerLayer
from lamina.layers.rate_limit import Limiter, RateLimitLayer

CALLS = 20_000
ROUNDS = 7


async def ok(request: Request) -> Response:
    return Response(200, request=request)


def cases() -> dict[str, Layer | None]:
    return {
        "bare service": None,
        "CircuitBreakerLayer (memory)": CircuitBreakerLayer(),
        "CircuitBreakerLayer (purgatory)": CircuitBreakerLayer(
            backend=purgatory.AsyncCircuitBreakerFactory()
        ),
        "RateLimitLayer (Limiter)": RateLimitLayer(limiters=[Limiter(1e6, 1)]),
        "RateLimitLayer (AsyncLimiter)": RateLimitLayer(limiters=[AsyncLimiter(1e6, 1)]),
    }


async def main() -> None:
    built = {
        name: ok if layer is None else ServiceBuilder().layer(layer).service(ok)
        for name, layer in cases().items()
    }
    request = Request("GET", "http://api.example/", endpoint="e")
    samples: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(ROUNDS):
        for name, service in built.items():
            started = time.perf_counter()
            for _ in range(CALLS):
                await service(request)
            samples[name].append((time.perf_counter() - started) / CALLS * 1e6)
    for name, values in samples.items():
        print(f"{name:34s} {statistics.median(values):6.2f} us/call")


if __name__ == "__main__":
    asyncio.run(main())
