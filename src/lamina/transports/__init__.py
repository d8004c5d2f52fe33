"""The transports: the innermost service of every stack."""

from .httpx import HttpxTransport

__all__ = ["HttpxTransport"]
