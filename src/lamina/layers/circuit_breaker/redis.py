"""Circuit-breaker records in Redis, one Lua script per transition.

The record of breaker ``name`` is one hash, ``{prefix}:v1:breaker:{name}``,
with ``state``, ``failures``, ``opened`` (microseconds, Redis server clock)
and, while half-open, ``probe`` (the probe's token) and ``probe_until``.
Each acquire and each release is one script, so the threshold is checked
against the count the script itself just incremented: ten processes failing
at once with ``threshold=5`` open the breaker at exactly five counted
failures (the later ones find it open and are not counted). Time is the
Redis server's ``TIME``, so hosts with skewed clocks agree on when the
breaker half-opens; the half-open probe slot is taken atomically, so exactly
one process probes (a probe that never reports back frees its slot after
``probe_lease`` seconds). Every write refreshes the key's TTL.

A Redis failure never replaces the upstream outcome: ``release`` never
raises. ``acquire`` follows the backend's ``on_error`` policy.
"""

from __future__ import annotations

import uuid
from typing import Any

from ... import _validate as check
from ..._errors import ConfigError
from ...backends.redis_connection import RedisConnection, RedisUnavailable
from .machine import BreakerMachine, BreakerRecord, CircuitState, Outcome, Permit, Transition
from .store import MemoryBreakerStore

__all__ = ["RedisBreakerStore"]

# KEYS: record. ARGV: timeout_us, lease_us, token, ttl_ms.
# Returns {admitted, probe, retry_us, old, new, failures, opened_us, now_us, state}.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local timeout, lease, token, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local h = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened', 'probe', 'probe_until')
local state = h[1] or 'closed'
local failures, opened = tonumber(h[2]) or 0, tonumber(h[3]) or 0
if state == 'closed' then return {1, 0, 0, '', '', failures, opened, now, state} end
local old, new = '', ''
local probe = h[4]
if state == 'open' then
  local remaining = opened + timeout - now
  if remaining > 0 then return {0, 0, remaining, '', '', failures, opened, now, state} end
  state, old, new, probe = 'half_open', 'open', 'half_open', false
  redis.call('HSET', KEYS[1], 'state', state)
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
end
if probe and (tonumber(h[5]) or 0) > now then
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {0, 0, timeout, old, new, failures, opened, now, state}
end
redis.call('HSET', KEYS[1], 'probe', token, 'probe_until', string.format('%.0f', now + lease))
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, 1, 0, old, new, failures, opened, now, state}
"""

# KEYS: record. ARGV: outcome, token ('' unless the probe), threshold, ttl_ms.
# Returns {old, new, failures, opened_us, now_us, state}.
RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local outcome, token, threshold, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local h = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened', 'probe')
local state = h[1] or 'closed'
local failures, opened = tonumber(h[2]) or 0, tonumber(h[3]) or 0
local stamp = string.format('%.0f', now)
if token ~= '' then
  if h[4] ~= token then return {'', '', failures, opened, now, state} end
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
  redis.call('PEXPIRE', KEYS[1], ttl)
  if state ~= 'half_open' or outcome == 'neutral' then
    return {'', '', failures, opened, now, state}
  end
  if outcome == 'success' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'opened', 0)
    return {'half_open', 'closed', 0, 0, now, 'closed'}
  end
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened', stamp, 'failures', failures + 1)
  return {'half_open', 'open', failures + 1, now, now, 'open'}
end
if state ~= 'closed' or outcome == 'neutral' then return {'', '', failures, opened, now, state} end
-- a weak failure (a timeout mostly spent waiting for a connection) never starts a run
if outcome == 'weak_failure' and failures == 0 then return {'', '', 0, opened, now, state} end
if outcome == 'success' then
  if failures > 0 then
    redis.call('HSET', KEYS[1], 'failures', 0)
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  return {'', '', 0, opened, now, state}
end
failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= threshold then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened', stamp)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {'closed', 'open', failures, now, now, 'open'}
end
redis.call('HSET', KEYS[1], 'state', 'closed')
redis.call('PEXPIRE', KEYS[1], ttl)
return {'', '', failures, opened, now, 'closed'}
"""

