"""``lamina demo`` (or ``python -m lamina.demo``): a tour of lamina on built-in local services.

Starts :class:`lamina.testing.LocalServer` on 127.0.0.1 with sample upstream APIs
(no internet needed): fast ones, slow ones, flaky ones, a rate-limited one answering
429 with Retry-After, one answering 503 and one that is down (connection refused).
Then it runs orchestrations in every mode that show retries, the circuit breaker
opening, cache hits, the rate limiter and a hung upstream being cut; the last two
are drawn as the ``lamina run`` command draws them: a results table and a waterfall.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from typing import Any

from .._errors import LaminaError
from .._loop import loop_factory
from ..orchestration import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    OrchestrationMode,
)
from ..testing import LocalServer, upstreams
from .commands import FlowRunner, check_output, run_flow
from .render import results_table, waterfall

Mode = OrchestrationMode


def title(text: str) -> None:
    print(f"\n== {text}")


async def enrichment(base: str) -> None:
    title("PARALLEL: three upstreams of 150 ms each finish together, then from the cache")
    endpoints = [
        APIEndpoint(name="user", url=f"{base}/users/{{user_id}}?ms=150"),
        APIEndpoint(
            name="posts",
            url=f"{base}/users/{{user_id}}/posts?ms=150",
            response_parser=lambda r: r.json()["posts"],
        ),
        APIEndpoint(name="analytics", url=f"{base}/analytics/users/{{user_id}}?ms=150"),
    ]
    config = APIOrchestrationConfig(endpoints=endpoints, mode=Mode.PARALLEL, cache_ttl=60)
    async with APIOrchestrator(config) as orchestrator:
        for _ in range(2):
            report = await orchestrator.run({"user_id": 42})
            print(report.summary())


async def retries(base: str) -> None:
    title("Retries: an upstream that fails twice with 503, then answers")
    flaky = APIEndpoint(name="flaky", url=f"{base}/flaky/demo?fail=2", retry_delay=0.05)
    async with APIOrchestrator(APIOrchestrationConfig(endpoints=[flaky])) as orchestrator:
        report = await orchestrator.run()
    print(report.summary())


async def breaker(base: str, server: LocalServer) -> None:
    title("Circuit breaker: after 3 failures the upstream is no longer called")
    down = APIEndpoint(name="down", url=f"{base}/status/503", retry_count=0)
    config = APIOrchestrationConfig(
        endpoints=[down], circuit_breaker_threshold=3, circuit_breaker_timeout=30
    )
    async with APIOrchestrator(config) as orchestrator:
        for run in range(1, 6):
            report = await orchestrator.run()
            error = report.endpoints["down"].error
            print(f"  run {run}: {type(error).__name__}: {error}")
    print(f"  the upstream saw {server.hits('/status/503')} calls for 5 runs")


async def rate_limit(base: str, server: LocalServer) -> None:
    title("Rate limit: 8 calls under a global limit of 4 per second (burst 4)")
    endpoints = [APIEndpoint(name=f"call{i}", url=f"{base}/json?i={i}") for i in range(8)]
    config = APIOrchestrationConfig(
        endpoints=endpoints, mode=Mode.FANOUT, global_rate_limit=4, rate_limit_window=1
    )
    async with APIOrchestrator(config) as orchestrator:
        await orchestrator.run()
    arrivals = server.arrivals("/json")
    first = min(arrivals)
    print("  arrivals (s):", " ".join(f"{t - first:.2f}" for t in sorted(arrivals)))


async def pipeline(base: str) -> None:
    title("PIPELINE with a condition and dependencies: the payment example")
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="validate", url=f"{base}/payment/validate", method="POST"),
            APIEndpoint(
                name="fraud_check",
                url=f"{base}/fraud/check",
                method="POST",
                condition=lambda data: data["amount"] > 100,
            ),
            APIEndpoint(
                name="process",
                url=f"{base}/processor/charge",
                method="POST",
                depends_on=["validate", "fraud_check"],
            ),
            APIEndpoint(
                name="notify", url=f"{base}/notify/payment", method="POST", depends_on=["process"]
            ),
        ],
        mode=Mode.PIPELINE,
        fail_fast=True,
    )
    async with APIOrchestrator(config) as orchestrator:
        for amount in (250, 20):
            report = await orchestrator.run({"amount": amount, "card_token": "tok_demo"})
            print(f"  amount {amount}:")
            print(report.summary())


async def hybrid(base: str) -> None:
    title("HYBRID: a dependency graph; each call starts when its dependencies are done")
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="auth", url=f"{base}/json?ms=50&step=auth"),
            APIEndpoint(name="user", url=f"{base}/users/1?ms=100", depends_on=["auth"]),
            APIEndpoint(name="stock", url=f"{base}/json?ms=30&step=stock", depends_on=["auth"]),
            APIEndpoint(
                name="order",
                url=f"{base}/echo?step=order",
                method="POST",
                depends_on=["user", "stock"],
            ),
        ],
        mode=Mode.HYBRID,
    )
    async with APIOrchestrator(config) as orchestrator:
        print((await orchestrator.run()).summary())


async def deadline(base: str) -> None:
    title("A hung upstream: total_timeout ends the run and leaves nothing running")
    hang = APIEndpoint(name="hang", url=f"{base}/hang")
    config = APIOrchestrationConfig(endpoints=[hang], total_timeout=0.5)
    async with APIOrchestrator(config) as orchestrator:
        started = time.perf_counter()
        try:
            await orchestrator.execute()
        except LaminaError as exc:
            took = (time.perf_counter() - started) * 1000
            print(f"  {type(exc).__name__} after {took:.0f} ms: {exc}")


def closed_port() -> int:
    """A local port nobody listens on: the "down" upstream (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def show(outcome: Any) -> None:
    """Print a run as ``lamina run`` does: results table, waterfall, verdict."""
    report = outcome.report
    timelines = outcome.recorder.timelines
    print(results_table(report, timelines))
    print(waterfall(report, timelines))
    print(
        f"{report.mode} run: {report.duration * 1000:.0f} ms, "
        f"critical path {' -> '.join(report.critical_path) or '-'}"
    )


async def sequential(base: str, report_path: str | None) -> None:
    title("SEQUENTIAL: a slow upstream cut by its timeout, a down one handled, the rest go on")
    down = f"http://127.0.0.1:{closed_port()}"
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="token", url=f"{base}/json?ms=20&step=token"),
            APIEndpoint(
                name="slow_search",
                url=f"{base}/json?ms=400&step=search",
                timeout=0.15,
                retry_count=1,
                retry_delay=0.05,
            ),
            APIEndpoint(
                name="billing_down",
                url=f"{down}/billing",
                retry_count=2,
                retry_delay=0.05,
                error_handler=lambda exc: {"billing": "unavailable", "why": type(exc).__name__},
            ),
            APIEndpoint(name="profile", url=f"{base}/users/7?ms=40"),
        ],
        mode=Mode.SEQUENTIAL,
    )
    outcome = await run_flow(config, None)
    show(outcome)
    if report_path and outcome.report is not None:
        from .report_html import write_html

        path = write_html(
            report_path, outcome.report, config, outcome.recorder.timelines, title="lamina demo"
        )
        print(f"  HTML report of this run: {path}")


