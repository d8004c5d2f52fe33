"""A transport closed while the loop's shutdown is closing it already (an orchestrator's
own shutdown hook racing the transport's) ends quietly, not with "aclose(): asynchronous
generator is already running"."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lamina import Request
from lamina.testing import LocalServer


@pytest.mark.parametrize("kind", ["HttpxTransport", "AiohttpTransport"])
async def test_aclose_during_the_loops_own_close_is_quiet(
    lamina_server: LocalServer, kind: str
) -> None:
    import lamina.transports

    transport: Any = getattr(lamina.transports, kind)()
    await transport(Request("GET", lamina_server.url_for("/json")))
    keeper = transport._keeper
    assert keeper is not None
    closing = asyncio.ensure_future(keeper.aclose())  # what shutdown_asyncgens() does
    await asyncio.sleep(0)  # it starts closing, and waits on the client's own close
    assert keeper.ag_running
    await transport.aclose()  # must not raise RuntimeError
    await closing
