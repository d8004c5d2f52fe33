"""PIPELINE: in order; each call's payload is the previous call's result."""

from __future__ import annotations

from ..orchestration.run import Run
from ._engines import in_order

__all__ = ["schedule"]


async def schedule(run: Run) -> None:
    """PIPELINE: in order; each call's payload is the previous call's result."""
    await in_order(run, chain_results=True)