async def conditional(base: str) -> None:
    title("CONDITIONAL: gated calls, and a rate-limited upstream answering 429 + Retry-After")
    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="account", url=f"{base}/users/{{user_id}}?ms=30"),
            APIEndpoint(
                name="gold_offers",
                url=f"{base}/json?ms=30&step=offers",
                condition=lambda ctx: ctx.get("tier") == "gold",
            ),
            APIEndpoint(
                name="quota",
                url=f"{base}/retry-after/demo-quota?seconds=0.2",
                retry_delay=0.05,
                condition=lambda ctx: ctx["account"] is not None,
            ),
            APIEndpoint(
                name="limited",
                url=f"{base}/echo?step=limited",
                method="POST",  # not cached: the second run waits for the rate limiter
                rate_limit=120,
                burst_limit=1,
            ),
        ],
        mode=Mode.CONDITIONAL,
        cache_ttl=60,
    )
    async with FlowRunner(config) as runner:
        for tier in ("silver", "gold"):  # the second run: cache hits, the limiter holds a call
            show(await runner.run({"user_id": 7, "tier": tier}))


async def tour(server: LocalServer, report_path: str | None = None) -> None:
    base = server.url
    await enrichment(base)
    await retries(base)
    await breaker(base, server)
    await rate_limit(base, server)
    await pipeline(base)
    await hybrid(base)
    await deadline(base)
    await sequential(base, report_path)
    await conditional(base)
    print(f"\nthe local services received {server.hits()} requests in all")
    print("next: write a flow file and run `lamina run flow.yaml --report run.html` (docs/cli.md)")


def main(report: str | None = None, loop: str = "auto") -> None:
    """Start the local services and run the tour; ``report`` writes an HTML run report,
    ``loop`` picks the event loop (see :func:`lamina._loop.loop_factory`)."""
    factory = loop_factory(loop, field="--loop")  # before the servers start
    with upstreams.install(LocalServer()) as server:
        print(f"lamina demo: sample upstream APIs at {server.url}")
        sys.stdout.flush()
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(tour(server, report))


def cmd_demo(args: argparse.Namespace) -> int:
    """``lamina demo``: the tour on built-in local services."""
    check_output("--report", args.report)
    main(report=args.report, loop=args.loop)
    return 0
