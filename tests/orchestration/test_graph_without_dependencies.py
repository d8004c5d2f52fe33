"""Graph modes whose endpoints have no dependencies: ``max_concurrent`` workers (the
run's own task one of them) take the endpoints in config order from one iterator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    EndpointError,
    OrchestrationMode,
    Request,
    Response,
)


def _endpoints(count: int) -> list[APIEndpoint]:
    return [APIEndpoint(name=f"e{i}", url=f"http://svc/{i}", retry_count=0) for i in range(count)]


@pytest.mark.parametrize(
    "mode", [OrchestrationMode.PARALLEL, OrchestrationMode.FANOUT, OrchestrationMode.HYBRID]
)
@pytest.mark.parametrize("max_concurrent", [1, 3, 100])
async def test_at_most_max_concurrent_calls_each_once_in_config_order(
    mode: OrchestrationMode, max_concurrent: int
) -> None:
    in_flight = 0
    most = 0
    started: list[str] = []

    async def service(request: Request) -> Response:
        nonlocal in_flight, most
        started.append(request.url)
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        in_flight -= 1
        return Response(200, content=b"1", headers={"content-type": "application/json"})

    config = APIOrchestrationConfig(
        endpoints=_endpoints(20), mode=mode, max_concurrent=max_concurrent, cache_ttl=None
    )
    async with APIOrchestrator(config, transport=service) as orchestrator:
        report = await orchestrator.run()
    assert report.ok
    assert most == min(max_concurrent, 20)
    assert started == [f"http://svc/{i}" for i in range(20)]  # each once, in config order
    assert report.order == [f"e{i}" for i in range(20)]


async def test_fail_fast_stops_the_other_workers() -> None:
    """A failure stops the run: the calls in flight are cancelled, none starts after."""
    started: list[str] = []

    async def service(request: Request) -> Response:
        started.append(request.url)
        if request.url.endswith("/2"):
            return Response(500, content=b"")
        await asyncio.sleep(0.05)
        return Response(200, content=b"1", headers={"content-type": "application/json"})

    config = APIOrchestrationConfig(
        endpoints=_endpoints(10),
        mode=OrchestrationMode.PARALLEL,
        max_concurrent=3,
        fail_fast=True,
        cache_ttl=None,
    )
    async with APIOrchestrator(config, transport=service) as orchestrator:
        with pytest.raises(EndpointError) as info:
            await orchestrator.execute()
    assert info.value.endpoint == "e2"
    assert started == ["http://svc/0", "http://svc/1", "http://svc/2"]
    report: Any = info.value.report
    assert report.endpoints["e2"].outcome == "failed"
    assert {report.endpoints[n].outcome for n in ("e0", "e1")} == {"cancelled"}
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("lamina:")]
