"""Unit tests of revalidation's edges with a scripted upstream (the real-server tests are
in test_revalidation.py and tests/redis/test_cache_revalidation.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from lamina import ConnectError, Request, Response, service_fn
from lamina._events import listen
from lamina.layers.cache import CacheLayer
from lamina.testing import ManualClock

URL = "http://api.test/item"


class Upstream:
    """Answers each call with the next scripted (status, headers) or exception."""

    def __init__(self, *script: tuple[int, dict[str, str]] | Exception) -> None:
        self.script = list(script)
        self.seen: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.seen.append(request)
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        status, headers = item
        body = b"" if status == 304 else b'{"v": %d}' % len(self.seen)
        return Response(status, headers=headers, content=body, request=request, value=body)


def events() -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    seen: list[tuple[str, dict[str, Any]]] = []

    def listener(name: str, attrs: Mapping[str, Any]) -> None:
        seen.append((name, dict(attrs)))

    return seen, listener


async def test_a_304_that_says_no_store_serves_the_body_and_drops_the_entry() -> None:
    clock = ManualClock()
    upstream = Upstream(
        (200, {"ETag": '"a"', "Cache-Control": "max-age=10"}),
        (304, {"ETag": '"a"', "Cache-Control": "no-store"}),
        (200, {"ETag": '"a"', "Cache-Control": "max-age=10"}),
    )
    layer = CacheLayer(ttl=60, clock=clock)
    svc = layer.wrap(service_fn(upstream))
    await svc(Request("GET", URL))
    clock.advance(11)
    seen, listener = events()
    answer = await svc(listen(Request("GET", URL), listener))
    assert answer.status_code == 200
    assert answer.content == b'{"v": 1}'
    assert answer.headers["cache-control"] == "no-store"
    assert ("cache.skip", {"reason": "no-store (response)"}) in seen
    assert len(layer.store) == 0  # type: ignore[arg-type]
    await svc(Request("GET", URL))
    assert "if-none-match" not in upstream.seen[2].headers  # nothing left to revalidate


async def test_the_304_replaces_stored_fields_but_not_the_framing() -> None:
    clock = ManualClock()
    upstream = Upstream(
        (
            200,
            {
                "ETag": '"a"',
                "Cache-Control": "max-age=10",
                "Content-Type": "application/json",
                "X-Version": "1",
            },
        ),
        (
            304,
            {
                "ETag": '"a"',
                "Cache-Control": "max-age=20",
                "Content-Type": "text/plain",
                "Content-Length": "0",
                "X-Version": "2",
            },
        ),
    )
    svc = CacheLayer(ttl=60, clock=clock).wrap(service_fn(upstream))
    await svc(Request("GET", URL))
    clock.advance(11)
    answer = await svc(Request("GET", URL))
    assert answer.headers["x-version"] == "2"
    assert answer.headers["cache-control"] == "max-age=20"
    assert answer.headers["content-type"] == "application/json"
    assert "content-length" not in answer.headers


async def test_a_failed_background_refresh_keeps_the_stale_entry_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    upstream = Upstream(
        (200, {"Cache-Control": "max-age=10, stale-while-revalidate=60"}),
        ConnectError("refused"),
        ConnectError("refused"),
    )
    layer = CacheLayer(ttl=60, clock=clock)
    svc = layer.wrap(service_fn(upstream))
    await svc(Request("GET", URL))
    clock.advance(20)
    with caplog.at_level(logging.WARNING, logger="lamina.cache"):
        stale = await svc(Request("GET", URL))
        await layer.drain()
    assert stale.stale
    assert "background cache refresh of a call failed (ConnectError)" in caplog.text
    again = await svc(Request("GET", URL))
    assert again.stale  # still inside the window: still served, another refresh started
    await layer.drain()
    assert layer.cache.flights.in_flight() == 0  # the refreshes left no call in flight


async def test_background_refresh_drops_the_callers_deadline_and_listeners() -> None:
    clock = ManualClock()
    upstream = Upstream(
        (200, {"Cache-Control": "max-age=10, stale-while-revalidate=60"}),
        (200, {"Cache-Control": "max-age=10"}),
    )
    layer = CacheLayer(ttl=60, clock=clock)
    svc = layer.wrap(service_fn(upstream))
    await svc(Request("GET", URL))
    clock.advance(20)
    seen, listener = events()
    await svc(listen(Request("GET", URL, deadline=clock.now() + 1), listener))
    await layer.drain()
    background = upstream.seen[1]
    assert background.deadline is None
    assert [name for name, _ in seen] == ["cache.stale"]  # nothing after the answer


async def test_refreshes_of_different_keys_run_side_by_side() -> None:
    clock = ManualClock()
    gate = asyncio.Event()
    calls: list[str] = []

    async def slow(request: Request) -> Response:
        calls.append(request.url)
        if len(calls) > 2:  # the refreshes wait until the test opens the gate
            await gate.wait()
        return Response(
            200,
            headers={"Cache-Control": "max-age=10, stale-while-revalidate=60"},
            request=request,
        )

    layer = CacheLayer(ttl=60, clock=clock)
    svc = layer.wrap(service_fn(slow))
    for path in ("a", "b"):
        await svc(Request("GET", f"{URL}/{path}"))
    clock.advance(20)
    for path in ("a", "b", "a", "b"):
        assert (await svc(Request("GET", f"{URL}/{path}"))).stale
    await asyncio.sleep(0)
    assert layer.cache.refreshing() == 2  # one per key, not one per caller
    gate.set()
    await layer.drain()
    assert layer.cache.refreshing() == 0
    assert sorted(calls[2:]) == [f"{URL}/a", f"{URL}/b"]
