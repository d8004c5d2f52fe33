"""Property-based tests (hypothesis) for scheduling, config validation and URL filling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina import (
    APIEndpoint,
    APIOrchestrationConfig,
    APIOrchestrator,
    ConfigError,
    LaminaError,
    OrchestrationMode,
    Request,
)
from lamina.testing import LocalServer
from lamina.transports import AiohttpTransport

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    """A random DAG (edges only to earlier endpoints), mode, and per-endpoint fate."""
    n = draw(st.integers(1, 8))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    return {
        "deps": deps,
        "mode": draw(st.sampled_from(list(OrchestrationMode))),
        "skip": [draw(st.booleans()) for _ in range(n)],
        "fail": [draw(st.integers(0, 4)) == 0 for _ in range(n)],
        "max_concurrent": draw(st.integers(1, 4)),
    }


@FAST
@given(graphs())
def test_random_graphs_respect_dependencies(g: dict[str, Any]) -> None:
    n = len(g["deps"])
    hits: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.path.strip("/")
        hits.append(name)
        return httpx.Response(500 if g["fail"][int(name[1:])] else 200, json={"n": name})

    endpoints = [
        APIEndpoint(
            name=f"e{i}",
            url=f"http://api.test/e{i}",
            retry_count=0,
            depends_on=[f"e{d}" for d in g["deps"][i]] or None,
            condition=(lambda ctx: False) if g["skip"][i] else None,
        )
        for i in range(n)
    ]
    config = APIOrchestrationConfig(
        endpoints=endpoints,
        mode=g["mode"],
        max_concurrent=g["max_concurrent"],
        error_threshold=1.0,
    )

    async def main() -> Any:
        async with APIOrchestrator(config, transport=httpx.MockTransport(handler)) as orch:
            return await orch.run({"input": 1})

    report = asyncio.run(main())
    assert len(hits) == len(set(hits)), "an endpoint ran twice"
    position = {name: i for i, name in enumerate(hits)}
    for i in range(n):
        name = f"e{i}"
        if g["skip"][i]:
            assert name not in position, "a skipped endpoint hit the server"
            assert report.endpoints[name].outcome == "skipped"
        for d in g["deps"][i]:
            dep = f"e{d}"
            if name in position and dep in position:
                assert position[dep] < position[name], "ran before its dependency"
                assert not g["fail"][d], "ran although a dependency failed"
        outcome = report.endpoints[name].outcome
        if name in position:
            assert outcome == ("failed" if g["fail"][i] else "ok")


def test_blocking_is_transitive() -> None:
    hits: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hits.append(request.url.path)
        return httpx.Response(500 if request.url.path == "/e0" else 200, json={})

    config = APIOrchestrationConfig(
        endpoints=[
            APIEndpoint(name="e0", url="http://api.test/e0", retry_count=0),
            APIEndpoint(name="e1", url="http://api.test/e1", depends_on=["e0"]),
            APIEndpoint(name="e2", url="http://api.test/e2", depends_on=["e1"]),
        ],
        mode="hybrid",
    )

    async def main() -> Any:
        async with APIOrchestrator(config, transport=httpx.MockTransport(handler)) as orch:
            return await orch.run()

    report = asyncio.run(main())
    assert report.endpoints["e1"].outcome == "skipped"
    assert hits == ["/e0"], "e2 ran although its dependency chain failed"


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(0, 600), max_size=3),
    st.just({"a": 1}),
    st.just(object()),
)
ENDPOINT_FIELDS = [
    "name",
    "url",
    "method",
    "timeout",
    "retry_count",
    "retry_delay",
    "rate_limit",
    "burst_limit",
    "depends_on",
    "retry_on",
    "headers",
    "params",
    "condition",
    "error_handler",
]
CONFIG_FIELDS = [
    "mode",
    "max_concurrent",
    "total_timeout",
    "error_threshold",
    "circuit_breaker_threshold",
    "circuit_breaker_timeout",
    "cache_ttl",
    "global_rate_limit",
    "rate_limit_window",
    "max_response_bytes",
    "result_merger",
]


@FAST
@given(
    st.dictionaries(st.sampled_from(ENDPOINT_FIELDS), values, max_size=3),
    st.dictionaries(st.sampled_from(CONFIG_FIELDS), values, max_size=3),
)
def test_invalid_configs_raise_only_config_error(
    endpoint_kw: dict[str, Any], config_kw: dict[str, Any]
) -> None:
    for name in ("depends_on", "retry_on"):  # known TypeError: see test_non_iterable_lists
        if name in endpoint_kw and not isinstance(endpoint_kw[name], str | list | dict):
            endpoint_kw.pop(name)
    kw: dict[str, Any] = {"name": "a", "url": "http://api.test/a", **endpoint_kw}
    error: ConfigError | None = None
    try:
        endpoint = APIEndpoint(**kw)
        config = APIOrchestrationConfig(endpoints=[endpoint], **config_kw)
        APIOrchestrator(config, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    except ConfigError as exc:  # anything else fails the test
        error = exc
    assert error is None or error.field, "a ConfigError must name its field"


@pytest.mark.parametrize("field", ["depends_on", "retry_on"])
@pytest.mark.parametrize("value", [False, 5, object()])
def test_non_iterable_lists_are_config_errors(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        APIEndpoint(name="a", url="http://api.test/a", **{field: value})
    assert info.value.field == field


# -- hostile input: placeholder values never escape their segment --------------------

NASTY = [
    "..",
    "%2e%2e",
    "%2E%2E/",
    "../admin",
    "?admin=1",
    "#frag",
    "@evil.test",
    "//evil.test/x",
    "\r\nX-Injected: 1",
    "http://evil.test/",
    "%00",
    "/",
    "\\..\\",
    ";x=1",
    "&fixed=2",
]
placeholder_values = st.lists(
    st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=6)), min_size=1, max_size=4
).map("".join)


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


def _check_target(path: str, query: dict[str, str] | str, host: str, expected_host: str) -> None:
    assert host == expected_host
    assert path.startswith("/users/"), path
    assert path.endswith("/posts"), path
    assert path.count("/") == 3, f"the value escaped its segment: {path}"
    if isinstance(query, str):
        assert query == "fixed=1", query
    else:
        assert query == {"fixed": "1"}, query


@FAST
@given(placeholder_values)
def test_placeholders_never_change_host_path_or_query_httpx(value: str) -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={})

    endpoint = APIEndpoint(
        name="posts", url="http://api.test/users/{user}/posts?fixed=1", retry_count=0
    )
    config = APIOrchestrationConfig(endpoints=[endpoint])

    async def main() -> None:
        async with APIOrchestrator(config, transport=httpx.MockTransport(handler)) as orch:
            await orch.execute({"user": value})

    asyncio.run(main())
    url = seen[0]
    _check_target(url.raw_path.decode().split("?")[0], url.query.decode(), url.host, "api.test")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(placeholder_values)
def test_placeholders_never_change_host_path_or_query_aiohttp(
    hostile_server: LocalServer, value: str
) -> None:
    """yarl would decode %2E%2E and resolve it; AiohttpTransport sends it as encoded."""
    endpoint = APIEndpoint(
        name="posts", url=hostile_server.url + "/users/{user}/posts?fixed=1", retry_count=0
    )
    config = APIOrchestrationConfig(endpoints=[endpoint])
    hostile_server.reset()

    async def main() -> None:
        async with APIOrchestrator(config, transport=AiohttpTransport()) as orch:
            await orch.run({"user": value})

    asyncio.run(main())
    received = hostile_server.requests()
    assert len(received) == 1
    _check_target(received[0].path, received[0].query, "127.0.0.1", "127.0.0.1")


@pytest.mark.parametrize("value", ["..", "%2e%2e", "../../admin"])
async def test_aiohttp_sends_dot_segments_encoded(lamina_server: LocalServer, value: str) -> None:
    async with AiohttpTransport() as transport:
        from lamina.orchestration.urls import fill_url

        url = fill_url(lamina_server.url + "/echo/{v}/x", {"v": value}, endpoint="e")
        await transport(Request("GET", url))
    path = lamina_server.requests()[0].path
    assert path.startswith("/echo/"), path
    assert path.endswith("/x"), path
    assert path.count("/") == 3, path
    assert path == urlsplit(url).path  # sent exactly as filled, never resolved


def test_lamina_errors_are_the_only_run_failures() -> None:
    """Sanity for the property above: a failing endpoint yields a LaminaError, not another."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    config = APIOrchestrationConfig(
        endpoints=[APIEndpoint(name="a", url="http://api.test/a", retry_count=0)], fail_fast=True
    )

    async def main() -> None:
        async with APIOrchestrator(config, transport=httpx.MockTransport(handler)) as orch:
            await orch.execute()

    with pytest.raises(LaminaError):
        asyncio.run(main())
