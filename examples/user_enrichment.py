"""The reference's "User Data Enrichment" example, pointed at lamina's local services.

Run: ``python examples/user_enrichment.py``
"""

from __future__ import annotations

import asyncio
import json

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode
from lamina.testing import LocalServer, upstreams


async def enrich_user_data(base: str, user_id: int) -> dict[str, object]:
    user_api = APIEndpoint(
        name="user", url=f"{base}/users/{user_id}", method="GET", response_parser=lambda r: r.json()
    )
    posts_api = APIEndpoint(
        name="posts",
        url=f"{base}/users/{user_id}/posts",
        method="GET",
        response_parser=lambda r: r.json()["posts"],
    )
    analytics_api = APIEndpoint(
        name="analytics", url=f"{base}/analytics/users/{user_id}", method="GET", rate_limit=10
    )
    config = APIOrchestrationConfig(
        endpoints=[user_api, posts_api, analytics_api],
        mode=OrchestrationMode.PARALLEL,
        max_concurrent=3,
        fail_fast=False,
        cache_ttl=600,
        result_merger=lambda results: {
            "user": results[0],
            "posts": results[1],
            "analytics": results[2] if len(results) > 2 else None,
        },
    )
    async with APIOrchestrator(config) as orchestrator:
        enriched: dict[str, object] = await orchestrator.execute({"user_id": user_id})
        again = await orchestrator.run({"user_id": user_id})  # served from the cache
        print("second run outcomes:", {n: r.outcome for n, r in again.endpoints.items()})
    return enriched


def main() -> None:
    with upstreams.install(LocalServer()) as server:
        result = asyncio.run(enrich_user_data(server.url, 123))
        print(json.dumps(result, sort_keys=True))
        print("hits:", server.hits())


if __name__ == "__main__":
    main()
