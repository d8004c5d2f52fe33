"""CPU and wall time per call: lamina's full default stack against bare clients and
against what a user would glue together around httpx instead (issue 13, rows 1, 2, 8,
the glue table and the OpenTelemetry SDK's cost).

Run: ``python benchmarks/percall.py [--groups memory,native,httpx] [--rounds N]
[--calls N] [--sdk] [--url URL]``; without ``--url`` it starts its own loopback server.
Prints a Markdown table, or one JSON object with ``--json`` (what ``run_all.py`` reads).

Groups of contenders, each doing the same work per call:

- ``memory``: an in-memory service alone, and lamina's default stack over it (row 1);
- ``native``: bare aiohttp, bare pyreqwest, and the default stack on lamina's aiohttp and
  pyreqwest transports, from ``transports.contenders`` (GET ``/json``, check the status,
  parse the JSON; rows 2 and 8);
- ``native50``: the same, 50 calls at once (``asyncio.gather``);
- ``httpx``: bare httpx; the glue (httpx + tenacity + aiolimiter + purgatory +
  opentelemetry-instrumentation-httpx: retry, rate limit, breaker, timeout, a CLIENT span,
  parse the JSON); lamina on httpx with the same work (default stack plus a rate limit).
  The glue needs ``benchmarks/requirements.txt``; without it that contender is left out.

Each round times every contender of every group for the group's number of calls, in an
order that rotates from round to round, in CPU time (``time.process_time``: this process,
client threads included) and wall time. ``--sdk`` installs the OpenTelemetry SDK first: a
global ``TracerProvider`` with a ``BatchSpanProcessor`` feeding an exporter that drops
the spans, and a global ``MeterProvider`` with an in-memory reader, so every span and
instrument records (the SDK cannot be removed from a process once set, hence one
process per setting).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import server_process, table

Call = Callable[[], Awaitable[object]]
Close = Callable[[], Awaitable[object]]
GROUPS = ("memory", "native", "native50", "httpx")
#: Calls per contender per round: the in-memory calls take microseconds, the others a loopback GET.
CALLS = {"memory": 20_000, "native": 1_000, "native50": 1_000, "httpx": 500}
IN_FLIGHT = 50  # the native50 group: this many calls at once
RATE = 100_000  # per second: a limit that never binds here, so only its bookkeeping costs
GLUE_MODULES = ("tenacity", "aiolimiter", "purgatory", "opentelemetry.instrumentation.httpx")

MEMORY_BARE = "in-memory service alone"
MEMORY_STACK = "lamina full stack (in-memory)"
GLUE = "glue: httpx + tenacity + aiolimiter + purgatory + otel-httpx"
HTTPX_BARE = "bare httpx"
HTTPX_STACK = "lamina full stack + rate limit (httpx)"


@dataclass
class Group:
    """Contenders timed side by side for ``calls`` calls each per round."""

    name: str
    calls: int
    contenders: dict[str, Call] = field(default_factory=dict)
    closers: list[Close] = field(default_factory=list)
    in_flight: int = 1  # calls at once (asyncio.gather)


def install_sdk() -> None:
    """The OpenTelemetry SDK as a user would set it up, with nowhere to send its data."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def _stack(url: str, transport: Any, **endpoint: Any) -> Any:
    """The orchestrator's default layers for one GET endpoint (cache off) over ``transport``."""
    from lamina import APIEndpoint, APIOrchestrationConfig, ServiceBuilder
    from lamina.orchestration.stack import default_layers, new_shared_state

    ep = APIEndpoint(name="bench", url=url, **endpoint)
    config = APIOrchestrationConfig(endpoints=[ep], cache_ttl=None)
    return ServiceBuilder(default_layers(ep, config, new_shared_state(config))).service(transport)


