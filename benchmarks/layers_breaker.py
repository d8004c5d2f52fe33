"""Per-call cost of the circuit breaker's fast path (closed), in microseconds.

Run: ``python benchmarks/layers_breaker.py``. Prints the median over
``ROUNDS`` rounds of ``CALLS`` sequential calls each, for a bare
``service_fn`` and the same service behind ``CircuitBreakerLayer``, plus
the standalone ``CircuitBreaker.call`` around a coroutine function and the
rejection path (open breaker). No I/O: this isolates the layer's overhead.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable

from lamina import CircuitOpenError, Request, Response, service_fn
from lamina.layers.circuit_breaker import CircuitBreaker, CircuitBreakerLayer

CALLS = 20_000
ROUNDS = 15


async def _medians_us(cases: list[Callable[[], Awaitable[object]]]) -> list[float]:
    """Interleave the cases round by round, so machine noise hits them alike."""
    rounds: list[list[float]] = [[] for _ in cases]
    for _ in range(ROUNDS):
        for i, call in enumerate(cases):
            started = time.perf_counter()
            for _ in range(CALLS):
                await call()
            rounds[i].append((time.perf_counter() - started) / CALLS * 1e6)
    return [statistics.median(r) for r in rounds]


async def main() -> None:
    request = Request("GET", "http://127.0.0.1/x", endpoint="bench")
    response = Response(200, request=request)

    async def handler(req: Request) -> Response:
        return response

    async def plain() -> int:
        return 1

    bare = service_fn(handler)
    layered = CircuitBreakerLayer(threshold=5, timeout=60.0).wrap(bare)
    breaker = CircuitBreaker(threshold=5, timeout=60.0)
    open_svc = CircuitBreakerLayer(threshold=1, timeout=60.0).wrap(
        service_fn(lambda r: _status(r, 500))
    )
    await open_svc(request)

    async def rejected() -> None:
        with contextlib.suppress(CircuitOpenError):
            await open_svc(request)

    cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("bare service_fn", lambda: bare(request)),
        ("CircuitBreakerLayer (closed)", lambda: layered(request)),
        ("bare coroutine function", plain),
        ("CircuitBreaker.call (closed)", lambda: breaker.call(plain)),
        ("CircuitBreakerLayer (open, rejects)", rejected),
    ]
    medians = await _medians_us([call for _, call in cases])
    rows = [(name, us) for (name, _), us in zip(cases, medians, strict=True)]
    base = {"service": rows[0][1], "call": rows[2][1]}
    print(f"{'case':<38}{'µs/call':>10}{'overhead µs':>14}")
    for i, (name, us) in enumerate(rows):
        ref = base["service"] if i in (0, 1, 4) else base["call"]
        print(f"{name:<38}{us:>10.3f}{us - ref:>14.3f}")


async def _status(request: Request, status: int) -> Response:
    return Response(status, request=request)


if __name__ == "__main__":
    asyncio.run(main())
