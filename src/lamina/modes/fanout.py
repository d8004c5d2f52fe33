"""FANOUT: the single input sent to every endpoint, concurrently."""

from __future__ import annotations

from ..orchestration.run import Run
from ._engines import as_graph

__all__ = ["schedule"]


async def schedule(run: Run) -> None:
    """FANOUT: the single input sent to every endpoint, concurrently."""
    await as_graph(run)