def memory_group(calls: int) -> Group:
    """Row 1: the default stack over an in-memory service, and the service alone."""
    from lamina import Request, Response

    done = Response(200, content=b"{}", headers={"content-type": "application/json"})

    async def inner(request: Request) -> Response:
        return done

    request = Request("GET", "http://bench/json", endpoint="bench")
    stack = _stack("http://bench/json", inner)
    return Group(
        "memory",
        calls,
        {
            MEMORY_BARE: functools.partial(inner, request),
            MEMORY_STACK: functools.partial(stack, request),
        },
    )


async def native_group(url: str, calls: int, in_flight: int = 1) -> Group:
    """Rows 2 and 8: ``transports.contenders`` (bare aiohttp and pyreqwest, the stack on each),
    one call at a time or ``in_flight`` at once (names then end in `` @50``)."""
    from transports import contenders

    found, closers = await contenders(url)
    suffix = f" @{in_flight}" if in_flight > 1 else ""
    named = {name + suffix: call for name, call in found.items()}
    name = "native" + (str(in_flight) if in_flight > 1 else "")
    return Group(name, calls, named, list(closers), in_flight)


def glue_available() -> bool:
    return all(importlib.util.find_spec(m.split(".")[0]) is not None for m in GLUE_MODULES) and (
        importlib.util.find_spec("opentelemetry.instrumentation.httpx") is not None
    )


def glue_call(url: str) -> tuple[Call, Close]:
    """httpx with tenacity (retry), purgatory (breaker), aiolimiter (rate limit),
    ``asyncio.timeout`` and opentelemetry-instrumentation-httpx (a CLIENT span), then the
    JSON parsed: what lamina's default stack plus a rate limit does, glued by hand."""
    import httpx
    from aiolimiter import AsyncLimiter
    from opentelemetry.instrumentation.httpx import (  # type: ignore[import-not-found,unused-ignore]
        HTTPXClientInstrumentor,
    )
    from purgatory import AsyncCircuitBreakerFactory
    from tenacity import (  # type: ignore[import-not-found,unused-ignore]
        retry,
        retry_if_exception,
        stop_after_attempt,
        wait_exponential_jitter,
    )

    client = httpx.AsyncClient(timeout=30.0)
    HTTPXClientInstrumentor.instrument_client(client)
    limiter = AsyncLimiter(RATE, 1)
    breakers = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=60)

    def retryable(error: BaseException) -> bool:
        if isinstance(error, httpx.HTTPStatusError):
            return error.response.status_code in (429, 500, 502, 503, 504)
        return isinstance(error, httpx.TransportError | TimeoutError)

    async def one_attempt() -> httpx.Response:
        async with limiter, asyncio.timeout(30.0):
            response = await client.get(url)
        response.raise_for_status()
        return response

    # what @retry(...) and @breakers("bench") stacked on one_attempt would make
    attempt: Callable[[], Awaitable[httpx.Response]] = retry(
        stop=stop_after_attempt(4),
        wait=wait_exponential_jitter(initial=1.0),
        retry=retry_if_exception(retryable),
        reraise=True,
    )(breakers("bench")(one_attempt))

    async def call() -> object:
        return (await attempt()).json()

    return call, client.aclose


async def httpx_group(url: str, calls: int) -> Group:
    """The glue table: bare httpx, the glue, lamina on httpx with a rate limit."""
    import httpx

    from lamina import HttpxTransport, Request

    client = httpx.AsyncClient(timeout=30.0)

    async def bare() -> object:
        response = await client.get(url)
        response.raise_for_status()
        return response.json()

    transport = HttpxTransport()
    stack = _stack(url, transport, rate_limit=RATE * 60.0, burst_limit=1000)
    request = Request("GET", url, endpoint="bench")
    group = Group("httpx", calls, {HTTPX_BARE: bare}, [client.aclose, transport.aclose])
    if glue_available():
        glue, close = glue_call(url)
        group.contenders[GLUE] = glue
        group.closers.append(close)
    group.contenders[HTTPX_STACK] = functools.partial(stack, request)
    return group


