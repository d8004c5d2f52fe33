"""CPU time per call of the bare clients and of lamina's full default stack on each
native transport (issue 13, last row: the fastest transport's stack against bare aiohttp).

Run: ``python benchmarks/transports.py [--rounds N] [--calls N] [--in-flight N]``.

One loopback server in its own process (``python -m lamina.testing``, on its own core);
every contender does the same work: GET ``/json``, check the status, parse the JSON,
one call at a time or ``--in-flight`` at once (``asyncio.gather``). Each round times
every contender for ``--calls`` calls, in an order that rotates from round to round, in
CPU time (``time.process_time``: this process, pyreqwest's Rust thread included), which
other processes on a shared machine disturb less than wall time, and in wall time.
Prints the medians and range over rounds, and each CPU median as a ratio to bare
aiohttp. Contenders whose client is not installed are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import server_process, table

Call = Callable[[], Awaitable[object]]


async def contenders(url: str) -> tuple[dict[str, Call], list[Callable[[], Awaitable[None]]]]:
    """name -> one call, and what to close afterwards."""
    import aiohttp

    from lamina import APIEndpoint, APIOrchestrationConfig, Request, ServiceBuilder
    from lamina.orchestration.stack import default_layers, new_shared_state
    from lamina.transports import AiohttpTransport
    from lamina.transports.base import BaseTransport

    endpoint = APIEndpoint(name="bench", url=url)
    config = APIOrchestrationConfig(endpoints=[endpoint], cache_ttl=None)
    request = Request("GET", url, endpoint="bench")
    session = aiohttp.ClientSession()

    async def bare_aiohttp() -> object:
        async with session.get(url) as response:
            response.raise_for_status()
            return json.loads(await response.read())

    calls: dict[str, Call] = {"bare aiohttp": bare_aiohttp}
    closers: list[Callable[[], Awaitable[None]]] = [session.close]
    transports: list[BaseTransport] = [AiohttpTransport()]
    if importlib.util.find_spec("pyreqwest") is not None:
        from pyreqwest.client import ClientBuilder

        from lamina.transports import PyreqwestTransport

        client = ClientBuilder().build()

        async def bare_pyreqwest() -> object:
            response = await client.get(url).build().send()
            if response.status >= 400:
                raise RuntimeError(response.status)
            return json.loads(bytes(await response.bytes()))

        calls["bare pyreqwest"] = bare_pyreqwest
        closers.append(client.close)
        transports.append(PyreqwestTransport())
    for transport in transports:
        stack = ServiceBuilder(default_layers(endpoint, config, new_shared_state(config)))
        name = type(transport).__name__.removesuffix("Transport").lower()
        calls[f"lamina full stack ({name})"] = functools.partial(stack.service(transport), request)
        closers.append(transport.aclose)
    return calls, closers


async def measure(
    url: str, rounds: int, calls: int, in_flight: int
) -> dict[str, tuple[list[float], list[float]]]:
    """name -> (CPU, wall) µs per call, one value each per round."""
    found, closers = await contenders(url)
    try:
        for call in found.values():
            for _ in range(200):
                await call()
        samples: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in found}
        names = list(found)
        batches = max(1, calls // in_flight)
        for i in range(rounds):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                call = found[name]
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(batches):
                    if in_flight == 1:
                        await call()
                    else:
                        await asyncio.gather(*(call() for _ in range(in_flight)))
                done = batches * in_flight
                samples[name][0].append((time.process_time() - cpu) / done * 1e6)
                samples[name][1].append((time.perf_counter() - wall) / done * 1e6)
        return samples
    finally:
        for close in closers:
            await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--in-flight", type=int, default=1, help="calls at once (gather)")
    args = parser.parse_args()
    with server_process() as base_url:
        samples = asyncio.run(measure(base_url + "/json", args.rounds, args.calls, args.in_flight))
    base = statistics.median(samples["bare aiohttp"][0])
    rows: list[list[object]] = [
        [
            name,
            f"{statistics.median(cpu):.0f}",
            f"{min(cpu):.0f} to {max(cpu):.0f}",
            f"{statistics.median(cpu) / base:.2f}x",
            f"{statistics.median(wall):.0f}",
        ]
        for name, (cpu, wall) in samples.items()
    ]
    shape = "sequential" if args.in_flight == 1 else f"{args.in_flight} in flight"
    print(f"{args.rounds} interleaved rounds of {args.calls} calls each, {shape}\n")
    headers = ["contender", "CPU µs/call (median)", "range", "/ bare aiohttp", "wall µs/call"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
