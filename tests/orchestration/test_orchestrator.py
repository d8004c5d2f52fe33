"""The orchestrator's run rules, against the real local server."""

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    ConfigError,
    EndpointError,
    ErrorThresholdExceeded,
    HTTPStatusError,
    OrchestrationMode,
    OrchestrationTimeout,
    Response,
)
from lamina.layers import ParseLayer, TimeoutLayer
from lamina.testing import LocalServer, RecordedRequest

Mode = OrchestrationMode


def config(*endpoints: APIEndpoint, **kw: Any) -> APIOrchestrationConfig:
    return APIOrchestrationConfig(endpoints=list(endpoints), **kw)


async def test_reference_basic_usage(api: LocalServer) -> None:
    users = APIEndpoint(name="users", url=api.url_for("/users/1"), method="GET")
    posts = APIEndpoint(
        name="posts", url=api.url_for("/users/1/posts"), method="GET", depends_on=["users"]
    )
    orchestrator = APIOrchestrator(config(users, posts, mode=Mode.SEQUENTIAL))
    result = await orchestrator.execute({"user_id": 123})
    await orchestrator.aclose()
    assert result["users"]["name"] == "User 1"
    assert len(result["posts"]["posts"]) == 2
    assert [r.path for r in api.requests()] == ["/users/1", "/users/1/posts"]


async def test_parallel_takes_about_one_call(lamina_server: LocalServer) -> None:
    endpoints = [
        APIEndpoint(name=f"e{i}", url=lamina_server.url_for(f"/json?ms=300&i={i}"))
        for i in range(5)
    ]
    async with APIOrchestrator(config(*endpoints, mode=Mode.PARALLEL)) as orchestrator:
        await orchestrator.execute()  # warm the connection pool and imports
        lamina_server.reset()
        started = time.perf_counter()
        report = await orchestrator.run()
        took = time.perf_counter() - started
    arrivals = lamina_server.arrivals("/json")
    assert len(arrivals) == 5
    assert max(arrivals) - min(arrivals) < 0.15  # all five were in flight together
    assert took < 0.9  # sequentially it would be 1.5 s
    assert report.ok
    assert len(report.critical_path) == 1


async def test_max_concurrent_bounds_calls_in_flight(lamina_server: LocalServer) -> None:
    lock = threading.Lock()
    in_flight = peak = 0

    def slow(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)  # the server thread handles one request at a time per handler call
        with lock:
            in_flight -= 1
        return 200, {"ok": True}, {}

    lamina_server.route("/count", slow)
    endpoints = [
        APIEndpoint(name=f"e{i}", url=lamina_server.url_for(f"/json?ms=100&i={i}"))
        for i in range(6)
    ]
    async with APIOrchestrator(config(*endpoints, mode=Mode.PARALLEL, max_concurrent=2)) as orch:
        report = await orch.run()
    starts = sorted(r.start or 0 for r in report.endpoints.values())
    ends = sorted(r.end or 0 for r in report.endpoints.values())
    # never more than two calls between their start and end at any instant
    for t in starts:
        running = sum(1 for r in report.endpoints.values() if (r.start or 0) <= t < (r.end or 0))
        assert running <= 2
    assert ends[-1] >= 0.29  # three waves of 100 ms


async def test_breaker_stops_calling_a_failing_endpoint(lamina_server: LocalServer) -> None:
    endpoint = APIEndpoint(name="down", url=lamina_server.url_for("/status/503"), retry_count=0)
    cfg = config(endpoint, circuit_breaker_threshold=3, circuit_breaker_timeout=60)
    async with APIOrchestrator(cfg) as orchestrator:
        outcomes = []
        for _ in range(6):
            report = await orchestrator.run()
            outcomes.append(type(report.endpoints["down"].error).__name__)
    assert lamina_server.hits("/status/503") == 3
    assert outcomes == ["HTTPStatusError"] * 3 + ["CircuitOpenError"] * 3


