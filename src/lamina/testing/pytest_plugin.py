"""pytest fixtures shipped with lamina (registered through the ``pytest11`` entry point).

* ``lamina_server`` — a real HTTP server on 127.0.0.1 (see
  :class:`lamina.testing.LocalServer`), shared by the session, with its
  counters reset for each test.
* ``manual_clock`` — a fresh :class:`lamina.testing.ManualClock`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .clock import ManualClock
from .server import LocalServer


@pytest.fixture(scope="session")
def _lamina_session_server() -> Iterator[LocalServer]:
    server = LocalServer().start()
    yield server
    server.stop()


@pytest.fixture
def lamina_server(_lamina_session_server: LocalServer) -> LocalServer:
    """A running local HTTP server with fresh counters."""
    _lamina_session_server.reset()
    return _lamina_session_server


@pytest.fixture
def manual_clock() -> ManualClock:
    """A clock that moves only when the test advances it."""
    return ManualClock()
