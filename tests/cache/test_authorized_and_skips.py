"""Issue 14.4: a TTL caches authorized responses per caller, ``no-store`` still wins, and
a response that is not stored says why (``cache.skip``), on every transport."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, Request, Response
from lamina._events import listen
from lamina.layers.cache import CacheLayer, store_decision
from lamina.layers.parse import ParseLayer
from lamina.testing import LocalServer, RecordedRequest

TOKEN_A = "Bearer alice-0c1d2e3f4a5b"
TOKEN_B = "Bearer bob-9f8e7d6c5b4a"
ANON = Request("GET", "http://api.test/x")
AUTHED = Request("GET", "http://api.test/x", headers={"Authorization": TOKEN_A})


def resp(status: int = 200, **headers: str) -> Response:
    return Response(status, headers={k.replace("_", "-"): v for k, v in headers.items()})


@pytest.mark.parametrize(
    ("request_", "response", "options", "reason"),
    [
        (ANON, resp(404), {}, "status 404"),
        (
            Request("GET", "http://a.test/", headers={"Cache-Control": "no-store"}),
            resp(),
            {},
            "no-store (request)",
        ),
        (AUTHED, resp(Cache_Control="no-store"), {}, "no-store (response)"),
        (ANON, resp(Vary="*"), {}, "Vary: *"),
        (
            ANON,
            resp(Cache_Control="private"),
            {},
            "private (the request does not identify its caller)",
        ),
        (AUTHED, resp(Cache_Control="private"), {"cache_authorized": False}, "private"),
        (AUTHED, resp(), {"cache_authorized": False}, "Authorization (cache_authorized=False)"),
        (ANON, resp(Cache_Control="max-age=0"), {}, "lifetime 0"),
        (ANON, resp(Cache_Control="no-cache"), {}, "no-cache without a validator"),
    ],
)
def test_every_refusal_has_a_reason(
    request_: Request, response: Response, options: dict[str, Any], reason: str
) -> None:
    decision = store_decision(request_, response, ttl=60, **options)
    assert isinstance(decision, str)
    assert decision.startswith(reason)


def test_authorized_is_stored_by_default_and_private_for_an_identified_caller() -> None:
    assert not isinstance(store_decision(AUTHED, resp(), ttl=60), str)
    assert not isinstance(store_decision(AUTHED, resp(Cache_Control="private"), ttl=60), str)
    revalidated = store_decision(ANON, resp(Cache_Control="no-cache", ETag='"1"'), ttl=60)
    assert not isinstance(revalidated, str)
    assert revalidated.ttl == 0
    assert revalidated.validated


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, attrs: Mapping[str, Any]) -> None:
        self.seen.append((name, dict(attrs)))

    def reasons(self) -> list[str]:
        return [attrs["reason"] for name, attrs in self.seen if name == "cache.skip"]


def _cc(req: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
    headers = {"Cache-Control": req.query["cc"]} if "cc" in req.query else {}
    return 200, {"who": req.headers.get("authorization")}, headers


@pytest.fixture
def server(lamina_server: LocalServer) -> LocalServer:
    lamina_server.route("/who/", _cc)
    return lamina_server


async def test_authorized_calls_are_cached_per_caller_on_the_real_server(
    server: LocalServer, transport_factory: Any
) -> None:
    svc = CacheLayer(ttl=60).wrap(ParseLayer().wrap(transport_factory()))

    def call(token: str | None, path: str = "/who/me") -> Request:
        headers = {"Authorization": token} if token else {}
        return Request("GET", server.url_for(path), endpoint="who", headers=headers)

    alice = await svc(call(TOKEN_A))
    bob = await svc(call(TOKEN_B))
    assert (alice.value["who"], bob.value["who"]) == (TOKEN_A, TOKEN_B)
    again = await svc(call(TOKEN_A))
    assert again.from_cache
    assert again.value["who"] == TOKEN_A
    assert (await svc(call(TOKEN_B))).value["who"] == TOKEN_B
    assert server.hits("/who/me") == 2
    # no-store still wins, and says so
    events = Events()
    for _ in range(2):
        events_request = listen(call(TOKEN_A, "/who/never?cc=no-store"), events)
        assert not (await svc(events_request)).from_cache
    assert server.hits("/who/never") == 2
    assert events.reasons() == ["no-store (response)"] * 2


async def test_cache_skip_events_name_the_reason(
    server: LocalServer, transport_factory: Any
) -> None:
    strict = CacheLayer(ttl=60, cache_authorized=False).wrap(ParseLayer().wrap(transport_factory()))
    events = Events()
    request = Request(
        "GET", server.url_for("/who/x"), endpoint="who", headers={"Authorization": TOKEN_A}
    )
    await strict(listen(request, events))
    await strict(listen(request.replace(method="POST"), events))
    await strict(listen(request.replace(extensions={"lamina.cache": "bypass"}), events))
    assert events.reasons() == ["Authorization (cache_authorized=False)", "method POST", "bypass"]
    for _, attrs in events.seen:
        assert "alice" not in repr(attrs)


async def test_the_orchestrator_caches_an_authorized_endpoint_per_caller(
    server: LocalServer, transport_factory: Any
) -> None:
    """The shipped user_enrichment flow's case: ``cache_ttl`` with an Authorization header."""

    def config(token: str) -> APIOrchestrationConfig:
        user = APIEndpoint(
            name="user", url=server.url_for("/who/user"), headers={"Authorization": token}
        )
        return APIOrchestrationConfig(endpoints=[user], cache_ttl=60)

    async with APIOrchestrator(config(TOKEN_A), transport=transport_factory()) as orchestrator:
        first = await orchestrator.run()
        second = await orchestrator.run()
    assert first.endpoints["user"].outcome == "ok"
    assert second.endpoints["user"].outcome == "cached"
    assert second.value["user"] == {"who": TOKEN_A}
    assert server.hits("/who/user") == 1


async def test_the_run_report_says_why_a_call_was_not_cached(
    server: LocalServer, transport_factory: Any
) -> None:
    endpoints = [
        APIEndpoint(name="never", url=server.url_for("/who/never?cc=no-store")),
        APIEndpoint(name="kept", url=server.url_for("/who/kept")),
    ]
    config = APIOrchestrationConfig(endpoints=endpoints, cache_ttl=60)
    async with APIOrchestrator(config, transport=transport_factory()) as orchestrator:
        report = await orchestrator.run()
    never, kept = report.endpoints["never"], report.endpoints["kept"]
    assert never.outcome == "ok"
    assert never.reason == "not cached: no-store (response)"
    assert kept.reason is None
    assert "not cached: no-store (response)" in report.summary()
    assert report.to_dict()["endpoints"][0]["reason"] == "not cached: no-store (response)"
