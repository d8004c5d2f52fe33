"""Closing an orchestrator waits for the cache's background refreshes
(stale-while-revalidate) instead of cutting them off with a warning."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
from lamina.testing import LocalServer, ManualClock, RecordedRequest


async def test_aclose_waits_for_a_background_refresh(
    lamina_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/swr-{uuid.uuid4().hex[:8]}"
    answers: list[str] = []

    def origin(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        answers.append(req.path)
        return 200, {"n": len(answers)}, {"Cache-Control": "max-age=10, stale-while-revalidate=60"}

    lamina_server.route(path, origin)
    url = lamina_server.url_for(path) + "?ms=150"  # the refresh is still running at close
    clock = ManualClock()
    config = APIOrchestrationConfig(endpoints=[APIEndpoint("a", url)], cache_ttl=300)
    caplog.set_level(logging.WARNING, logger="lamina")
    orchestrator = APIOrchestrator(config, clock=clock)
    first = await orchestrator.run()
    clock.advance(30)  # stale, inside the window: served at once, refreshed behind
    second = await orchestrator.run()
    assert first.endpoints["a"].outcome == "ok"
    assert second.endpoints["a"].result == {"n": 1}
    await orchestrator.aclose()
    assert len(answers) == 2  # the refresh reached the upstream and finished
    assert "refresh" not in caplog.text.lower()
