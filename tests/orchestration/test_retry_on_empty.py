"""``APIEndpoint(retry_on=[])`` retries no status (transport errors only), as written."""

from __future__ import annotations

import uuid

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator
from lamina.testing import LocalServer


async def test_an_empty_retry_on_retries_no_status(lamina_server: LocalServer) -> None:
    key = uuid.uuid4().hex[:8]
    url = lamina_server.url_for(f"/flaky/{key}?fail=1&status=503")
    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint("a", url, retry_count=2, retry_delay=0.001, retry_on=[])]
    )
    async with APIOrchestrator(config) as orchestrator:
        report = await orchestrator.run()
    assert report.endpoints["a"].outcome == "failed"
    assert report.endpoints["a"].status_code == 503
    assert lamina_server.hits(f"/flaky/{key}") == 1  # not retried
