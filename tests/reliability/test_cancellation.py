"""Cancelling a run cancels every in-flight request at once and leaks no slot."""

from __future__ import annotations

import asyncio
import time

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
from lamina.layers.concurrency import ConcurrencyLimitLayer

from .conftest import LoopWatch, RawUpstream, make_transport

N = 10


async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    await writer.drain()


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # never answers; returns when the client goes away


@pytest.mark.timeout(30)
async def test_cancel_mid_run_cancels_everything(
    transport_kind: str, loop_watch: LoopWatch
) -> None:
    bulkhead = ConcurrencyLimitLayer(N)
    async with RawUpstream(hang) as upstream:
        config = APIOrchestrationConfig(
            endpoints=[
                APIEndpoint(name=f"e{i}", url=f"{upstream.url}/e{i}", rate_limit=6000, timeout=30)
                for i in range(N)
            ],
            mode="parallel",
            max_concurrent=N,
            cache_ttl=60,  # single-flight on every GET
        )
        orchestrator = APIOrchestrator(
            config,
            transport=make_transport(transport_kind),
            layers=lambda ep, cfg: [*APIOrchestrator.default_layers(ep, cfg), bulkhead],
        )
        try:
            task = asyncio.create_task(orchestrator.execute())
            while len(upstream.requests) < N:  # every request reached the server  # noqa: ASYNC110 - polls another party
                await asyncio.sleep(0.005)
            assert bulkhead.in_flight == N
            loop = asyncio.get_running_loop()
            cancelled_at = loop.time()
            started = time.perf_counter()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            client_side = time.perf_counter() - started
            while len(upstream.disconnects) < N:  # noqa: ASYNC110 - polls another party
                await asyncio.sleep(0.002)
            server_side = max(upstream.disconnects) - cancelled_at
            pending = await loop_watch.settle(0.1)
            print(
                f"\ncancel[{transport_kind}]: execute returned after {client_side * 1000:.1f} ms;"
                f" the server saw all {N} disconnects after {server_side * 1000:.1f} ms"
            )
            assert server_side < 0.1
            assert not pending, pending
            # every slot is back: bulkhead, single-flight, limiter waiters
            assert bulkhead.in_flight == 0
            assert bulkhead.waiting == 0
            assert orchestrator._shared.cache.flights.in_flight() == 0
            assert all(lim.status().waiters == 0 for lim in orchestrator._shared.limiters.values())
            # a following run through the same bulkhead is not slowed by the cancelled one
            async with RawUpstream(ok) as fast:
                follow = APIOrchestrator(
                    APIOrchestrationConfig(
                        endpoints=[
                            APIEndpoint(name=f"f{i}", url=f"{fast.url}/f{i}") for i in range(N)
                        ],
                        mode="parallel",
                        max_concurrent=N,
                    ),
                    transport=make_transport(transport_kind),
                    layers=lambda ep, cfg: [*APIOrchestrator.default_layers(ep, cfg), bulkhead],
                )
                async with follow:
                    report = await asyncio.wait_for(follow.run(), 5)
                assert report.ok
                assert len(fast.requests) == N
        finally:
            await orchestrator.aclose()
    assert not loop_watch.loop_errors
    assert not loop_watch.unraisable
