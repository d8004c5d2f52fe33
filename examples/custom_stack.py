"""A custom stack: your own middleware around lamina's layers and httpx transport.

Run: ``python examples/custom_stack.py`` (starts lamina's local test server).
"""

from __future__ import annotations

import asyncio
import time

from lamina import HttpxTransport, LaminaError, Request, Response, Service, ServiceBuilder
from lamina.layers import ParseLayer, TimeoutLayer
from lamina.testing import LocalServer


async def stopwatch(request: Request, call_next: Service) -> Response:
    """Middleware in five lines: time every call and tag the request."""
    started = time.perf_counter()
    headers = request.headers.copy_with({"X-Request-Id": f"demo-{request.endpoint}"})
    response = await call_next(request.replace(headers=headers))
    print(f"  stopwatch: {request.endpoint} took {(time.perf_counter() - started) * 1000:.1f} ms")
    return response


async def main() -> None:
    with LocalServer() as server:
        async with HttpxTransport() as transport:
            stack = (
                ServiceBuilder()
                .layer_fn(stopwatch)  # outermost: sees the whole call
                .layer(ParseLayer(response_parser=lambda r: r.json()["headers"]["x-request-id"]))
                .layer(TimeoutLayer(0.5))  # innermost: bounds each attempt
                .service(transport)
            )
            for name, path in [("echo", "/echo"), ("slow", "/echo?ms=100"), ("hang", "/hang")]:
                request = Request("GET", server.url_for(path), endpoint=name)
                try:
                    response = await stack(request)
                    print(f"{name}: value={response.value!r}")
                except LaminaError as exc:
                    print(f"{name}: {type(exc).__name__}: {exc}")
        print(f"server saw {server.hits()} requests")


if __name__ == "__main__":
    asyncio.run(main())
