"""Suite-wide setup (fixtures live in lamina.testing.pytest_plugin and the folders' conftests)."""

from __future__ import annotations

import asyncio

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """No implicit event loop in the main thread.

    looptime's ``pytest_pyfunc_call`` asks the policy for the current loop before every
    test, sync ones included; on Python 3.11 that *creates* a loop when none was ever set.
    Nobody closes it: the test's first ``asyncio.run()`` replaces it, and the garbage
    collector warns "unclosed event loop" later, inside whichever test happens to
    collect it (a flaky failure for the tests that check for ResourceWarnings, decided
    by which test runs first on an xdist worker). Setting "no loop" explicitly makes
    ``get_event_loop()`` raise instead, which looptime and pytest-asyncio both expect.
    """
    asyncio.set_event_loop(None)
