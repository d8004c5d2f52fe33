"""The reference's "Microservices Health Check" example, on lamina's local services.

Two of the seven services are down; their error handler turns the failure into a result.
Run: ``python examples/health_check.py``
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode
from lamina.testing import LocalServer, upstreams

SERVICES = ["auth", "user", "payment", "inventory", "shipping", "notification", "analytics"]


async def health_check_all_services(base: str) -> dict[str, Any]:
    endpoints = [
        APIEndpoint(
            name=service,
            url=f"{base}/services/{service}/health",
            method="GET",
            timeout=2.0,
            retry_count=0,  # no retries for health checks
            error_handler=lambda e: {"status": "down", "error": str(e)},
        )
        for service in SERVICES
    ]
    config = APIOrchestrationConfig(
        endpoints=endpoints,
        mode=OrchestrationMode.PARALLEL,
        max_concurrent=10,
        total_timeout=5.0,
        fail_fast=False,
        result_merger=lambda results: {endpoints[i].name: results[i] for i in range(len(results))},
    )
    async with APIOrchestrator(config) as orchestrator:
        health_status = await orchestrator.execute({})
    healthy = sum(1 for s in health_status.values() if s.get("status") == "ok")
    total = len(health_status)
    return {
        "healthy": healthy,
        "total": total,
        "percentage": (healthy / total) * 100,
        "services": health_status,
    }


def main() -> None:
    with upstreams.install(LocalServer(), down=["payment", "shipping"]) as server:
        report = asyncio.run(health_check_all_services(server.url))
        print(f"healthy {report['healthy']}/{report['total']} ({report['percentage']:.0f}%)")
        print(json.dumps({k: v["status"] for k, v in report["services"].items()}, sort_keys=True))
        print("hits:", server.hits())


if __name__ == "__main__":
    main()
