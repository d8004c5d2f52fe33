"""What ClientCredentialsLayer costs per call once it holds a token, and how many token
requests a burst of first calls and a burst of 401s make.

Run: ``python benchmarks/client_credentials.py [--calls N] [--rounds R]``. Per-call cost:
an in-memory service with and without the layer, interleaved rounds, CPU time per call
(median and spread). Bursts: against lamina's local token server on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from lamina import Request, Response, ServiceBuilder
from lamina.layers import ClientCredentialsLayer
from lamina.testing import LocalServer
from lamina.testing.oauth import OAuthUpstream
from lamina.transports import HttpxTransport


async def ok(request: Request) -> Response:
    return Response(200, content=b"{}", request=request)


async def cpu_per_call(service: object, calls: int) -> float:
    request = Request("GET", "http://upstream.test/x")
    started = time.process_time()
    for _ in range(calls):
        await service(request)  # type: ignore[operator]
    return (time.process_time() - started) / calls * 1e6


async def main(calls: int, rounds: int) -> None:
    with LocalServer() as server:
        oauth = OAuthUpstream.install(server, client_id="bench", client_secret="bench-secret")
        layer = ClientCredentialsLayer(oauth.token_url, "bench", "bench-secret")
        bare = ServiceBuilder([]).service(ok)
        wrapped = ServiceBuilder([layer]).service(ok)
        await wrapped(Request("GET", "http://upstream.test/warm"))  # fetch the token
        with_layer, without = [], []
        for _ in range(rounds):  # interleaved
            without.append(await cpu_per_call(bare, calls))
            with_layer.append(await cpu_per_call(wrapped, calls))
        added = [a - b for a, b in zip(with_layer, without, strict=True)]
        print("| figure | median | min - max |")
        print("|---|---|---|")
        print(
            f"| CPU per call, in-memory service | {statistics.median(without):.2f} µs "
            f"| {min(without):.2f} - {max(without):.2f} |"
        )
        print(
            f"| ... with ClientCredentialsLayer (token held) | "
            f"{statistics.median(with_layer):.2f} µs "
            f"| {min(with_layer):.2f} - {max(with_layer):.2f} |"
        )
        print(
            f"| added by the layer | {statistics.median(added):.2f} µs "
            f"| {min(added):.2f} - {max(added):.2f} |"
        )
        await layer.aclose()

        async with HttpxTransport() as transport:
            first = ClientCredentialsLayer(oauth.token_url, "bench", "bench-secret")
            service = ServiceBuilder([first]).service(transport)
            before = oauth.issued
            await asyncio.gather(
                *(service(Request("GET", oauth.api_url(str(n)))) for n in range(200))
            )
            print(f"| token requests for 200 concurrent first calls | {oauth.issued - before} | |")
            oauth.revoke_all()
            before, refused = oauth.issued, oauth.rejected
            await asyncio.gather(
                *(service(Request("GET", oauth.api_url(str(n)))) for n in range(200))
            )
            print(
                f"| token requests after 200 concurrent calls saw 401 | {oauth.issued - before} "
                f"| ({oauth.rejected - refused} calls refused) |"
            )
            await first.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
