"""The response cache's parts, now in :mod:`lamina.layers.cache` (this path is kept for imports)."""

from .layers.cache import *  # noqa: F403
