"""HYBRID: a dependency graph; each call starts as soon as its ``depends_on`` are done."""

from __future__ import annotations

from ..orchestration.run import Run
from ._engines import as_graph

__all__ = ["schedule"]


async def schedule(run: Run) -> None:
    """HYBRID: a dependency graph; each call starts as soon as its ``depends_on`` are done."""
    await as_graph(run)
