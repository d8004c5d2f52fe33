"""PARALLEL: every call at once, bounded by ``max_concurrent`` (dependencies still wait)."""

from __future__ import annotations

from ..orchestration.run import Run
from ._engines import as_graph

__all__ = ["schedule"]


async def schedule(run: Run) -> None:
    """PARALLEL: every call at once, bounded by ``max_concurrent`` (dependencies still wait)."""
    await as_graph(run)
