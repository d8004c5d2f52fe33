"""When the running attempt times out, for a transport whose client needs its own timeout."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["ATTEMPT_EXPIRY"]

#: The event loop time at which ``TimeoutLayer`` cancels the running attempt (None: no
#: limit). A client whose request goes on after its task is cancelled (pyreqwest) is
#: given a timeout of its own from it, so that no connection stays busy for long.
ATTEMPT_EXPIRY: ContextVar[float | None] = ContextVar("lamina_attempt_expiry", default=None)
