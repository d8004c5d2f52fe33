"""SEQUENTIAL: one call at a time, in config order (dependencies first)."""

from __future__ import annotations

from ..orchestration.run import Run
from ._engines import in_order

__all__ = ["schedule"]


async def schedule(run: Run) -> None:
    """SEQUENTIAL: one call at a time, in config order (dependencies first)."""
    await in_order(run)
