"""The transports: the innermost service of every stack, one contract (docs/transports.md).

``HttpxTransport`` (the default), ``AiohttpTransport`` (``pip install lamina[aiohttp]``) and
``PyreqwestTransport`` (``pip install lamina[pyreqwest]``), the last two imported on first
use so that ``import lamina`` works without them. All are
``BaseTransport``s: the redirect loop, header check, in-flight gate, bounded decoder and
error table they share live in ``_shared`` and ``_decoding``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Transport
from .httpx import HttpxTransport

if TYPE_CHECKING:
    from .aiohttp import AiohttpTransport
    from .pyreqwest import PyreqwestTransport

__all__ = ["AiohttpTransport", "HttpxTransport", "PyreqwestTransport", "Transport"]


def __getattr__(name: str) -> Any:
    if name == "AiohttpTransport":  # aiohttp is optional: import it when asked for
        from .aiohttp import AiohttpTransport

        return AiohttpTransport
    if name == "PyreqwestTransport":  # pyreqwest is optional too
        from .pyreqwest import PyreqwestTransport

        return PyreqwestTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
