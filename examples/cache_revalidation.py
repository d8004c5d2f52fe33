"""Cache revalidation (RFC 9111) and RFC 5861's stale windows, against a local server.

Run: python examples/cache_revalidation.py

A cached entry with an ETag is revalidated once stale: the server answers 304 Not
Modified with no body and the cache serves the stored one. ``stale-while-revalidate``
answers at once with the stale entry while one background call refreshes it;
``stale-if-error`` stands in when the upstream fails. The run uses virtual time
(``ManualClock``) so that "60 seconds later" takes no time; the HTTP calls are real.
Then an orchestrator with ``cache_ttl`` caches an endpoint that sends ``Authorization``
(per caller), and its run report says why another call was not cached.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    HttpxTransport,
    Request,
)
from lamina.layers.cache import CacheLayer
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, ManualClock, RecordedRequest

BODY = {"title": "Revalidation", "text": "x" * 2000}


class Resource:
    """A resource with an ETag, honouring If-None-Match; ``down`` answers 503."""

    def __init__(self, cache_control: str) -> None:
        self.cache_control = cache_control
        self.version = 1
        self.down = False
        self.bytes_sent = 0

    def __call__(self, request: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        if self.down:
            return 503, {"error": "maintenance"}, {}
        etag = f'"v{self.version}"'
        headers = {"ETag": etag, "Cache-Control": self.cache_control}
        if request.headers.get("if-none-match") == etag:
            return 304, b"", headers
        body = {**BODY, "version": self.version}
        self.bytes_sent += len(json.dumps(body))
        return 200, body, headers


async def stale_windows(server: LocalServer, resources: dict[str, Resource]) -> None:
    clock = ManualClock()
    cache = CacheLayer(ttl=3600, clock=clock)
    async with HttpxTransport() as transport:
        svc = cache.wrap(ParseLayer().wrap(transport))

        async def call(path: str, label: str) -> None:
            response = await svc(Request("GET", server.url_for(path), endpoint=path[1:]))
            sent = server.requests(path)
            print(
                f"{path:<9} {label:<30} version={response.value['version']} "
                f"from_cache={response.from_cache} stale={response.stale} "
                f"upstream={len(sent)} If-None-Match={sent[-1].headers.get('if-none-match')}"
            )

        print("== revalidation (ETag, max-age=60)")
        await call("/article", "first call")
        clock.advance(10)
        await call("/article", "10 s later: fresh")
        clock.advance(60)
        await call("/article", "70 s later: 304, stored body")
        print(f"body bytes sent: {resources['/article'].bytes_sent} (one full body for 3 calls)")

        print("== stale-while-revalidate=120")
        await call("/feed", "first call")
        resources["/feed"].version = 2
        clock.advance(90)
        url = server.url_for("/feed")
        answers = await asyncio.gather(
            *(svc(Request("GET", url, endpoint="feed")) for _ in range(10))
        )
        stale = sum(1 for a in answers if a.stale and a.value["version"] == 1)
        await cache.drain()
        print(f"10 concurrent callers 90 s later: {stale} served stale at once")
        print(f"background refreshes: {len(server.requests('/feed')) - 1}")
        await call("/feed", "after the refresh")

        print("== stale-if-error=300")
        await call("/prices", "first call")
        resources["/prices"].down = True
        clock.advance(120)
        await call("/prices", "120 s later, upstream 503")


async def authorized(server: LocalServer) -> None:
    user = APIEndpoint(
        name="user",
        url=server.url_for("/echo?user=42"),
        headers={"Authorization": "Bearer demo-token"},
    )
    volatile = APIEndpoint(name="quote", url=server.url_for("/nostore"))
    config = APIOrchestrationConfig(endpoints=[user, volatile], cache_ttl=60)
    async with APIOrchestrator(config) as orchestrator:
        await orchestrator.run()
        report = await orchestrator.run()
    outcomes = {name: r.outcome for name, r in report.endpoints.items()}
    print(f"second run outcomes: {outcomes}")
    print(f"quote note: {report.endpoints['quote'].reason}")
    print(f"user requests the server saw: {len(server.requests('/echo'))}")


def main() -> None:
    resources = {
        "/article": Resource("max-age=60"),
        "/feed": Resource("max-age=60, stale-while-revalidate=120"),
        "/prices": Resource("max-age=60, stale-if-error=300"),
    }
    with LocalServer() as server:
        for path, resource in resources.items():
            server.route(path, resource)
        server.route("/nostore", lambda request: (200, {"price": 7}, {"Cache-Control": "no-store"}))
        asyncio.run(stale_windows(server, resources))
        print("== an orchestrator with cache_ttl")
        asyncio.run(authorized(server))


if __name__ == "__main__":
    main()
