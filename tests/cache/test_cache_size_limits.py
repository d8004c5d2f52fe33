"""Stacks with different body limits sharing one cache never serve each other an entry
their own transport would refuse (``max_response_bytes``), nor does a Redis store read an
entry larger than its own ``max_value_bytes``. Real local server, every transport."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lamina import Request, ResponseTooLarge, ServiceBuilder
from lamina.layers.cache import CacheLayer, SharedCache
from lamina.layers.parse import ParseLayer
from lamina.layers.timeout import TimeoutLayer
from lamina.testing import LocalServer, ManualClock

pytestmark = pytest.mark.timeout(30)


def big(server: LocalServer, size: int = 5000) -> Request:
    return Request("GET", server.url_for(f"/large?bytes={size}"), endpoint="big")


def hits(server: LocalServer) -> int:
    return server.hits("/large")


async def test_an_entry_over_a_stacks_limit_is_not_served_to_it(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    shared = SharedCache(clock=ManualClock())
    roomy = CacheLayer(cache=shared).wrap(
        ParseLayer(max_response_bytes=1 << 20).wrap(transport_factory())
    )
    tight = CacheLayer(cache=shared).wrap(
        ParseLayer(max_response_bytes=1000).wrap(transport_factory())
    )
    before = hits(lamina_server)
    assert len((await roomy(big(lamina_server))).content) == 5000  # stored
    with pytest.raises(ResponseTooLarge):
        await tight(big(lamina_server))  # as without a cache: its own transport refuses it
    assert hits(lamina_server) - before == 2
    assert (await roomy(big(lamina_server))).from_cache  # the entry is still there
    small = await tight(big(lamina_server, 800))  # under the limit: cached as usual
    assert (await tight(big(lamina_server, 800))).from_cache
    assert len(small.content) == 800
    assert hits(lamina_server) - before == 3


async def test_the_limit_is_found_below_other_layers_and_on_a_bare_transport(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    shared = SharedCache(clock=ManualClock())
    roomy = CacheLayer(cache=shared).wrap(transport_factory(max_response_bytes=1 << 20))
    # the cache above a timeout above the transport: the transport's own limit
    tight = (
        ServiceBuilder()
        .layer(CacheLayer(cache=shared))
        .layer(TimeoutLayer(5.0))
        .service(transport_factory(max_response_bytes=1000))
    )
    await roomy(big(lamina_server))
    with pytest.raises(ResponseTooLarge):
        await tight(big(lamina_server))


async def test_a_follower_over_its_limit_does_not_share_a_leaders_large_answer(
    lamina_server: LocalServer, transport_factory: Any
) -> None:
    shared = SharedCache(clock=ManualClock())
    roomy = CacheLayer(cache=shared).wrap(
        ParseLayer(max_response_bytes=1 << 20).wrap(transport_factory())
    )
    tight = CacheLayer(cache=shared).wrap(
        ParseLayer(max_response_bytes=1000).wrap(transport_factory())
    )
    slow = Request("GET", lamina_server.url_for("/large?bytes=5000&ms=200"), endpoint="big")
    again = Request("GET", lamina_server.url_for("/large?bytes=5000&ms=200"), endpoint="big")
    leader = asyncio.create_task(roomy(slow))
    await asyncio.sleep(0)  # the leader's call is in flight: the next one joins it
    results = await asyncio.gather(tight(again), leader, return_exceptions=True)
    assert isinstance(results[0], ResponseTooLarge)
    assert len(results[1].content) == 5000  # type: ignore[union-attr]
