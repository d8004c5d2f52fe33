"""Rate limits shared through Redis: one atomic Lua script per acquisition.

:class:`RedisLimitStore` is the :class:`~lamina.layers.rate_limit.LimitStore` of one limit
in Redis. Its script applies the same two rules as the in-memory
:class:`~lamina.layers.rate_limit.bucket.Bucket` - a GCRA token bucket (``burst``
at once, one token every ``period / rate``) and a sliding-window log (at most
``max(ceil(rate), burst)`` in any window of one ``period``) - on the Redis
server's clock (``TIME``, microseconds). Instead of polling, it *reserves*
the earliest slot that satisfies both rules for every limit of the call,
and returns how long until that slot; the caller sleeps exactly that long.
Reservations are handed out in the order calls reach Redis, so callers are
served first come, first served across all processes. A reservation the
caller cannot use (cancelled while sleeping) is given back.

:class:`RedisLimiter` and :class:`RedisRateLimiter` are the in-memory
:class:`~.limiter.Limiter` and :class:`~.categories.InMemoryRateLimiter` on that
store; every question goes to Redis, so their ``try_acquire``, ``status`` and ``reset``
are coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

from ..._clock import Clock
from ..._errors import ConfigError, RateLimitExceeded
from ...backends.redis_connection import PoolWaitExpired, RedisConnection, RedisUnavailable
from .categories import CategoryLimiter, RateLimit, RateLimiterConfig, RateLimitStatus
from .limiter import BaseLimiter, Limiter, acquire_all
from .store import LimitStatus, Refused

if TYPE_CHECKING:
    from ..._core import Request

__all__ = ["RedisLimitStore", "RedisLimiter", "RedisRateLimiter"]

# KEYS: state (hash: tat, sum), log (zset "when:weight:id" scored by when), per limit.
# ARGV: weight, budget_us (-1: unlimited), id, then per limit interval_us, period_us,
# burst, window. Returns {admitted, wait_us, when_us, blocking limit (1-based), now_us}.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local weight, budget, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local n = #KEYS / 2
local when, blocker = now, 1
local tats, sums, ivs, pers = {}, {}, {}, {}
for i = 1, n do
  local skey, lkey = KEYS[2 * i - 1], KEYS[2 * i]
  local a = 3 + (i - 1) * 4
  local interval, period = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local burst, window = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local st = redis.call('HMGET', skey, 'tat', 'sum')
  local tat, sum = tonumber(st[1]) or 0, tonumber(st[2]) or 0
  local old = redis.call('ZRANGEBYSCORE', lkey, '-inf', now - period)
  if #old > 0 then
    for _, m in ipairs(old) do sum = sum - tonumber(string.match(m, '^[^:]+:(%d+)')) end
    redis.call('ZREMRANGEBYSCORE', lkey, '-inf', now - period)
    if sum < 0 then sum = 0 end
  end
  tats[i], sums[i], ivs[i], pers[i] = tat, sum, interval, period
  local t1 = tat + (weight - burst) * interval
  if t1 > when then when, blocker = t1, i end
  local excess = sum + math.min(weight, window) - window
  if excess > 0 then
    local entries = redis.call('ZRANGE', lkey, 0, -1, 'WITHSCORES')
    for j = 1, #entries, 2 do
      excess = excess - tonumber(string.match(entries[j], '^[^:]+:(%d+)'))
      if excess <= 0 then
        local t2 = tonumber(entries[j + 1]) + period
        if t2 > when then when, blocker = t2, i end
        break
      end
    end
  end
  local last = redis.call('ZRANGE', lkey, -1, -1, 'WITHSCORES')
  if #last > 0 and tonumber(last[2]) > when then when = tonumber(last[2]) end
end
when = math.ceil(when)
local wait = when - now
if budget >= 0 and wait > budget then return {0, wait, when, blocker, now} end
local member = string.format('%.0f:%d:%s', when, weight, id)
for i = 1, n do
  local skey, lkey = KEYS[2 * i - 1], KEYS[2 * i]
  local tat = math.max(tats[i], when) + weight * ivs[i]
  redis.call('HSET', skey, 'tat', string.format('%.0f', tat), 'sum', sums[i] + weight)
  redis.call('ZADD', lkey, when, member)
  local ttl = math.ceil((tat - now + pers[i]) / 1000) + 1000
  redis.call('PEXPIRE', skey, ttl)
  redis.call('PEXPIRE', lkey, ttl)
end
return {1, wait, when, blocker, now}
"""

# KEYS: state, log. ARGV: interval_us, period_us, burst, window.
# Returns {available weight now, microseconds until one more unit fits}.
STATUS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local burst, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat')) or 0
local entries = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (now - period), '+inf', 'WITHSCORES')
local sum = 0
for j = 1, #entries, 2 do sum = sum + tonumber(string.match(entries[j], '^[^:]+:(%d+)')) end
local tokens = burst - math.max(0, tat - now) / interval
local available = math.max(0, math.min(math.floor(tokens + 1e-6), window - sum))
local when = math.max(now, tat + (1 - burst) * interval)
local excess = sum + 1 - window
if excess > 0 then
  for j = 1, #entries, 2 do
    excess = excess - tonumber(string.match(entries[j], '^[^:]+:(%d+)'))
    if excess <= 0 then when = math.max(when, tonumber(entries[j + 1]) + period) break end
  end
