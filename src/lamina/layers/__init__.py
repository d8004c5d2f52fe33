"""Built-in layers. Each module holds one layer and the service it wraps into."""

from .parse import ParseLayer
from .timeout import TimeoutLayer

__all__ = ["ParseLayer", "TimeoutLayer"]
