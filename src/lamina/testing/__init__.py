"""Helpers for testing code that uses lamina: a real local HTTP server and a manual clock."""

from . import upstreams
from .clock import ManualClock
from .server import LocalServer, RecordedRequest

__all__ = ["LocalServer", "ManualClock", "RecordedRequest", "upstreams"]
