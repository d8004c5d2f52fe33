"""CPU time per call the full default stack adds over an in-memory service (issue 13, row 1).

Run: ``python benchmarks/stack_cpu.py [--rounds N] [--calls N] [--against DIR] [--aiohttp]``.

Each round times the service alone and the service under the default stack (the
orchestrator's layers for one GET endpoint, cache off, no-op tracing), alternating, in
CPU time (``time.process_time``), which other processes on a shared machine disturb
less than wall time. Prints the medians over rounds. ``--against DIR`` also runs
another checkout's ``src`` (e.g. ``git archive HEAD src | tar -x -C DIR``) in
alternating subprocesses, for a before/after of a change. ``--aiohttp`` measures row 2
instead: the default stack on lamina's aiohttp transport against bare aiohttp doing the
same work (GET, check the status, parse the JSON) on one loopback server, as the ratio
of their CPU time per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import server_process, table


async def _cpu_us(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        await fn()
    return (time.process_time() - start) / calls * 1e6


async def added_us(rounds: int, calls: int) -> list[float]:
    """Per round: CPU µs per call of the stack minus that of the service alone."""
    from lamina import APIEndpoint, APIOrchestrationConfig, Request, Response, ServiceBuilder
    from lamina.orchestration.stack import default_layers, new_shared_state

    done = Response(200, content=b"{}", headers={"content-type": "application/json"})

    async def inner(request: Request) -> Response:
        return done

    endpoint = APIEndpoint(name="bench", url="http://bench/json")
    config = APIOrchestrationConfig(endpoints=[endpoint], cache_ttl=None)
    stack = ServiceBuilder(default_layers(endpoint, config, new_shared_state(config))).service(
        inner
    )
    request = Request("GET", "http://bench/json", endpoint="bench")

    def bare() -> Awaitable[object]:
        return inner(request)

    def full() -> Awaitable[object]:
        return stack(request)

    for _ in range(calls // 10):
        await full()
    added = []
    for _ in range(rounds):
        base = await _cpu_us(bare, calls)
        added.append(await _cpu_us(full, calls) - base)
    return added


async def aiohttp_ratios(url: str, rounds: int, calls: int) -> list[float]:
    """Per round: CPU per call of the default stack on aiohttp / that of bare aiohttp."""
    import aiohttp

    from lamina import APIEndpoint, APIOrchestrationConfig, Request, ServiceBuilder
    from lamina.orchestration.stack import default_layers, new_shared_state
    from lamina.transports import AiohttpTransport

    endpoint = APIEndpoint(name="bench", url=url)
    config = APIOrchestrationConfig(endpoints=[endpoint], cache_ttl=None)
    transport = AiohttpTransport()
    stack = ServiceBuilder(default_layers(endpoint, config, new_shared_state(config))).service(
        transport
    )
    request = Request("GET", url, endpoint="bench")
    session = aiohttp.ClientSession()

    async def bare() -> object:
        async with session.get(url) as response:
            response.raise_for_status()
            return json.loads(await response.read())

    def full() -> Awaitable[object]:
        return stack(request)

    try:
        for _ in range(100):
            await bare()
            await full()
        ratios = []
        for i in range(rounds):
            pair = [bare, full] if i % 2 == 0 else [full, bare]
            us = {fn: await _cpu_us(fn, calls) for fn in pair}
            ratios.append(us[full] / us[bare])
        return ratios
    finally:
        await session.close()
        await transport.aclose()


def _child(src: str, rounds: int, calls: int, url: str | None) -> list[float]:
    env = dict(os.environ, PYTHONPATH=src)
    sizes = ["--rounds", str(rounds), "--calls", str(calls)]
    out = subprocess.run(
        [sys.executable, __file__, "--json", *sizes, *(["--url", url] if url else [])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--against", help="another checkout to compare with (its src/)")
    parser.add_argument("--aiohttp", action="store_true", help="row 2: ratio to bare aiohttp")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        if args.url:
            print(json.dumps(asyncio.run(aiohttp_ratios(args.url, args.rounds, args.calls))))
        else:
            print(json.dumps(asyncio.run(added_us(args.rounds, args.calls))))
        return
    if args.aiohttp:
        with server_process() as base_url:
            _compare(args, base_url + "/json", "CPU per call / bare aiohttp", "{:.2f}x")
    else:
        _compare(args, None, "added CPU µs/call", "+{:.2f}")


def _compare(args: argparse.Namespace, url: str | None, what: str, fmt: str) -> None:
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    trees = {"this checkout": here}
    if args.against:
        trees = {f"{args.against}": os.path.join(args.against, "src"), **trees}
    samples: dict[str, list[float]] = {name: [] for name in trees}
    per_child = 3
    for i in range(max(1, args.rounds // per_child)):
        names = list(trees) if i % 2 == 0 else list(reversed(trees))
        for name in names:
            samples[name] += _child(trees[name], per_child, args.calls, url)
    rows = [
        [
            name,
            fmt.format(statistics.median(values)),
            f"{min(values):.2f} to {max(values):.2f}",
            len(values),
        ]
        for name, values in samples.items()
    ]
    print(table(["src", f"{what} (median)", "range", "rounds"], rows))


if __name__ == "__main__":
    main()
