import json

from lamina import (
    APIOrchestrationConfig,
    IOMetrics,
    create_graphql_orchestrator,
    create_parallel_aggregator,
    create_rest_api_orchestrator,
    create_sequential_api_chain,
)
from lamina.testing import LocalServer, RecordedRequest


async def test_sequential_chain_sends_headers_in_order(api: LocalServer) -> None:
    orchestrator = create_sequential_api_chain(
        endpoints=[
            ("auth", api.url_for("/echo?step=auth")),
            ("user", api.url_for("/users/1")),
            ("profile", api.url_for("/status/404")),
            ("after", api.url_for("/json")),
        ],
        headers={"API-Key": "secret-key-123"},
    )
    async with orchestrator:
        report = await orchestrator.run({"username": "user@example.com"})
    assert [r.path for r in api.requests()] == ["/echo", "/users/1", "/status/404"]
    assert api.requests("/echo")[0].headers["api-key"] == "secret-key-123"
    assert report.endpoints["after"].outcome == "skipped"  # the chain broke at profile
    assert "secret-key-123" not in repr(orchestrator.config)


async def test_parallel_aggregator(api: LocalServer) -> None:
    orchestrator = create_parallel_aggregator(
        endpoints=[(f"service{i}", api.url_for(f"/users/{i}")) for i in range(1, 4)],
        max_concurrent=3,
        timeout=10.0,
    )
    async with orchestrator:
        aggregated = await orchestrator.execute()
    assert sorted(aggregated) == ["service1", "service2", "service3"]
    assert aggregated["service2"]["id"] == "2"


async def test_rest_orchestrator(api: LocalServer) -> None:
    orchestrator = create_rest_api_orchestrator(
        api.url,
        [
            {"name": "user", "path": "/users/9"},
            {"name": "echo", "path": "echo", "method": "POST", "body": {"a": 1}},
        ],
        auth_token="tok-abcdef",
        rate_limit=600,
    )
    assert isinstance(orchestrator.config, APIOrchestrationConfig)
    async with orchestrator:
        result = await orchestrator.execute()
    assert result["user"]["id"] == "9"
    assert api.requests("/echo")[0].headers["authorization"] == "Bearer tok-abcdef"
    assert api.requests("/echo")[0].json() == {"a": 1}


def graphql(req: RecordedRequest) -> tuple[int, object, dict[str, str]]:
    body = req.json()
    if isinstance(body, list):
        return 200, [{"data": {"echo": op["variables"]}} for op in body], {}
    if "fail" in body["query"]:
        return 200, {"errors": [{"message": "no such field"}], "data": None}, {}
    return 200, {"data": {"echo": body["variables"]}}, {}


async def test_graphql_batched_and_not(lamina_server: LocalServer) -> None:
    lamina_server.route("/graphql", graphql)
    url = lamina_server.url_for("/graphql")
    queries = [
        {"name": "a", "query": "query A { echo }", "variables": {"x": 1}},
        {"name": "b", "query": "query B { echo }", "variables": {"y": 2}},
    ]
    async with create_graphql_orchestrator(url, queries) as batched:
        result = await batched.execute()
    assert result["graphql_batch"] == [{"echo": {"x": 1}}, {"echo": {"y": 2}}]
    assert lamina_server.hits("/graphql") == 1
    failing = [*queries, {"name": "c", "query": "query fail { x }"}]
    async with create_graphql_orchestrator(url, failing, batch_queries=False) as separate:
        report = await separate.run()
    assert report.value["a"] == {"echo": {"x": 1}}
    assert report.endpoints["c"].outcome == "failed"
    assert "no such field" in json.dumps(str(report.endpoints["c"].error))


def test_custom_metrics_like_the_reference() -> None:
    metrics = IOMetrics()
    metrics.record_request("custom_api", latency=150)
    metrics.record_error("custom_api", error_type="timeout")
    assert metrics.total_requests >= 1
    assert 0 <= metrics.error_rate <= 1
