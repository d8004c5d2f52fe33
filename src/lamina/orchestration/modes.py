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
    """Start every endpoint as soon as its dependencies are done (bounded by max_concurrent).

    ``max_concurrent`` workers take ready endpoints in config order from one queue; an
    endpoint joins the queue when its last dependency is done. No task or event per
    endpoint, so a run of 10,000 endpoints holds ~100 coroutines, not 10,000.
    """
    endpoints = run.config.endpoints
    workers = min(run.config.max_concurrent, len(endpoints))
    if not run.plan.has_dependencies:
        await _unordered(run, endpoints, workers)
        return
    waiting = {e.name: len(e.dependencies) for e in endpoints}
    dependents: dict[str, list[APIEndpoint]] = {}
    for endpoint in endpoints:
        for dep in endpoint.dependencies:
            dependents.setdefault(dep, []).append(endpoint)
    ready: asyncio.Queue[APIEndpoint | None] = asyncio.Queue()
    for endpoint in endpoints:
        if not endpoint.dependencies:
            ready.put_nowait(endpoint)
    left = len(endpoints)

    async def work() -> None:
        nonlocal left
        while (endpoint := await ready.get()) is not None:
            await run.call(endpoint)  # raises only to stop the run: the group cancels the rest
            left -= 1
            for dependent in dependents.get(endpoint.name, ()):
                waiting[dependent.name] -= 1
                if not waiting[dependent.name]:
                    ready.put_nowait(dependent)
            if not left:
                for _ in range(workers):
                    ready.put_nowait(None)

    async with asyncio.TaskGroup() as group:
        for index in range(workers):
            group.create_task(work(), name=f"lamina:worker-{index}")


async def _unordered(run: Run, endpoints: list[APIEndpoint], workers: int) -> None:
    """No dependencies: ``workers`` workers take the endpoints in config order from one
    iterator (no queue); the calling task is one of them."""
    pending = iter(endpoints)

    async def work() -> None:
        for endpoint in pending:  # the workers share it: each endpoint is taken once
            await run.call(endpoint)  # raises only to stop the run: the group cancels the rest

    if workers <= 1:
        await work()
        return
    async with asyncio.TaskGroup() as group:
        for index in range(workers - 1):
            group.create_task(work(), name=f"lamina:worker-{index}")
        await work()


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