async def test_cache_hit_never_reaches_the_server(api: LocalServer) -> None:
    endpoint = APIEndpoint(name="user", url=api.url_for("/users/7"))
    async with APIOrchestrator(config(endpoint, cache_ttl=60)) as orchestrator:
        first = await orchestrator.run()
        second = await orchestrator.run()
        assert orchestrator.clear_cache("user") == 1
        third = await orchestrator.run()
    assert api.hits("/users/7") == 2
    assert first.endpoints["user"].outcome == "ok"
    assert second.endpoints["user"].outcome == "cached"
    assert third.endpoints["user"].outcome == "ok"
    assert second.value == first.value


async def test_total_timeout(lamina_server: LocalServer) -> None:
    endpoint = APIEndpoint(name="hang", url=lamina_server.url_for("/hang"), timeout=30)
    async with APIOrchestrator(config(endpoint, total_timeout=0.3)) as orchestrator:
        started = time.perf_counter()
        with pytest.raises(OrchestrationTimeout) as info:
            await orchestrator.execute()
        took = time.perf_counter() - started
    assert isinstance(info.value, TimeoutError)
    assert 0.29 <= took < 0.45  # obeyed within 150 ms, even on a loaded machine
    assert info.value.report.endpoints["hang"].outcome in ("failed", "cancelled")
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("lamina:")]


async def test_fail_fast_cancels_in_flight(lamina_server: LocalServer) -> None:
    bad = APIEndpoint(name="bad", url=lamina_server.url_for("/status/404"))
    slow = APIEndpoint(name="slow", url=lamina_server.url_for("/hang"))
    cfg = config(bad, slow, mode=Mode.PARALLEL, fail_fast=True)
    async with APIOrchestrator(cfg) as orchestrator:
        started = time.perf_counter()
        with pytest.raises(EndpointError) as info:
            await orchestrator.execute()
    assert time.perf_counter() - started < 2
    assert info.value.endpoint == "bad"
    assert isinstance(info.value.__cause__, HTTPStatusError)
    assert info.value.report.endpoints["slow"].outcome == "cancelled"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("lamina:")]


async def test_failures_without_fail_fast(lamina_server: LocalServer) -> None:
    bad = APIEndpoint(name="bad", url=lamina_server.url_for("/status/404"))
    handled = APIEndpoint(
        name="handled",
        url=lamina_server.url_for("/status/400"),
        error_handler=lambda e: {"fallback": type(e).__name__},
    )
    after = APIEndpoint(name="after", url=lamina_server.url_for("/json"), depends_on=["bad"])
    ok = APIEndpoint(name="ok", url=lamina_server.url_for("/json"), depends_on=["handled"])
    async with APIOrchestrator(config(bad, handled, after, ok, mode=Mode.HYBRID)) as orch:
        report = await orch.run()
    assert report.value["bad"] is None
    assert report.value["handled"] == {"fallback": "HTTPStatusError"}
    assert report.endpoints["after"].outcome == "skipped"
    assert report.endpoints["ok"].outcome == "ok"
    assert report.failed == ["bad"]
    assert lamina_server.hits("/json") == 1


async def test_error_threshold_stops_the_run(lamina_server: LocalServer) -> None:
    endpoints = [
        APIEndpoint(
            name=f"e{i}",
            url=lamina_server.url_for("/status/404" if i % 3 == 0 else "/json"),
        )
        for i in range(30)
    ]
    cfg = config(*endpoints, mode=Mode.SEQUENTIAL, error_threshold=0.2)
    async with APIOrchestrator(cfg) as orchestrator:
        with pytest.raises(ErrorThresholdExceeded) as info:
            await orchestrator.execute()
    assert info.value.finished >= 10
    assert info.value.failed / info.value.finished > 0.2
    assert lamina_server.hits() == info.value.finished < 30


async def test_one_failure_in_three_does_not_stop_a_small_run(lamina_server: LocalServer) -> None:
    endpoints = [
        APIEndpoint(name="a", url=lamina_server.url_for("/json")),
        APIEndpoint(name="b", url=lamina_server.url_for("/status/404")),
        APIEndpoint(name="c", url=lamina_server.url_for("/json")),
    ]
    async with APIOrchestrator(config(*endpoints, mode=Mode.PARALLEL)) as orchestrator:
        result = await orchestrator.execute()
    assert result["b"] is None
    assert result["a"]
    assert result["c"]


