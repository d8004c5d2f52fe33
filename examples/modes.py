"""Each of the six orchestration modes on the same local services.

Run: ``python examples/modes.py``; prints, per mode, the order calls reached the
server and the run's critical path.
"""

from __future__ import annotations

import asyncio

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode
from lamina.testing import LocalServer, upstreams


def endpoints(base: str, mode: OrchestrationMode) -> list[APIEndpoint]:
    post = "POST" if mode in (OrchestrationMode.PIPELINE, OrchestrationMode.FANOUT) else "GET"
    hybrid = mode is OrchestrationMode.HYBRID
    return [
        APIEndpoint(name="user", url=f"{base}/users/{{user_id}}?ms=60", retry_count=0),
        APIEndpoint(name="posts", url=f"{base}/users/{{user_id}}/posts?ms=20", retry_count=0),
        APIEndpoint(
            name="premium",
            url=f"{base}/echo?step=premium",
            method=post,
            condition=lambda data: data.get("user_type") == "premium",
        ),
        APIEndpoint(
            name="summary",
            url=f"{base}/echo?step=summary",
            method=post,
            depends_on=["user", "posts"] if hybrid else None,
        ),
    ]


async def main(server: LocalServer) -> None:
    for mode in OrchestrationMode:
        server.reset()
        config = APIOrchestrationConfig(endpoints=endpoints(server.url, mode), mode=mode)
        async with APIOrchestrator(config) as orchestrator:
            report = await orchestrator.run({"user_id": 7, "user_type": "basic"})
        reached = [r.path.rsplit("/", 1)[-1] for r in server.requests()]
        skipped = [n for n, r in report.endpoints.items() if r.outcome == "skipped"]
        print(
            f"{mode.value:<11} reached={reached} skipped={skipped} "
            f"critical_path={report.critical_path} ok={report.ok}"
        )


if __name__ == "__main__":
    with upstreams.install(LocalServer()) as local:
        asyncio.run(main(local))
