"""Adaptive concurrency against an upstream that serves 8 requests at once.

``/capacity/...`` answers in 20 ms while at most 8 requests are in it and queues the
rest. 60 callers call it in a loop for 1.5 s through ``AdaptiveConcurrencyLayer()``:
the layer first measures the unloaded latency with 3 calls in flight, then raises the
limit while latency stays near it and lowers it when the upstream's queue shows. Calls
over the limit are shed (``ConcurrencyLimitExceeded``) and their caller tries again
a little later.

Run: ``python examples/adaptive_concurrency.py``
"""

from __future__ import annotations

import asyncio
import statistics
import time

from lamina import ConcurrencyLimitExceeded, Request
from lamina.layers.adaptive_concurrency import AdaptiveConcurrencyLayer
from lamina.testing import LocalServer
from lamina.transports import HttpxTransport

CALLERS = 60
SECONDS = 1.5


async def main(server: LocalServer) -> None:
    url = server.url_for("/capacity/example?limit=8&service_ms=20")
    layer = AdaptiveConcurrencyLayer()
    served = shed = 0
    limits: list[int] = []
    async with HttpxTransport() as transport:
        service = layer.wrap(transport)
        end = time.monotonic() + SECONDS

        async def caller() -> None:
            nonlocal served, shed
            while time.monotonic() < end:
                try:
                    await service(Request("GET", url))
                    served += 1
                except ConcurrencyLimitExceeded:
                    shed += 1
                    await asyncio.sleep(0.05)

        async def watch() -> None:
            while time.monotonic() < end:
                limits.append(layer.current_limit)
                await asyncio.sleep(0.05)

        await asyncio.gather(watch(), *(caller() for _ in range(CALLERS)))
    settled = limits[len(limits) // 2 :]
    print(f"min_rtt measured: {(layer.min_rtt or 0) * 1000:.0f} ms")
    print(f"limit over time: {limits[::3]}")
    print(f"settled limit (median of the second half): {statistics.median(settled):.0f}")
    print(f"served {served} calls, shed {shed}; in flight now: {layer.in_flight}")


if __name__ == "__main__":
    with LocalServer() as local:
        asyncio.run(main(local))
