"""The storage seam: any LimitStore behind BaseLimiter, and the memory store's sync fast path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from lamina import ConfigError, RateLimitExceeded, Request, Response, ServiceBuilder
from lamina._events import listen
from lamina.layers.rate_limit import (
    BaseLimiter,
    Limiter,
    LimitStatus,
    MemoryLimitStore,
    RateLimitLayer,
    RateLimitService,
    Refused,
    acquire_all,
)
from lamina.testing import ManualClock


async def ok(request: Request) -> Response:
    return Response(200, request=request)


class ScriptedStore:
    """Answers each reservation with the next scripted reply: seconds waited or a Refused."""

    replies: ClassVar[list[float | Refused]] = []

    def __init__(self, limiter: BaseLimiter) -> None:
        self.limiter = limiter
        self.calls: list[tuple[int, int, float | None, float | None]] = []

    async def reserve(
        self,
        group: Sequence[ScriptedStore],
        weight: int,
        *,
        max_wait: float | None,
        deadline: float | None,
        request: Request | None,
    ) -> float:
        self.calls.append((len(group), weight, max_wait, deadline))
        reply = self.replies.pop(0)
        if isinstance(reply, Refused):
            raise reply
        return reply

    async def status(self) -> LimitStatus:
        limiter = self.limiter
        return LimitStatus(limiter.rate, limiter.period, limiter.burst, 1, 0.0, 0)

    async def reset(self) -> None:
        pass


async def test_a_custom_store_serves_the_layer(manual_clock: ManualClock) -> None:
    first = BaseLimiter(10, 60, name="own", clock=manual_clock, store=ScriptedStore)
    second = BaseLimiter(5, 1, name="wide", clock=manual_clock, store=ScriptedStore)
    ScriptedStore.replies = [0.0, 0.25, Refused(1, 3.0), Refused(0, 0.0, "is closed today")]
    svc = ServiceBuilder().layer(RateLimitLayer(limiters=[first, second], max_wait=2)).service(ok)
    assert isinstance(RateLimitLayer(limiters=[first]).wrap(ok), RateLimitService)
    events: list[tuple[str, Mapping[str, Any]]] = []
    for _ in range(2):
        request = listen(Request("GET", "http://x/"), lambda n, a: events.append((n, a)))
        assert (await svc(request)).status_code == 200
    assert events == [("ratelimit.wait", {"seconds": 0.25})]  # only a call that waited
    with pytest.raises(RateLimitExceeded) as info:
        await svc(Request("GET", "http://x/", endpoint="e"))
    assert info.value.retry_after == 3.0
    assert "'wide' 5/s burst=5 would delay the call 3s, more than max_wait=2.0s" in str(info.value)
    with pytest.raises(RateLimitExceeded, match="'own' 10/min burst=10 is closed today"):
        await svc(Request("GET", "http://x/", deadline=1.0))
    assert isinstance(first.store, ScriptedStore)
    # the first limit's store reserves for the whole group, with the call's bounds
    assert first.store.calls[-1] == (2, 1, 2.0, 1.0)
    assert second.store.calls == []


def test_limits_of_different_stores_do_not_mix(manual_clock: ManualClock) -> None:
    custom = BaseLimiter(10, 60, name="own", clock=manual_clock, store=ScriptedStore)
    memory = Limiter(10, 60, clock=manual_clock)
    with pytest.raises(ConfigError, match="cannot mix Limiter with BaseLimiter") as info:
        RateLimitLayer(limiters=[custom, memory])
    assert info.value.field == "limiters"


async def test_weight_is_checked_before_any_store_is_asked(manual_clock: ManualClock) -> None:
    custom = BaseLimiter(10, 60, burst=2, clock=manual_clock, store=ScriptedStore)
    ScriptedStore.replies = []
    for weight, message in ((3, "capacity"), (0, "weight"), (True, "weight")):
        with pytest.raises(ConfigError, match=message):
            await acquire_all([custom], weight)
    assert isinstance(custom.store, ScriptedStore)
    assert custom.store.calls == []


def test_a_free_unit_is_taken_without_suspending(manual_clock: ManualClock) -> None:
    """The default stack's case: an in-memory limit that does not bind costs no await."""
    limiter = Limiter(2, 1, clock=manual_clock)
    svc = RateLimitLayer(limiters=[limiter, Limiter(5, 1, clock=manual_clock)]).wrap(ok)
    for _ in range(2):
        call = svc(Request("GET", "http://x/"))
        with pytest.raises(StopIteration):  # ran to the end on the first step
            call.send(None)
    assert limiter.status().available == 0
    assert isinstance(limiter.store, MemoryLimitStore)
    assert "waiters=0" in repr(limiter.store)


async def test_memory_store_async_answers_match_the_sync_ones(manual_clock: ManualClock) -> None:
    limiter = Limiter(10, 60, burst=5, clock=manual_clock)
    assert await limiter.acquire(5) == 0.0
    assert await limiter.store.status() == limiter.status()
    assert limiter.status().retry_after == pytest.approx(6)
    await limiter.store.reset()
    assert limiter.status().available == 5
