"""One small scheduler per OrchestrationMode: each decides *when* endpoints are called.

Conditions (``condition``), dependencies (``depends_on``) and ``max_concurrent``
hold in every mode; the modes differ in concurrency and in what a call's payload is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..orchestration.config import OrchestrationMode
from ..orchestration.run import Run
from . import conditional, fanout, hybrid, parallel, pipeline, sequential

__all__ = ["IN_ORDER_MODES", "SCHEDULERS", "Scheduler"]

Scheduler = Callable[[Run], Awaitable[None]]

SCHEDULERS: dict[OrchestrationMode, Scheduler] = {
    OrchestrationMode.SEQUENTIAL: sequential.schedule,
    OrchestrationMode.PARALLEL: parallel.schedule,
    OrchestrationMode.FANOUT: fanout.schedule,
    OrchestrationMode.PIPELINE: pipeline.schedule,
    OrchestrationMode.CONDITIONAL: conditional.schedule,
    OrchestrationMode.HYBRID: hybrid.schedule,
}

IN_ORDER_MODES = frozenset(
    {OrchestrationMode.SEQUENTIAL, OrchestrationMode.PIPELINE, OrchestrationMode.CONDITIONAL}
)
