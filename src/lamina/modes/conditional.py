"""CONDITIONAL: in order, each call gated by its endpoint's ``condition(context)``."""

from __future__ import annotations

from ..orchestration.run import Run
from ._engines import in_order

__all__ = ["schedule"]


async def schedule(run: Run) -> None:
    """CONDITIONAL: in order, each call gated by its endpoint's ``condition(context)``."""
    await in_order(run)
