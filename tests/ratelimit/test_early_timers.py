"""A loop timer may fire a little before its time (uvloop's clock moves in whole
milliseconds): a waiting limiter call is then woken again, never left asleep."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lamina.layers.rate_limit import Limiter


class EarlyTimersLoop(asyncio.SelectorEventLoop):
    """Every timer fires 5 ms before its time (uvloop's fire up to 1 ms early)."""

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> Any:
        return super().call_at(when - 0.005, callback, *args, context=context)


async def take(limiter: Limiter, n: int) -> list[float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    times = []
    for _ in range(n):
        await limiter.acquire()
        times.append(loop.time() - started)
    return times


@pytest.mark.parametrize("callers", [1, 3])
def test_a_timer_that_fires_early_is_armed_again(callers: int) -> None:
    async def main() -> list[list[float]]:
        limiter = Limiter(1, 0.02, burst=1)  # one call per 20 ms
        calls = asyncio.gather(*(take(limiter, 4) for _ in range(callers)))
        return await asyncio.wait_for(calls, timeout=10)  # a woken-early waiter hung here

    with asyncio.Runner(loop_factory=EarlyTimersLoop) as runner:
        times = runner.run(main())
    admitted = sorted(t for per_caller in times for t in per_caller)
    assert len(admitted) == 4 * callers
    # spaced by the rate: the n-th call no sooner than (n - 1) x 20 ms, less the early firing
    for n, at in enumerate(admitted):
        assert at >= n * 0.02 - 0.0051


def test_on_uvloop_too() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> list[list[float]]:
        limiter = Limiter(1, 0.005, burst=1)
        return await asyncio.wait_for(
            asyncio.gather(*(take(limiter, 20) for _ in range(4))), timeout=10
        )

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        times = runner.run(main())
    assert sum(len(t) for t in times) == 80
