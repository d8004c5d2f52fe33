"""Rate limiting, now in :mod:`lamina.layers.rate_limit` (this path is kept for imports)."""

from .layers.rate_limit import *  # noqa: F403
