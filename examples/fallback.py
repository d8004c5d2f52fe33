"""Graceful degradation: answer with a fallback when an endpoint fails for good.

The ``prices`` endpoint keeps answering 503: the retry layer tries three times, then
the fallback layer (outside retry and the breaker, so it sees only the final failure)
answers with a default. ``stock`` is down (nothing listens on its port) and falls back
to a function of the error. The run report marks both ``fallback`` and keeps the error.

Run: ``python examples/fallback.py`` (starts lamina's local test server).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    ConnectError,
    Layer,
    OrchestrationMode,
    Request,
)
from lamina.layers.fallback import FallbackLayer
from lamina.testing import LocalServer


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def unknown_stock(error: Exception, request: Request) -> dict[str, Any]:
    """A fallback function: of the error and the request."""
    return {"item": request.endpoint, "in_stock": None, "why": type(error).__name__}


def layers(endpoint: APIEndpoint, config: APIOrchestrationConfig) -> list[Layer]:
    """The default stack with a fallback right inside call tracing and metrics."""
    defaults = APIOrchestrator.default_layers(endpoint, config)
    if endpoint.name == "prices":
        fallback = FallbackLayer({"price": None, "currency": "EUR"}, statuses=[503])
    else:
        fallback = FallbackLayer(unknown_stock, errors=[ConnectError])
    return [*defaults[:2], fallback, *defaults[2:]]


async def main() -> None:
    with LocalServer() as server:
        config = APIOrchestrationConfig(
            endpoints=[
                APIEndpoint(
                    name="prices",
                    url=server.url_for("/status/503"),
                    retry_count=2,
                    retry_delay=0.01,
                ),
                APIEndpoint(
                    name="stock", url=f"http://127.0.0.1:{closed_port()}/stock", retry_count=0
                ),
                APIEndpoint(name="catalog", url=server.url_for("/json")),
            ],
            mode=OrchestrationMode.PARALLEL,
        )
        async with APIOrchestrator(config, layers=layers) as orchestrator:
            report = await orchestrator.run()
            metrics = orchestrator.get_metrics()
        for name, endpoint in report.endpoints.items():
            print(f"{name}: {endpoint.outcome} -> {endpoint.result!r}")
            if endpoint.outcome == "fallback":
                print(
                    f"  kept error: {type(endpoint.error).__name__}, status {endpoint.status_code}"
                )
        print(f"run ok: {report.ok}, fallbacks: {report.fallbacks}")
        print(f"upstream saw /status/503 {server.hits('/status/503')} times")
        print(f"fallbacks counted: {metrics.events['fallbacks']}")


if __name__ == "__main__":
    asyncio.run(main())