async def test_pipeline_passes_previous_result(lamina_server: LocalServer) -> None:
    first = APIEndpoint(
        name="first",
        url=lamina_server.url_for("/echo"),
        method="POST",
        response_parser=lambda r: {"step": 1, "got": r.json()["body"]},
    )
    second = APIEndpoint(name="second", url=lamina_server.url_for("/echo"), method="POST")
    async with APIOrchestrator(config(first, second, mode=Mode.PIPELINE)) as orchestrator:
        result = await orchestrator.execute({"start": True})
    received = [r.json() for r in lamina_server.requests("/echo")]
    assert received[0] == {"start": True}
    assert received[1] == {"step": 1, "got": '{"start":true}'}
    assert result["second"]["method"] == "POST"


async def test_condition_and_transform_input_see_input_and_results(api: LocalServer) -> None:
    user = APIEndpoint(name="user", url=api.url_for("/users/{user_id}"))
    premium = APIEndpoint(
        name="premium",
        url=api.url_for("/echo"),
        method="POST",
        condition=lambda data: data.get("user_type") == "premium",
    )
    enrich = APIEndpoint(
        name="enrich",
        url=api.url_for("/echo"),
        method="POST",
        transform_input=lambda data: {"id": data["user"]["id"], "name": data["user"]["name"]},
        depends_on=["premium"],
    )
    cfg = config(user, premium, enrich, mode=Mode.CONDITIONAL)
    async with APIOrchestrator(cfg) as orchestrator:
        report = await orchestrator.run({"user_id": 5, "user_type": "basic"})
    assert report.endpoints["premium"].outcome == "skipped"
    assert report.value["premium"] is None
    assert report.endpoints["enrich"].outcome == "ok"  # a skipped dependency is satisfied
    assert api.requests("/echo")[0].json() == {"id": "5", "name": "User 5"}


@pytest.mark.parametrize(
    "value", ["../admin", "a/b", "x?y=1", "#frag", "@evil.com", "..", "%2e%2e"]
)
async def test_url_placeholders_cannot_escape(lamina_server: LocalServer, value: str) -> None:
    endpoint = APIEndpoint(name="e", url=lamina_server.url_for("/echo/{id}/tail?q=1"))
    lamina_server.route("/echo/", lambda req: (200, {"path": req.path, "query": req.query}, {}))
    async with APIOrchestrator(config(endpoint)) as orchestrator:
        result = await orchestrator.execute({"id": value})
    seen = lamina_server.requests()[0]
    assert seen.path.startswith("/echo/")
    assert seen.path.endswith("/tail")
    assert seen.path.count("/") == 3
    assert seen.query == {"q": "1"}
    assert result["e"]["path"] == seen.path


async def test_missing_placeholder_is_reported(lamina_server: LocalServer) -> None:
    endpoint = APIEndpoint(name="e", url=lamina_server.url_for("/users/{user_id}"))
    async with APIOrchestrator(config(endpoint)) as orchestrator:
        report = await orchestrator.run({})
    error = report.endpoints["e"].error
    assert isinstance(error, ConfigError)
    assert "{user_id}" in str(error)
    assert "[e]" in str(error)
    assert lamina_server.hits() == 0


async def test_hybrid_respects_dependencies(lamina_server: LocalServer) -> None:
    a = APIEndpoint(name="a", url=lamina_server.url_for("/json?ms=100&n=a"))
    b = APIEndpoint(name="b", url=lamina_server.url_for("/json?ms=10&n=b"))
    c = APIEndpoint(name="c", url=lamina_server.url_for("/json?n=c"), depends_on=["a", "b"])
    d = APIEndpoint(name="d", url=lamina_server.url_for("/json?n=d"), depends_on=["b"])
    async with APIOrchestrator(config(a, b, c, d, mode=Mode.HYBRID)) as orchestrator:
        report = await orchestrator.run()
    r = report.endpoints
    assert (r["c"].start or 0) >= (r["a"].end or 0)
    assert (r["d"].start or 0) >= (r["b"].end or 0)
    assert (r["d"].start or 0) < (r["a"].end or 0)  # d did not wait for a
    assert report.critical_path == ["a", "c"]


