"""Chaos testing: does the stack survive a flaky upstream? Inject faults and find out.

A seeded ChaosLayer, innermost (just above the transport), makes 30% of attempts fail
with a connect error and delays some others. The default retry layer makes up for the
faults: every call succeeds, and the same seed gives the same faults on every run.
Then ``LAMINA_CHAOS`` switches chaos on for a stack that has none in its code (half the
attempts answered 503), the run report says so loudly, and the experiment finds that
five 503s in a row open an endpoint's circuit breaker, which retries cannot outlast.

Run: ``python examples/chaos.py`` (starts lamina's local test server).
"""

from __future__ import annotations

import asyncio
import logging
import os

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    Layer,
    OrchestrationMode,
)
from lamina.layers.chaos import ENV_VAR, ChaosLayer
from lamina.testing import LocalServer


def with_chaos(endpoint: APIEndpoint, config: APIOrchestrationConfig) -> list[Layer]:
    chaos = ChaosLayer(fault_rate=0.3, latency=(0.005, 0.02), latency_rate=0.2, seed=2024)
    return [*APIOrchestrator.default_layers(endpoint, config), chaos]


def config(base: str) -> APIOrchestrationConfig:
    return APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(
                name=f"item{i}", url=f"{base}/json?item={i}", retry_count=5, retry_delay=0.005
            )
            for i in range(6)
        ],
        mode=OrchestrationMode.PARALLEL,
    )


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lamina.chaos").setLevel(logging.ERROR)  # this demo prints its own
    with LocalServer() as server:
        injected_per_run = []
        for run in (1, 2):
            async with APIOrchestrator(config(server.url), layers=with_chaos) as orchestrator:
                report = await orchestrator.run()
            injected = {n: r.injected for n, r in report.endpoints.items() if r.injected}
            injected_per_run.append(injected)
            attempts = sum(r.attempts for r in report.endpoints.values())
            print(f"run {run}: ok={report.ok}, {attempts} attempts for 6 calls")
        for name, what in injected_per_run[0].items():
            print(f"  {name}: {', '.join(what)}")
        print(f"same seed, same faults: {injected_per_run[0] == injected_per_run[1]}")
        print(f"upstream saw {server.hits('/json')} requests (12 calls)")

        os.environ[ENV_VAR] = "status=503,status_rate=0.5,seed=7"
        try:
            orchestrator = APIOrchestrator(config(server.url))  # no chaos in its code
            async with orchestrator:
                report = await orchestrator.run()
        finally:
            del os.environ[ENV_VAR]
        print(report.summary())
        for name in report.failed:  # what the experiment found
            endpoint = report.endpoints[name]
            last = endpoint.injected[-1]
            print(f"found: {name} failed with {type(endpoint.error).__name__} after {last}")


if __name__ == "__main__":
    asyncio.run(main())
