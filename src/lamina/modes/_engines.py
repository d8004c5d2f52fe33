"""The two ways of driving a run: one call at a time, or as a dependency graph."""

from __future__ import annotations

import asyncio
from typing import Any

from ..orchestration.config import APIEndpoint
from ..orchestration.run import NO_PAYLOAD, Run

__all__ = ["as_graph", "in_order"]


async def in_order(run: Run, *, chain_results: bool = False) -> None:
    """Call endpoints one at a time, each after its dependencies, else in config order.

    With ``chain_results`` (PIPELINE) each payload is the result of the last call
    that produced one; the first call gets the input data.
    """
    previous: Any = NO_PAYLOAD
    for endpoint in run.plan.topological:
        result = await run.call(endpoint, previous if chain_results else NO_PAYLOAD)
        if chain_results and run.reports[endpoint.name].outcome in (
            "ok",
            "cached",
            "stale",
            "handled",
        ):
            previous = result


async def as_graph(run: Run) -> None:
    """Start every endpoint as soon as its dependencies are done (bounded by max_concurrent)."""
    done = {e.name: asyncio.Event() for e in run.config.endpoints}

    async def when_ready(endpoint: APIEndpoint) -> None:
        try:
            for dep in endpoint.dependencies:
                await done[dep].wait()
            await run.call(endpoint)
        finally:
            done[endpoint.name].set()

    async with asyncio.TaskGroup() as group:
        for endpoint in run.config.endpoints:
            group.create_task(when_ready(endpoint), name=f"lamina:{endpoint.name}")
