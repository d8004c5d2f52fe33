"""What revalidation saves: a stale entry refetched in full vs revalidated with a 304.

Run: ``python benchmarks/cache_revalidation.py [--calls N] [--repeats R] [--kb K]``.

A local server sends a JSON body of about K KB with an ``ETag`` and ``max-age=60``; the
cache runs on a ``ManualClock`` moved 61 s before every call, so every call finds its
entry stale. Rows (µs per call, median of R runs of N calls, and body bytes the server
sent per call):

* ``refetch`` — ``CacheLayer(revalidate=False)``: a stale entry is fetched again in full
  (what lamina did before issue 16.5);
* ``revalidate (304)`` — the default: ``If-None-Match``, a 304 with no body, the stored
  body served;
* ``stale-while-revalidate`` — the response also says ``stale-while-revalidate=120``: the
  caller gets the stale entry at once, one background call refreshes it (a caller that
  arrives while a refresh runs starts none: fewer upstream calls than callers);
* ``fresh hit`` — the clock is not moved: no upstream call at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from _util import per_call_us

from lamina import HttpxTransport, Request, Service
from lamina.layers.cache import CacheLayer
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, ManualClock, RecordedRequest


class Resource:
    def __init__(self, kb: int, cache_control: str) -> None:
        self.body = {"items": [{"id": i, "name": f"item {i:06d}"} for i in range(kb * 40)]}
        self.size = len(json.dumps(self.body))
        self.cache_control = cache_control
        self.bytes_sent = 0

    def __call__(self, request: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        headers = {"ETag": '"v1"', "Cache-Control": self.cache_control}
        if request.headers.get("if-none-match") == '"v1"':
            return 304, b"", headers
        self.bytes_sent += self.size
        return 200, self.body, headers


async def row(
    name: str,
    server: LocalServer,
    resource: Resource,
    layer: CacheLayer,
    clock: ManualClock,
    *,
    stale: bool,
    calls: int,
    repeats: int,
) -> None:
    path = f"/bench-{name.split()[0]}"
    server.route(path, resource)
    async with HttpxTransport() as transport:
        svc: Service = layer.wrap(ParseLayer().wrap(transport))
        request = Request("GET", server.url_for(path), endpoint="bench")
        await svc(request)

        async def call() -> None:
            if stale:
                clock.advance(61)
            await svc(request)  # swr: the time until the caller has its answer

        sent_before, made_before = resource.bytes_sent, len(server.requests(path))
        us = await per_call_us(call, calls=calls, repeats=repeats, warmup=10)
        await layer.drain()  # background refreshes still running (swr)
        done = calls * repeats + 10
        made = len(server.requests(path)) - made_before
        per_call = (resource.bytes_sent - sent_before) / done
    print(f"| {name} | {us:,.0f} | {per_call:,.0f} | {made / done:.2f} |")


async def main(calls: int, repeats: int, kb: int) -> None:
    with LocalServer() as server:
        print(f"body: {Resource(kb, '').size:,} bytes of JSON\n")
        print("| case | µs per call | body bytes sent per call | upstream calls per call |")
        print("|---|---|---|---|")
        for name, cc, revalidate, stale in [
            ("refetch", "max-age=60", False, True),
            ("revalidate (304)", "max-age=60", True, True),
            ("stale-while-revalidate", "max-age=60, stale-while-revalidate=120", True, True),
            ("fresh hit", "max-age=60", True, False),
        ]:
            clock = ManualClock()
            layer = CacheLayer(ttl=3600, clock=clock, revalidate=revalidate)
            resource = Resource(kb, cc)
            await row(
                name, server, resource, layer, clock, stale=stale, calls=calls, repeats=repeats
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kb", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.repeats, args.kb))