end
if available > 0 then when = now end
return {available, math.ceil(when - now)}
"""

# KEYS: state, log per limit. ARGV: weight, member, then interval_us per limit.
REFUND = """
local weight, member = tonumber(ARGV[1]), ARGV[2]
for i = 1, #KEYS / 2 do
  local skey, lkey = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('ZREM', lkey, member) == 1 then
    local tat = tonumber(redis.call('HGET', skey, 'tat'))
    if tat then
      tat = tat - weight * tonumber(ARGV[2 + i])
      redis.call('HSET', skey, 'tat', string.format('%.0f', tat))
      redis.call('HINCRBY', skey, 'sum', -weight)
    end
  end
end
return 1
"""

_refunds: set[asyncio.Task[Any]] = set()


def _spec(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class RedisLimitStore:
    """One limit's state in Redis: a hash (``tat``, ``sum``) and a sorted-set log under
    keys named by the limiter's name and rate. Under ``on_error="local"`` the in-process
    :attr:`fallback` limiter of the same rate stands in while Redis is down."""

    __slots__ = ("backend", "clock", "fallback", "keys", "params", "waiting")

    def __init__(self, backend: RedisConnection, limiter: BaseLimiter) -> None:
        name = limiter.name
        if not isinstance(name, str) or not name:
            raise ConfigError("a shared rate limit needs a name (its Redis key)", field="name")
        rate, period, burst = limiter.rate, limiter.period, limiter.burst
        self.backend = backend
        self.clock = limiter.clock
        self.fallback = Limiter(rate, period, burst=burst, clock=limiter.clock, name=name)
        spec = f"{_spec(rate)}per{_spec(period)}s-b{burst}"
        self.keys = (
            backend.key("ratelimit", name, spec, "state"),
            backend.key("ratelimit", name, spec, "log"),
        )
        period_us = period * 1e6
        self.params = (repr(period_us / rate), repr(period_us), burst, limiter.window)
        self.waiting = 0
        """Calls of this process sleeping until their reserved slot."""

    async def reserve(
        self,
        group: Sequence[Self],
        weight: int,
        *,
        max_wait: float | None,
        deadline: float | None,
        request: Request | None,
    ) -> float:
        left = None if deadline is None else max(0.0, deadline - self.clock.now())
        budget = math.inf if max_wait is None else max(0.0, max_wait)
        if left is not None:
            budget = min(budget, left)
        member_id = uuid.uuid4().hex
        keys = [key for store in group for key in store.keys]
        args: list[Any] = [weight, -1 if budget == math.inf else int(budget * 1e6), member_id]
        args.extend(p for store in group for p in store.params)
        try:
            admitted, wait_us, when_us, blocker, _ = await self.backend.script(
                RESERVE, keys, args, max_wait=left
            )
        except RedisUnavailable:
            self.backend.unavailable("rate limit", request)  # raises under on_error="closed"
            if self.backend.on_error == "open":
                return 0.0
            local = [store.fallback for store in group]
            return await acquire_all(
                local, weight, max_wait=max_wait, deadline=deadline, request=request
            )
        except PoolWaitExpired:  # every connection busy until the deadline: not an outage
            reason = (
                "could not be checked before the call's deadline (every redis connection was busy)"
            )
            raise Refused(0, 0.0, reason) from None
        wait = float(wait_us) / 1e6
        if not admitted:
            raise Refused(blocker - 1, wait)
        if wait > 0:
            self.waiting += 1
            try:
                await self.clock.sleep(wait)
            except asyncio.CancelledError:
                member = f"{when_us}:{weight}:{member_id}"
                refund_args = [weight, member, *(store.params[0] for store in group)]
                task = asyncio.ensure_future(self.backend.script(REFUND, keys, refund_args))
                _refunds.add(task)
                task.add_done_callback(_refund_done)
                raise
            finally:
                self.waiting -= 1
        return wait

    async def status(self) -> LimitStatus:
        try:
            available, retry_us = await self.backend.script(STATUS, self.keys, self.params)
        except RedisUnavailable:
            return dataclasses.replace(self.fallback.status(), waiters=0)
        fallback = self.fallback
        return LimitStatus(
            fallback.rate,
            fallback.period,
            fallback.burst,
            int(available),
            retry_us / 1e6,
            self.waiting,
        )

    async def reset(self) -> None:
        self.fallback.reset()
        keys = self.keys
        with contextlib.suppress(RedisUnavailable):
            await self.backend.run(lambda client: client.delete(*keys))

    def __repr__(self) -> str:
        return f"RedisLimitStore({self.keys[0]!r}, waiting={self.waiting})"


def _refund_done(task: asyncio.Task[Any]) -> None:
    _refunds.discard(task)
    if not task.cancelled():
        task.exception()  # a failed refund only costs one slot: nothing to report


class RedisLimiter(BaseLimiter):
    """``rate`` calls per ``period`` seconds shared by every process using
    the same backend, ``name`` and rate; at most ``burst`` at once (default ``rate``).

    Same guarantees as :class:`~lamina.layers.rate_limit.Limiter`, measured on the
    Redis server's clock. When Redis is unavailable the backend's
    ``on_error`` applies; ``"local"`` uses an in-process limiter of the same
    rate, so during an outage each process admits up to the full rate.
    """

    __slots__ = ("backend",)
    store: RedisLimitStore

    def __init__(
        self,
        backend: RedisConnection,
        rate: float | None = None,
        period: float | None = None,
        *,
        per_second: float | None = None,
        per_minute: float | None = None,
        per_hour: float | None = None,
        burst: int | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        self.backend = backend
        super().__init__(
            rate,
            period,
            per_second=per_second,
            per_minute=per_minute,
            per_hour=per_hour,
            burst=burst,
            clock=clock,
            name=name,
            store=lambda limiter: RedisLimitStore(backend, limiter),
        )

    @property
    def fallback(self) -> Limiter:
        """The in-process limiter used under ``on_error="local"`` while Redis is down."""
        return self.store.fallback

    @property
    def waiting(self) -> int:
        """Calls of this process sleeping until their reserved slot."""
        return self.store.waiting

    async def try_acquire(self, weight: int = 1, *, request: Request | None = None) -> bool:
        """Take ``weight`` units now if they are free; never waits."""
        try:
            await acquire_all((self,), weight, max_wait=0.0, request=request)
        except RateLimitExceeded:
            return False
        return True

    async def status(self) -> LimitStatus:
        """Capacity left now and time to the next free unit, across all processes."""
        return await self.store.status()

    async def reset(self) -> None:
        """Forget past admissions everywhere (the limit is full again)."""
        await self.store.reset()

    def check_group(self, limiters: Sequence[object]) -> None:
        """Raise ``ConfigError`` unless ``limiters`` can be acquired together with this one."""
        super().check_group(limiters)
        for limiter in limiters:
            if isinstance(limiter, RedisLimiter) and limiter.backend is not self.backend:
                raise ConfigError("shared limiters must use one backend", field="limiters")

    async def acquire_group(
        self,
        limiters: Sequence[BaseLimiter],
        weight: int = 1,
        *,
        max_wait: float | None = None,
        deadline: float | None = None,
        request: Request | None = None,
    ) -> float:
        """:func:`~lamina.layers.rate_limit.acquire_all`: wait until every limiter admits
        ``weight`` and take it from all at once. Raises :class:`lamina.RateLimitExceeded`
        (with ``retry_after``) at once when the reserved slot would be more than
        ``max_wait`` seconds away or past ``deadline`` (a time on the clock), or when no
        Redis connection came free before ``deadline``; ``ConfigError`` for a weight
        above a limit's burst.
        """
        return await acquire_all(
            limiters, weight, max_wait=max_wait, deadline=deadline, request=request
        )

    def __str__(self) -> str:
        return f"{super().__str__()} (redis)"

    def __repr__(self) -> str:
        return f"<RedisLimiter {self} backend={self.backend!r}>"


class RedisRateLimiter(CategoryLimiter[RedisLimiter]):
    """The reference's ``InMemoryRateLimiter`` API with its state in Redis.

    ``await acquire(category, weight)`` waits until every rate of the
    category admits ``weight`` across all processes sharing the backend.
    Because every question goes to Redis, ``try_acquire``, ``get_status``
    and ``reset`` are coroutines here.
    """

    __slots__ = ("backend",)

    def __init__(
        self,
        config: RateLimiterConfig | None = None,
        *,
        backend: RedisConnection | str,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(config, clock=clock)
        if isinstance(backend, str):
            backend = RedisConnection(backend)
        if not isinstance(backend, RedisConnection):
            raise ConfigError("must be a RedisBackend or a redis:// URL", field="backend")
        self.backend = backend

    def _limiter(self, rate: RateLimit, category: str) -> RedisLimiter:
        return RedisLimiter(
            self.backend,
            rate.limit,
            rate.interval,
            burst=rate.burst,
            clock=self.clock,
            name=category,
        )

    async def try_acquire(self, category: str, weight: int = 1) -> bool:
        """Take ``weight`` now if every rate admits it; never waits."""
        limiters = self.limiters(category)
        if not limiters:
            return True
        try:
            await acquire_all(limiters, weight, max_wait=0.0)
        except RateLimitExceeded:
            return False
        return True

    async def get_status(self, category: str) -> RateLimitStatus:
        """Capacity left and time to the next slot, per rate, across all processes."""
        statuses = [await limiter.status() for limiter in self.limiters(category)]
        return RateLimitStatus(category, tuple(statuses))

    async def reset(self, category: str | None = None) -> None:
        """Forget past admissions of one category, or of every category used here."""
        names = [category] if category is not None else list(self._limiters)
        for name in names:
            for limiter in self.limiters(name):
                await limiter.reset()

    def __repr__(self) -> str:
        return f"<RedisRateLimiter categories={len(self._limiters)} backend={self.backend!r}>"
