"""Waiting on one or several limits: fair queues, exact timers, no polling.

Waiters wait on a future; a waiter at the head of its queues gets one timer
(``loop.call_at`` on the loop clock, one ``clock.sleep`` task on any other
clock) for the exact time its slot opens. Nothing polls.

Fairness and several limits: every call gets a ticket number when it starts
waiting. Each limit keeps its waiters sorted by ticket (FIFO), and a waiter
is admitted only at the head of every queue it is in, so a large weight is
never overtaken by a stream of small ones. A call joins its limits one after
another, in the order given: it waits in the second limit's queue only once
the first would admit it, and consumes from all of them at the same instant,
so no capacity is taken while it waits. Because queues are ordered by ticket,
the oldest waiter is at the head of every queue it is in: no deadlock,
whatever order different stacks list shared limits in.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._clock import Clock, LoopClock
from .._errors import RateLimitExceeded
from .bucket import EPSILON

if TYPE_CHECKING:
    from .._core import Request
    from .limiter import Limiter

__all__ = ["run", "wait_for_slot"]

_tickets = itertools.count()


class _Waiter:
    __slots__ = (
        "expired",
        "future",
        "give_up_at",
        "joined",
        "limiters",
        "ticket",
        "timer",
        "timer_at",
        "weight",
    )

    def __init__(self, limiters: Sequence[Limiter], weight: int, give_up_at: float) -> None:
        self.limiters = limiters
        self.weight = weight
        self.give_up_at = give_up_at
        self.ticket = next(_tickets)
        self.future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.joined = 0  # limiters[:joined] have this waiter in their queue
        self.timer: asyncio.TimerHandle | asyncio.Task[None] | None = None
        self.timer_at = math.nan
        self.expired = False


async def wait_for_slot(
    limiters: Sequence[Limiter],
    weight: int,
    *,
    max_wait: float | None,
    deadline: float | None,
    request: Request | None,
) -> float:
    """The waiting part of :func:`acquire_all`, without validation or fast path."""
    clock = limiters[0].clock
    start = clock.now()
    give_up_at = math.inf if max_wait is None else start + max_wait
    by_deadline = deadline is not None and deadline < give_up_at
    if deadline is not None:
        give_up_at = min(give_up_at, deadline)
    waiter = _Waiter(limiters, weight, give_up_at)
    _join(limiters[0], waiter)
    waiter.joined = 1
    run([waiter])
    if not waiter.future.done() and give_up_at < math.inf:
        expiry = _schedule(clock, give_up_at, lambda: _expire(waiter))
        waiter.future.add_done_callback(lambda _: expiry.cancel())
    try:
        granted_at = await waiter.future
    except asyncio.CancelledError:
        if waiter.future.cancelled():
            _leave(waiter)
        elif waiter.future.exception() is None:  # admitted, then cancelled: give it back
            for limiter in limiters:
                limiter._bucket.refund(weight, waiter.future.result())
            run([lim._queue[0] for lim in limiters if lim._queue])
        raise
    except _GiveUp as stop:
        why = "past the call's deadline" if by_deadline else f"more than max_wait={max_wait}s"
        raise RateLimitExceeded(
            f"rate limit {stop.limiter} would delay the call {stop.retry_after:.3g}s, {why}",
            retry_after=stop.retry_after,
            request=request,
        ) from None
    finally:
        _cancel_timer(waiter)
    return max(0.0, granted_at - start)


class _GiveUp(Exception):
    def __init__(self, limiter: Limiter, retry_after: float) -> None:
        self.limiter = limiter
        self.retry_after = retry_after


def run(pending: list[_Waiter]) -> None:
    """Re-examine waiters (and, when one leaves a queue, the new head of that queue)."""
    while pending:
        waiter = pending.pop()
        for limiter in _step(waiter):
            if limiter._queue:
                pending.append(limiter._queue[0])


def _step(w: _Waiter) -> Sequence[Limiter]:
    """Admit, advance, fail or schedule ``w``; return the limiters whose queue it left."""
    if w.future.done():
        return ()
    now = w.limiters[0].clock.now()
    while True:
        at_head, when, blocker = True, now, w.limiters[0]
        for i, limiter in enumerate(w.limiters):
            queue, weight = limiter._queue, w.weight
            if i < w.joined and queue[0] is not w:
                # behind others: they go first, so this is a lower bound
                at_head = False
                if queue[-1] is w:
                    weight = limiter._queued
                else:
                    weight = sum(x.weight for x in queue[: queue.index(w) + 1])
            t = limiter._bucket.earliest(weight, now)
            if t > when:
                when, blocker = t, limiter
        if at_head and when <= now + EPSILON:
            if w.joined < len(w.limiters):
                _join(w.limiters[w.joined], w)
                w.joined += 1
                continue
            # the slot this waiter was woken for (NaN: it never waited)
            due = None if math.isnan(w.timer_at) else w.timer_at
            for limiter in w.limiters:
                limiter._bucket.consume(w.weight, now, due)
            _leave(w, wake=False)
            w.future.set_result(now)
            return w.limiters
        if when > w.give_up_at + EPSILON or w.expired:
            left = w.limiters[: w.joined]
            _leave(w, wake=False)
            w.future.set_exception(_GiveUp(blocker, max(when - now, EPSILON)))
            return left
        if at_head and w.timer_at != when:
            _cancel_timer(w)
            w.timer_at = when
            w.timer = _schedule(w.limiters[0].clock, when, lambda: run([w]))
        return ()


def _expire(w: _Waiter) -> None:
    w.expired = True
    run([w])


def _join(limiter: Limiter, w: _Waiter) -> None:
    queue = limiter._queue
    if not queue or queue[-1].ticket < w.ticket:
        queue.append(w)
    else:  # an older call reaching this limit later goes before younger ones
        queue.insert(next(i for i, x in enumerate(queue) if x.ticket > w.ticket), w)
    limiter._queued += w.weight


def _leave(w: _Waiter, *, wake: bool = True) -> None:
    """Take ``w`` out of every queue it joined; its place goes to the next waiter."""
    heads: list[_Waiter] = []
    for limiter in w.limiters[: w.joined]:
        queue = limiter._queue
        was_head = queue[0] is w
        queue.remove(w)
        limiter._queued -= w.weight
        if was_head and queue:
            heads.append(queue[0])
    w.joined = 0
    _cancel_timer(w)
    if wake and heads:
        run(heads)


def _schedule(
    clock: Clock, when: float, callback: Callable[[], None]
) -> asyncio.TimerHandle | asyncio.Task[None]:
    """Call ``callback`` at ``when`` on ``clock``: a loop timer, or one sleeping task."""
    loop = asyncio.get_running_loop()
    if isinstance(clock, LoopClock):
        return loop.call_at(when, callback)

    async def sleeper() -> None:
        delay = when - clock.now()
        if delay > 0:
            await clock.sleep(delay)
        callback()

    return loop.create_task(sleeper())


def _cancel_timer(w: _Waiter) -> None:
    if w.timer is not None:
        w.timer.cancel()
        w.timer = None
    w.timer_at = math.nan
