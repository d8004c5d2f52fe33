"""The in-process :class:`~.store.LimitStore`: a bucket and a fair queue per limit.

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

The store also answers synchronously (:func:`take_now`, :meth:`MemoryLimitStore.peek`,
:meth:`MemoryLimitStore.clear`): a call that finds a unit free costs no await.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..._clock import Clock, LoopClock
from .bucket import EPSILON, Bucket
from .store import LimitStatus, Refused

if TYPE_CHECKING:
    from ..._core import Request
    from .limiter import BaseLimiter

__all__ = ["MemoryLimitStore", "take_now"]

_tickets = itertools.count()


class MemoryLimitStore:
    """One limit's state in this process: a :class:`Bucket` and its waiters, first come
    first served. Built by :class:`~lamina.layers.rate_limit.Limiter`."""

    __slots__ = ("bucket", "clock", "queue", "queued")

    def __init__(self, limiter: BaseLimiter) -> None:
        self.bucket = Bucket(limiter.rate, limiter.period, burst=limiter.burst)
        self.clock: Clock = limiter.clock
        self.queue: list[_Waiter] = []  # sorted by ticket: first come, first served
        self.queued = 0  # the weight waiting in ``queue``

    async def reserve(
        self,
        group: Sequence[MemoryLimitStore],
        weight: int,
        *,
        max_wait: float | None,
        deadline: float | None,
        request: Request | None,
    ) -> float:
        if take_now(group, weight):
            return 0.0
        return await _wait(group, weight, max_wait, deadline)

    async def status(self) -> LimitStatus:
        return self.peek()

    async def reset(self) -> None:
        self.clear()

    def peek(self) -> LimitStatus:
        """Capacity left now and time to the next free unit."""
        bucket, now = self.bucket, self.clock.now()
        available = bucket.available(now)
        retry = 0.0 if available else max(0.0, bucket.earliest(1, now) - now)
        return LimitStatus(
            bucket.rate, bucket.period, bucket.burst, available, retry, len(self.queue)
        )

    def clear(self) -> None:
        """Forget past admissions (the limit is full again); waiters are re-examined."""
        self.bucket.clear()
        if self.queue:
            _run([self.queue[0]])

    def __repr__(self) -> str:
        bucket = self.bucket
        return (
            f"MemoryLimitStore({bucket.describe()}, available={bucket.available(self.clock.now())}"
            f", in_window={bucket.in_window}/{bucket.window}, waiters={len(self.queue)})"
        )


def take_now(group: Sequence[MemoryLimitStore], weight: int) -> bool:
    """Take ``weight`` from every store of ``group`` now if all admit it and none has
    waiters (the sync fast path; the caller checked ``weight``)."""
    now = group[0].clock.now()
    if len(group) == 1:
        store = group[0]
        if store.queue or not store.bucket.fits(weight, now):
            return False
        store.bucket.consume(weight, now)
        return True
    for store in group:
        if store.queue or not store.bucket.fits(weight, now):
            return False
    for store in group:
        store.bucket.consume(weight, now)
    return True


class _Waiter:
    __slots__ = (
        "expired",
        "future",
        "give_up_at",
        "joined",
        "stores",
        "ticket",
        "timer",
        "timer_at",
        "weight",
    )

    def __init__(self, stores: Sequence[MemoryLimitStore], weight: int, give_up_at: float) -> None:
        self.stores = stores
        self.weight = weight
        self.give_up_at = give_up_at
        self.ticket = next(_tickets)
        self.future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.joined = 0  # stores[:joined] have this waiter in their queue
        self.timer: asyncio.TimerHandle | asyncio.Task[None] | None = None
        self.timer_at = math.nan
        self.expired = False


async def _wait(
    stores: Sequence[MemoryLimitStore],
    weight: int,
    max_wait: float | None,
    deadline: float | None,
) -> float:
    """Queue for ``stores`` until all admit ``weight``; :class:`Refused` past the bounds."""
    clock = stores[0].clock
    start = clock.now()
    give_up_at = math.inf if max_wait is None else start + max_wait
    if deadline is not None:
        give_up_at = min(give_up_at, deadline)
    waiter = _Waiter(stores, weight, give_up_at)
    _join(stores[0], waiter)
    waiter.joined = 1
    _run([waiter])
    if not waiter.future.done() and give_up_at < math.inf:
        expiry = _schedule(clock, give_up_at, lambda: _expire(waiter))
        waiter.future.add_done_callback(lambda _: expiry.cancel())
    try:
        granted_at = await waiter.future
    except asyncio.CancelledError:
        if waiter.future.cancelled():
            _leave(waiter)
        elif waiter.future.exception() is None:  # admitted, then cancelled: give it back
            for store in stores:
                store.bucket.refund(weight, waiter.future.result())
            _run([store.queue[0] for store in stores if store.queue])
        raise
    finally:
        _cancel_timer(waiter)
    return max(0.0, granted_at - start)


def _run(pending: list[_Waiter]) -> None:
    """Re-examine waiters (and, when one leaves a queue, the new head of that queue)."""
    while pending:
        waiter = pending.pop()
        for store in _step(waiter):
            if store.queue:
                pending.append(store.queue[0])


def _step(w: _Waiter) -> Sequence[MemoryLimitStore]:
    """Admit, advance, fail or schedule ``w``; return the stores whose queue it left."""
    if w.future.done():
        return ()
    now = w.stores[0].clock.now()
    while True:
        at_head, when, blocker = True, now, 0
        for i, store in enumerate(w.stores):
            queue, weight = store.queue, w.weight
            if i < w.joined and queue[0] is not w:
                # behind others: they go first, so this is a lower bound
                at_head = False
                if queue[-1] is w:
                    weight = store.queued
                else:
                    weight = sum(x.weight for x in queue[: queue.index(w) + 1])
            t = store.bucket.earliest(weight, now)
            if t > when:
                when, blocker = t, i
        if at_head and when <= now + EPSILON:
            if w.joined < len(w.stores):
                _join(w.stores[w.joined], w)
                w.joined += 1
                continue
            # the slot this waiter was woken for (NaN: it never waited)
            due = None if math.isnan(w.timer_at) else w.timer_at
            for store in w.stores:
                store.bucket.consume(w.weight, now, due)
            _leave(w, wake=False)
            w.future.set_result(now)
            return w.stores
        if when > w.give_up_at + EPSILON or w.expired:
            left = w.stores[: w.joined]
            _leave(w, wake=False)
            w.future.set_exception(Refused(blocker, max(when - now, EPSILON)))
            return left
        # (re)arm unless a timer for this very time is still pending; one that fired
        # early (uvloop's clock moves in whole milliseconds) is re-armed, or none wakes it
        if at_head and (w.timer is None or w.timer_at != when):
            _cancel_timer(w)
            w.timer_at = when
            w.timer = _schedule(w.stores[0].clock, when, lambda: _fire(w))
        return ()


def _fire(w: _Waiter) -> None:
    """``w``'s timer ran: it is spent (its time stays, the slot ``w`` was woken for)."""
    w.timer = None
    _run([w])


def _expire(w: _Waiter) -> None:
    w.expired = True
    _run([w])


def _join(store: MemoryLimitStore, w: _Waiter) -> None:
    queue = store.queue
    if not queue or queue[-1].ticket < w.ticket:
        queue.append(w)
    else:  # an older call reaching this limit later goes before younger ones
        queue.insert(next(i for i, x in enumerate(queue) if x.ticket > w.ticket), w)
    store.queued += w.weight


def _leave(w: _Waiter, *, wake: bool = True) -> None:
    """Take ``w`` out of every queue it joined; its place goes to the next waiter."""
    heads: list[_Waiter] = []
    for store in w.stores[: w.joined]:
        queue = store.queue
        was_head = queue[0] is w
        queue.remove(w)
        store.queued -= w.weight
        if was_head and queue:
            heads.append(queue[0])
    w.joined = 0
    _cancel_timer(w)
    if wake and heads:
        _run(heads)


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
