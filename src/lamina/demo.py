"""A tour of lamina against built-in local services: ``python -m lamina.demo``.

Starts :class:`lamina.testing.LocalServer` on 127.0.0.1 (no internet needed),
sends calls through a stack and prints what each layer did.
"""

from __future__ import annotations

import asyncio
import time

from . import (
    HttpxTransport,
    LaminaError,
    Layer,
    Request,
    Response,
    Service,
    ServiceBuilder,
    layer_fn,
)
from .layers import ParseLayer, TimeoutLayer
from .testing import LocalServer

CASES = [
    ("json", "/json?user=42", "a JSON body is parsed into response.value"),
    ("text", "/text", "a non-JSON body stays text"),
    ("slow", "/json?ms=150", "a slow answer within the attempt timeout"),
    ("hang", "/hang", "a hung upstream is cut by TimeoutLayer"),
    ("broken", "/invalid-json", "a body that claims JSON but is not -> ParseError"),
    ("down", "/status/503", "a 5xx -> HTTPStatusError"),
    ("bomb", "/gzip-bomb?bytes=20000000", "a gzip bomb stops at max_response_bytes"),
]


def tap(label: str) -> Layer:
    """A layer that prints what came back through it."""

    async def trace(request: Request, call_next: Service) -> Response:
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except LaminaError as exc:
            took = (time.perf_counter() - started) * 1000
            print(f"    {label:<9} raised {type(exc).__name__} after {took:.0f} ms")
            raise
        took = (time.perf_counter() - started) * 1000
        print(f"    {label:<9} got {response.status_code} in {took:.0f} ms")
        return response

    return layer_fn(trace)


async def run(server: LocalServer) -> int:
    failures = 0
    async with HttpxTransport() as transport:
        stack = (
            ServiceBuilder()
            .layer(tap("parse"))
            .layer(ParseLayer(max_response_bytes=1_000_000))
            .layer(tap("timeout"))
            .layer(TimeoutLayer(0.5))
            .layer(tap("transport"))
            .service(transport)
        )
        for name, path, what in CASES:
            print(f"\n{name}: {what}")
            try:
                response = await stack(Request("GET", server.url_for(path), endpoint=name))
                print(f"  => value {str(response.value)[:70]!r}")
            except LaminaError as exc:
                failures += 1
                print(f"  => {type(exc).__name__}: {exc}")
    print(f"\nlocal server received {server.hits()} requests; {failures} calls failed as expected")
    return failures


def main() -> None:
    with LocalServer() as server:
        print(f"lamina demo: local upstream services at {server.url}")
        asyncio.run(run(server))


if __name__ == "__main__":
    main()