# KEYS: record. Returns the state it had.
RESET = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
redis.call('DEL', KEYS[1])
return state
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBreakerStore:
    """A :class:`~.store.BreakerStore` whose records live in Redis.

    Pass it as ``CircuitBreakerLayer(backend=...)`` or
    ``CircuitBreaker(backend=...)``. ``probe_lease`` (default: the breaker's
    timeout) bounds how long a half-open probe may hold the slot; ``ttl``
    (default one day) is how long an untouched record is kept. Under
    ``on_error="local"`` an in-process :class:`~.store.MemoryBreakerStore`
    stands in while Redis is down.
    """

    __slots__ = ("_fallback", "_seeded", "_seen", "backend", "probe_lease", "ttl")

    def __init__(
        self,
        backend: RedisConnection | str,
        *,
        probe_lease: float | None = None,
        ttl: float = 86400.0,
    ) -> None:
        if isinstance(backend, str):
            backend = RedisConnection(backend)
        if not isinstance(backend, RedisConnection):
            raise ConfigError("must be a RedisBackend or a redis:// URL", field="backend")
        self.backend = backend
        self.probe_lease = (
            None if probe_lease is None else check.seconds(probe_lease, "probe_lease", high=86400)
        )
        self.ttl = check.seconds(ttl, "ttl", low=1)
        self._fallback = MemoryBreakerStore()
        self._seen: dict[str, BreakerRecord] = {}
        self._seeded: dict[str, int] = {}  # name -> the outage its local record started in

    def key(self, name: str) -> str:
        """The Redis key of breaker ``name``."""
        return self.backend.key("breaker", name)

    def _ttl_ms(self, machine: BreakerMachine) -> int:
        lease = self.probe_lease or machine.timeout
        return int(max(self.ttl, 2 * (machine.timeout + lease)) * 1000)

    def peek(self, name: str) -> BreakerRecord:
        """The record as this process last saw it (opened_at on the caller's clock)."""
        if self.backend.on_error == "local" and not self.backend.available:
            self._local(name)
            return self._fallback.peek(name)
        rec = self._seen.get(name)
        if rec is None:
            rec = self._seen[name] = BreakerRecord()
        return rec

    def _remember(
        self,
        name: str,
        state: Any,
        failures: int,
        opened_us: int,
        now_us: int,
        now: float,
        probe: bool | None = None,
    ) -> None:
        rec = self._seen.get(name) or BreakerRecord()
        rec.state = CircuitState(_text(state))
        rec.failure_count = int(failures)
        rec.opened_at = now - (now_us - opened_us) / 1e6 if int(opened_us) else None
        if probe is not None:
            rec.probe_in_flight = probe
        self._seen[name] = rec

    def _local(self, name: str) -> None:
        """At the first fallback of an outage, start the local record from the state last
        seen in Redis: an open breaker stays open (a half-open one lets one local probe
        through) instead of every process starting closed."""
        episode = self.backend.outages
        if self._seeded.get(name) == episode:
            return
        self._seeded[name] = episode
        rec = self._fallback.peek(name)
        seen = self._seen.get(name) or BreakerRecord()
        rec.state, rec.failure_count, rec.opened_at = seen.state, seen.failure_count, seen.opened_at
        rec.probe_in_flight = False

    async def acquire(
        self, name: str, machine: BreakerMachine, now: float
    ) -> tuple[Permit, Transition | None]:
        token = uuid.uuid4().hex
        lease = self.probe_lease or machine.timeout
        args = [int(machine.timeout * 1e6), int(lease * 1e6), token, self._ttl_ms(machine)]
        try:
            reply = await self.backend.script(ACQUIRE, [self.key(name)], args)
        except RedisUnavailable:
            self.backend.unavailable("circuit breaker", None)  # raises under "closed"
            if self.backend.on_error == "open":
                return Permit(admitted=True), None
            self._local(name)
            return await self._fallback.acquire(name, machine, now)
        admitted, probe, retry_us, old, new, failures, opened_us, now_us, state = reply
        self._remember(name, state, failures, opened_us, now_us, now, bool(probe) or None)
        change = (CircuitState(_text(old)), CircuitState(_text(new))) if _text(old) else None
        permit = Permit(
            admitted=bool(admitted),
            probe=bool(probe),
            retry_after=retry_us / 1e6,
            token=token if probe else None,
        )
        return permit, change

    async def release(
        self, name: str, machine: BreakerMachine, permit: Permit, outcome: Outcome, now: float
    ) -> Transition | None:
        if permit.probe and permit.token is None:  # a probe the local fallback granted
            return await self._fallback.release(name, machine, permit, outcome, now)
        args = [outcome.value, permit.token or "", machine.threshold, self._ttl_ms(machine)]
        try:
            reply = await self.backend.script(RELEASE, [self.key(name)], args)
        except RedisUnavailable:
            # Never raise here: the upstream outcome stands, whatever Redis does.
            self.backend.unavailable("circuit breaker", None, reject=False)
            if self.backend.on_error != "local":
                return None
            self._local(name)
            return await self._fallback.release(name, machine, Permit(True), outcome, now)
        old, new, failures, opened_us, now_us, state = reply
        self._remember(
            name, state, failures, opened_us, now_us, now, False if permit.probe else None
        )
        return (CircuitState(_text(old)), CircuitState(_text(new))) if _text(old) else None

    async def reset(self, name: str) -> Transition | None:
        await self._fallback.reset(name)
        self._seen.pop(name, None)
        try:
            old = _text(await self.backend.script(RESET, [self.key(name)], []))
        except RedisUnavailable:
            self.backend.unavailable("circuit breaker", None, reject=False)
            return None
        return None if old == "closed" else (CircuitState(old), CircuitState.CLOSED)

    def __repr__(self) -> str:
        return f"RedisBreakerStore({self.backend!r}, breakers_seen={len(self._seen)})"


RedisBreakerBackend = RedisBreakerStore  # deprecated: the name before issue 15, kept for imports