async def build(names: list[str], url: str | None, calls: dict[str, int]) -> list[Group]:
    groups = []
    for name in names:
        if name == "memory":
            groups.append(memory_group(calls[name]))
        elif url is None:
            raise ValueError(f"group {name} needs a server URL")
        elif name == "native":
            groups.append(await native_group(url, calls[name]))
        elif name == "native50":
            groups.append(await native_group(url, calls[name], IN_FLIGHT))
        elif name == "httpx":
            groups.append(await httpx_group(url, calls[name]))
        else:
            raise ValueError(f"unknown group {name!r}; choose from {', '.join(GROUPS)}")
    return groups


async def measure(
    names: list[str], url: str | None, rounds: int, calls: dict[str, int], offset: int = 0
) -> dict[str, dict[str, list[float]]]:
    """name -> {"cpu": [...], "wall": [...]}: µs per call, one value per round."""
    groups = await build(names, url, calls)
    try:
        for group in groups:  # warm up: connections, first-use costs, memos
            for call in group.contenders.values():
                for _ in range(max(50, group.calls // 10)):
                    await call()
        out: dict[str, dict[str, list[float]]] = {
            n: {"cpu": [], "wall": []} for g in groups for n in g.contenders
        }
        for i in range(offset, offset + rounds):
            for group in groups:
                order = list(group.contenders)
                k = i % len(order)
                for name in order[k:] + order[:k]:
                    call, n = group.contenders[name], group.in_flight
                    batches = max(1, group.calls // n)
                    cpu, wall = time.process_time(), time.perf_counter()
                    for _ in range(batches):
                        if n == 1:
                            await call()
                        else:
                            await asyncio.gather(*(call() for _ in range(n)))
                    done = batches * n
                    out[name]["cpu"].append((time.process_time() - cpu) / done * 1e6)
                    out[name]["wall"].append((time.perf_counter() - wall) / done * 1e6)
        return out
    finally:
        for group in groups:
            for close in group.closers:
                await close()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for dist in (
        "httpx",
        "aiohttp",
        "pyreqwest",
        "tenacity",
        "aiolimiter",
        "purgatory",
        "opentelemetry-instrumentation-httpx",
        "opentelemetry-sdk",
    ):
        with contextlib.suppress(PackageNotFoundError):
            found[dist] = version(dist)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", default=",".join(GROUPS))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=float, default=1.0, help="scale the calls per round")
    parser.add_argument("--offset", type=int, default=0, help="first round's rotation")
    parser.add_argument("--sdk", action="store_true", help="install the OpenTelemetry SDK first")
    parser.add_argument("--url", help="the /json URL of a running server")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the event loop"
    )
    args = parser.parse_args()
    if args.sdk:
        install_sdk()
    names = [n for n in args.groups.split(",") if n]
    calls = {n: max(10, int(c * args.calls)) for n, c in CALLS.items()}

    def run(url: str | None) -> dict[str, dict[str, list[float]]]:
        from lamina._loop import loop_factory

        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            return runner.run(measure(names, url, args.rounds, calls, args.offset))

    if args.url or names == ["memory"]:
        samples = run(args.url)
    else:
        with server_process() as base:
            samples = run(base + "/json")
    if args.json:
        print(json.dumps({"sdk": args.sdk, "versions": versions(), "samples": samples}))
    else:
        rows: list[list[object]] = [
            [
                name,
                f"{statistics.median(s['cpu']):.1f}",
                f"{min(s['cpu']):.1f} to {max(s['cpu']):.1f}",
                f"{statistics.median(s['wall']):.1f}",
            ]
            for name, s in samples.items()
        ]
        print(table(["contender", "CPU µs/call (median)", "range", "wall µs/call"], rows))
    sys.stdout.flush()
    # pyreqwest's runtime threads can abort Python 3.11 at finalization (see docs/transports.md)
    os._exit(0)


if __name__ == "__main__":
    main()