async def test_custom_layers_and_mock_transport() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"url": str(request.url)})

    endpoint = APIEndpoint(name="m", url="http://api.test/x")
    orchestrator = APIOrchestrator(
        config(endpoint),
        layers=[ParseLayer(), TimeoutLayer(1)],
        transport=httpx.MockTransport(handler),
    )
    assert (await orchestrator.execute())["m"] == {"url": "http://api.test/x"}
    layers = APIOrchestrator.default_layers(endpoint, orchestrator.config)
    names = [type(layer).__name__ for layer in layers]
    assert (
        names.index("CacheLayer" if "CacheLayer" in names else "ParseLayer")
        < names.index("RetryLayer")
        < names.index("CircuitBreakerLayer")
        < names.index("TimeoutLayer")
    )
    with pytest.raises(ConfigError, match=r"layers\[0\]"):
        APIOrchestrator(config(endpoint), layers=[object()])  # type: ignore[list-item]
    await orchestrator.aclose()


async def test_concurrent_runs_share_one_orchestrator(api: LocalServer) -> None:
    endpoint = APIEndpoint(name="user", url=api.url_for("/users/{id}"))
    async with APIOrchestrator(config(endpoint)) as orchestrator:
        results = await asyncio.gather(*(orchestrator.execute({"id": i}) for i in range(20)))
    assert [r["user"]["id"] for r in results] == [str(i) for i in range(20)]
    assert orchestrator.get_metrics().total_requests == 20


def test_execute_sync_twice(api: LocalServer) -> None:
    endpoint = APIEndpoint(name="user", url=api.url_for("/users/3"))
    orchestrator = APIOrchestrator(config(endpoint))
    assert orchestrator.execute_sync()["user"]["id"] == "3"
    assert orchestrator.execute_sync()["user"]["id"] == "3"  # a new loop, a new client


async def test_execute_sync_refuses_inside_a_loop(api: LocalServer) -> None:
    orchestrator = APIOrchestrator(config(APIEndpoint(name="u", url=api.url_for("/users/1"))))
    with pytest.raises(RuntimeError, match="await execute"):
        orchestrator.execute_sync()


async def test_result_merger_and_transformer(api: LocalServer) -> None:
    eps = [APIEndpoint(name=n, url=api.url_for(f"/users/{i}")) for i, n in enumerate("ab")]
    cfg = config(
        *eps,
        mode=Mode.PARALLEL,
        result_merger=lambda results: [r["id"] for r in results],
        result_transformer=lambda ids: "+".join(ids),
    )
    async with APIOrchestrator(cfg) as orchestrator:
        assert await orchestrator.execute() == "0+1"


async def test_failed_report_counts_every_attempt(lamina_server: LocalServer) -> None:
    endpoint = APIEndpoint(
        name="down", url=lamina_server.url_for("/status/503"), retry_count=2, retry_delay=0.01
    )
    async with APIOrchestrator(config(endpoint)) as orchestrator:
        report = await orchestrator.run()
    assert lamina_server.hits("/status/503") == 3
    assert report.endpoints["down"].attempts == 3
    assert report.endpoints["down"].status_code == 503


async def test_graph_modes_run_max_concurrent_workers_not_a_task_per_endpoint() -> None:
    seen: list[int] = []

    async def service(request: Any) -> Response:
        seen.append(len([t for t in asyncio.all_tasks() if t.get_name().startswith("lamina:")]))
        await asyncio.sleep(0)
        return Response(200, content=b"1", headers={"content-type": "application/json"})

    endpoints = [APIEndpoint(name=f"e{i}", url=f"http://svc/{i}") for i in range(50)]
    endpoints.append(APIEndpoint(name="last", url="http://svc/last", depends_on=["e49"]))
    cfg = config(*endpoints, mode=Mode.HYBRID, max_concurrent=3, cache_ttl=None)
    async with APIOrchestrator(cfg, transport=service) as orchestrator:
        report = await orchestrator.run()
    assert report.ok
    assert len(seen) == 51
    assert max(seen) == 3
    assert report.order == [*(f"e{i}" for i in range(50)), "last"]
