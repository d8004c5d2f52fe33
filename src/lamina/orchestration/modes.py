"""The mode schedulers: each decides *when* a run calls which endpoint.

Conditions (``condition``), dependencies (``depends_on``) and ``max_concurrent``
hold in every mode; the modes differ in concurrency and in what a call's payload is:

- SEQUENTIAL: one call at a time, in config order (dependencies first).
- CONDITIONAL: the same; each call is gated by its endpoint's ``condition(context)``.
- PIPELINE: in order; each call's payload is the previous call's result.
- PARALLEL: every call at once, bounded by ``max_concurrent`` (dependencies still wait).
- FANOUT: the single input sent to every endpoint, concurrently.
- HYBRID: a dependency graph; each call starts as soon as its ``depends_on`` are done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .config import APIEndpoint, OrchestrationMode
from .run import NO_PAYLOAD, Run

__all__ = ["IN_ORDER_MODES", "SCHEDULERS", "Scheduler"]

Scheduler = Callable[[Run], Awaitable[None]]


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


async def pipeline(run: Run) -> None:
    """In order; each call's payload is the previous call's result."""
    await in_order(run, chain_results=True)


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


SCHEDULERS: dict[OrchestrationMode, Scheduler] = {
    OrchestrationMode.SEQUENTIAL: in_order,
    OrchestrationMode.CONDITIONAL: in_order,  # Run.call checks every endpoint's condition
    OrchestrationMode.PIPELINE: pipeline,
    OrchestrationMode.PARALLEL: as_graph,
    OrchestrationMode.FANOUT: as_graph,
    OrchestrationMode.HYBRID: as_graph,
}

IN_ORDER_MODES = frozenset(
    {OrchestrationMode.SEQUENTIAL, OrchestrationMode.PIPELINE, OrchestrationMode.CONDITIONAL}
)
"""The modes that make one call at a time."""
