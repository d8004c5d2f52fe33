"""The Redis connection shared by the Redis limiter, breaker and cache stores.

:class:`RedisConnection` (what :class:`lamina.backends.RedisBackend` is built on) owns
the connection (one ``redis.asyncio`` client per event loop, on a blocking pool of
``max_connections``), the key layout (``{prefix}:v1:{kind}:{{name}}:...``), Lua script
execution (``EVALSHA``, falling back to ``EVAL`` once) and the failure policy.

Waiting for a pooled connection is not an outage. When every connection of
the pool is busy (a burst of calls in one process), an operation queues, first
come first served, until a connection is free or the call's deadline passes
(or ``pool_timeout``, if set); redis-py's ``MaxConnectionsError`` never
reaches the failure policy. The queue always moves: every Redis call is
bounded, and an outage empties the queue at once.

The failure policy applies only to real outages - connection refused or
reset, no answer from Redis in time (a frozen server), an error reply, or,
if set, no free connection within ``pool_timeout``:

* ``on_error="local"`` (default): the caller uses in-process state instead.
  The first failure of an outage logs one WARNING on ``lamina.backends``;
  every fallback is counted (:attr:`RedisConnection.fallbacks`, and per kind in
  :attr:`RedisConnection.fallbacks_by`) and reported as a ``backend.unavailable``
  event (on the call's listeners when the operation knows the call, else on the
  current span). For ``retry_interval`` seconds after a failure Redis is not
  asked at all (an outage costs nothing per call); then one call at a time
  asks it while the others keep to the fallback, and the first answer logs
  (INFO) that Redis is back.
* ``"closed"``: calls are rejected with :class:`lamina.BackendUnavailable`.
* ``"open"``: calls go through unlimited, unguarded and uncached.

A Redis call that gets no answer within ``timeout`` seconds is cut off and
counts as an outage - unless other calls on the same event loop were answered
meanwhile: then Redis is up and the event loop itself is slow (a burst keeps
it busy, and every reply waits its turn), so the call gets another
``timeout``, up to ``PATIENCE * timeout`` in all (see :class:`_Watch`).
redis-py's own retries and socket timeouts are off. So a frozen or dead Redis
holds the calls in flight for about ``timeout`` plus a few loop iterations,
and a busy event loop is not mistaken for an outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

from opentelemetry import trace

from .. import _validate as check
from .._core import Request
from .._errors import BackendUnavailable, ConfigError
from .._events import emit
from .._extras import require
from .._redact import redact_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "KEY_VERSION",
    "ON_ERROR",
    "OnError",
    "PoolWaitExpired",
    "RedisConnection",
    "RedisUnavailable",
]

logger = logging.getLogger("lamina.backends")

T = TypeVar("T")

OnError = Literal["local", "closed", "open"]
ON_ERROR: tuple[OnError, ...] = ("local", "closed", "open")
"""What a shared backend does when its store is unreachable: fall back to
in-process state, reject calls (:class:`lamina.BackendUnavailable`), or let them through."""

KEY_VERSION = "v1"
"""Bumped whenever the layout of values in Redis changes."""

DEFAULT_MAX_CONNECTIONS = 32
"""Connections per event loop. One process's CPU caps the rate of Redis calls, and the
connections in use are that rate times the round trip (see ``docs/redis.md``). More
concurrent calls queue; they do not need more connections."""

_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class RedisUnavailable(Exception):
    """Internal: Redis failed or is known to be down; the caller applies the policy."""


class PoolWaitExpired(Exception):
    """Internal: the caller's own bound (its deadline) ended the wait for a free
    connection. Not an outage: Redis is not marked down and nothing falls back."""


class PoolTimeout(Exception):
    """No connection of the pool came free within ``pool_timeout`` (counted as an outage)."""


class NoAnswer(Exception):
    """Redis did not answer within the bound while nothing else on the loop got answers."""


PATIENCE = 16
"""A Redis call may take up to ``PATIENCE * timeout`` while Redis answers other calls on
its event loop (or, before the first answer, while the loop is too busy to tell)."""

SETTLE = 4
"""Loop iterations given to replies already received before a silent call is cut off."""


class _LoopState:
    """Per event loop: the gate in front of the pool, when Redis last answered, and
    when the loop last ran late (a heartbeat, ticking only while calls are in flight)."""

    __slots__ = ("answered", "beat", "gate", "in_flight", "lagged", "tick")

    def __init__(self, size: int, tick: float) -> None:
        self.gate = asyncio.Semaphore(size)
        self.answered = 0.0  # loop.time() of the last answer from Redis
        self.lagged = 0.0  # loop.time() of the last heartbeat that ran more than `tick` late
        self.tick = tick
        self.in_flight = 0
        self.beat: asyncio.TimerHandle | None = None

    def enter(self, loop: asyncio.AbstractEventLoop) -> None:
        self.in_flight += 1
        if self.beat is None:
            due = loop.time() + self.tick
            self.beat = loop.call_at(due, self._beat, loop, due)

    def leave(self) -> None:
        self.in_flight -= 1

    def _beat(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now = loop.time()
        if now - due > self.tick:
            self.lagged = now
        if self.in_flight > 0:
            self.beat = loop.call_at(now + self.tick, self._beat, loop, now + self.tick)
        else:
            self.beat = None


class _Watch:
    """Decides when one Redis call has gone unanswered (see the module docstring).

    Every ``period`` seconds: if Redis answered any call on this loop since the
    last look, the loop (not Redis) is slow: look again later. Otherwise wait
    :data:`SETTLE` loop iterations, so that replies already received get
    processed, and look once more; still nothing: cut the call off. Before the
    loop's first answer (connections still opening), a loop running late also
    earns more time. Never beyond ``PATIENCE * period``.
    """

    __slots__ = (
        "checked",
        "done",
        "expired",
        "handle",
        "loop",
        "period",
        "scope",
        "started",
        "state",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        state: _LoopState,
        scope: asyncio.Timeout,
        period: float,
    ) -> None:
        self.loop, self.state, self.scope, self.period = loop, state, scope, period
        self.started = self.checked = loop.time()
        self.expired = self.done = False
        due = self.started + period
        self.handle: asyncio.Handle = loop.call_at(due, self.look, due)

    def look(self, due: float) -> None:
        if self.done:
            return
        now, state = self.loop.time(), self.state
        if state.answered > self.checked:
            self._again(now)
        elif state.answered == 0 and (now - due > state.tick or state.lagged > self.checked):
            self._again(now)  # nothing answered yet on a busy loop: cannot tell
        else:
            self.handle = self.loop.call_soon(self.settle, SETTLE)

    def settle(self, left: int) -> None:
        if self.done:
            return
        if left > 0:
            self.handle = self.loop.call_soon(self.settle, left - 1)
        elif self.state.answered > self.checked:
            self._again(self.loop.time())
        else:
            self._expire()

    def _again(self, now: float) -> None:
        if now >= self.started + PATIENCE * self.period:
            self._expire()
            return
        self.checked = now
        due = now + self.period
        self.handle = self.loop.call_at(due, self.look, due)

    def _expire(self) -> None:
        self.expired = True
        self.scope.reschedule(self.loop.time())

    def stop(self) -> None:
        self.done = True
        self.handle.cancel()


class RedisConnection:
    """A connection to Redis with the failure policy: what the Redis stores use.

    ``RedisConnection("redis://host:6379/0", prefix="lamina", on_error="local")``.
    Pass ``client=`` (a ``redis.asyncio.Redis``) to reuse a connection you
    configured yourself; it is then used on whatever loop calls it.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "lamina",
        on_error: OnError = "local",
        timeout: float = 0.25,
        retry_interval: float = 1.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float | None = None,
        client: Redis | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("must be a redis://, rediss:// or unix:// URL", field="url")
        if client is None:  # at construction, not at the first call: pip install 'lamina[redis]'
            require(("redis.asyncio",), "redis", "RedisBackend", field="url")
        if not isinstance(prefix, str) or not _PREFIX.match(prefix):
            raise ConfigError(
                "must be 1-64 characters of letters, digits, '_', '.', ':' or '-'",
                field="prefix",
            )
        self._url = url
        self.prefix = prefix
        self.on_error: OnError = check.choice(on_error, "on_error", ON_ERROR)
        self.timeout = check.seconds(timeout, "timeout", high=3600)
        self.retry_interval = check.seconds(retry_interval, "retry_interval", high=3600)
        self.max_connections = check.count(max_connections, "max_connections", high=10_000)
        """Connections per event loop; more operations at once queue for one."""
        self.pool_timeout = (
            None if pool_timeout is None else check.seconds(pool_timeout, "pool_timeout", high=3600)
        )
        """If set, a wait for a free connection longer than this counts as an outage."""
        self._client = client
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._shas: dict[str, str] = {}
        self._down_until = 0.0
        self._warned = False
        self._probing = False
        self._episode_fallbacks = 0
        self.errors = 0
        """Redis calls that failed or timed out (including waits past ``pool_timeout``)."""
        self.fallbacks = 0
        """Operations the failure policy answered instead of Redis."""
        self.fallbacks_by: dict[str, int] = {}
        """:attr:`fallbacks` per kind: ``"rate limit"``, ``"circuit breaker"``, ``"cache"``."""
        self.outages = 0
        """Outage episodes begun (each logged once at WARNING)."""
        self.recoveries = 0
        """Outages that ended (Redis answered again)."""
        self.pool_waits = 0
        """Operations that queued for a connection because all were busy (not fallbacks)."""
        self.pool_timeouts = 0
        """Queued operations whose wait ended at the call's deadline (or ``pool_timeout``)."""
        self.slow_answers = 0
        """Calls that outlived ``timeout`` while Redis answered others (a busy event loop)."""
        try:
            parts = urlsplit(url)
            if parts.scheme == "unix":
                self.address = redact_url(url)
            else:
                self.address = f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path}"
        except ValueError:
            self.address = redact_url(url)
        """Where Redis is, for logs and errors: host, port and database, never credentials."""

    # -- keys ------------------------------------------------------------------
    def key(self, kind: str, name: str, *parts: str) -> str:
        """``{prefix}:v1:{kind}:{{name}}[:part...]``; odd names are replaced by a digest.

        The braces make every key of one name a Redis Cluster hash tag.
        """
        if not _PLAIN_NAME.match(name):
            name = "h-" + hashlib.sha256(name.encode()).hexdigest()[:24]
        tail = "".join(f":{p}" for p in parts)
        return f"{self.prefix}:{KEY_VERSION}:{kind}:{{{name}}}{tail}"

    # -- connection --------------------------------------------------------------
    def client(self) -> Redis:
        """The client for the running event loop (created on first use)."""
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None:
            from redis.asyncio import BlockingConnectionPool, Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # Blocking, so that a burst queues for a connection instead of raising
            # MaxConnectionsError; lamina's gate (see run) bounds and counts the wait.
            # No socket timeouts: run() bounds every call, telling a silent Redis
            # from a busy event loop, which a plain socket timeout cannot.
            pool = BlockingConnectionPool.from_url(
                self._url,
                max_connections=self.max_connections,
                timeout=None,
                socket_timeout=None,
                socket_connect_timeout=None,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
            found = Redis(connection_pool=pool)
            found.auto_close_connection_pool = True
            self._clients[loop] = found
        return found

    def _state(self) -> _LoopState:
        """This loop's gate (at most as many operations as connections) and answer time."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            size = self.max_connections
            if self._client is not None:  # never more than the user's pool holds
                theirs = getattr(self._client.connection_pool, "max_connections", None)
                if isinstance(theirs, int) and theirs > 0:
                    size = min(size, theirs)
            state = self._loops[loop] = _LoopState(size, self.timeout / 4)
        return state

    async def aclose(self) -> None:
        """Close this loop's connections (a client passed in is left open)."""
        if self._client is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        found = self._clients.pop(loop, None)
        self._loops.pop(loop, None)
        if found is not None:
            await found.aclose(close_connection_pool=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def available(self) -> bool:
        """False while a recent failure keeps the backend on its failure policy."""
        return time.monotonic() >= self._down_until

    async def ping(self) -> float:
        """Seconds for one PING round trip (raises if Redis does not answer within
        ``PATIENCE * timeout``)."""
        start = time.perf_counter()
        async with asyncio.timeout(PATIENCE * self.timeout):
            await self.client().ping()
        return time.perf_counter() - start

    async def run(
        self,
        op: Callable[[Redis], Awaitable[T]],
        *,
        limit: float | None = None,
        max_wait: float | None = None,
    ) -> T:
        """Run ``op(client)``; raise :class:`RedisUnavailable` when Redis fails or is
        known to be down.

        If every connection is busy, first queue for one: until one is free,
        or for at most ``max_wait`` seconds (callers pass the time left before
        the call's deadline; then :class:`PoolWaitExpired`, not an outage), or
        ``pool_timeout`` if set (then an outage). ``op`` itself is bounded as the
        module docstring says, or by a plain ``limit`` seconds if given.
        """
        self._check_down()
        state = self._state()
        gate = state.gate
        if gate.locked():
            await self._wait_for_connection(gate, max_wait)
        else:
            await gate.acquire()  # free: returns without yielding
        try:
            self._check_down()  # it may have gone down while this one queued
            if not self._warned:
                return await self._call(op, state, limit)
            self._probing = True  # during an outage, one call at a time asks Redis
            try:
                return await self._call(op, state, limit)
            finally:
                self._probing = False
        finally:
            gate.release()

    def _check_down(self) -> None:
        if time.monotonic() < self._down_until:
            raise RedisUnavailable("redis marked down")
        if self._warned and self._probing:
            raise RedisUnavailable("redis down; another call is checking whether it is back")

    async def _wait_for_connection(self, gate: asyncio.Semaphore, max_wait: float | None) -> None:
        self.pool_waits += 1
        bound, by_caller = self.pool_timeout, False
        if max_wait is not None and (bound is None or max_wait < bound):
            bound, by_caller = max(0.0, max_wait), True
        try:
            async with asyncio.timeout(bound):
                await gate.acquire()
        except TimeoutError as exc:
            self.pool_timeouts += 1
            if by_caller:
                raise PoolWaitExpired(f"no redis connection free within {bound:.3g}s") from exc
            error = PoolTimeout(f"no connection free within pool_timeout={self.pool_timeout:g}s")
            self._failed(error)
            raise RedisUnavailable("PoolTimeout") from error

    async def _call(
        self, op: Callable[[Redis], Awaitable[T]], state: _LoopState, limit: float | None
    ) -> T:
        from redis.exceptions import MaxConnectionsError, RedisError

        episode = self.outages  # an answer to a call sent before an outage does not end it
        pause = 0.001
        while True:
            try:
                result = await self._bounded(op, state, limit)
            except MaxConnectionsError as exc:
                # Only with a client of the user's own, on a non-blocking pool that other
                # code also uses (the gate keeps lamina within its size): not an outage,
                # so wait for a connection to come back (as long as Redis answers others).
                self.pool_waits += 1
                if pause > 0.05:
                    self.pool_timeouts += 1
                    self._failed(exc)
                    raise RedisUnavailable(type(exc).__name__) from exc
                await asyncio.sleep(pause)
                pause *= 2
                continue
            except (RedisError, OSError, NoAnswer) as exc:  # OSError: TimeoutError too
                self._failed(exc)
                raise RedisUnavailable(type(exc).__name__) from exc
            break
        if self._warned and episode == self.outages:
            self._recovered()
        return result

    async def _bounded(
        self, op: Callable[[Redis], Awaitable[T]], state: _LoopState, limit: float | None
    ) -> T:
        """``op(client)``, cut off after ``timeout`` seconds without an answer from Redis
        on this loop (see the module docstring), or after a plain ``limit``."""
        loop = asyncio.get_running_loop()
        if limit is not None:
            async with asyncio.timeout(limit):
                return await op(self.client())
        watch: _Watch | None = None
        state.enter(loop)
        try:
            async with asyncio.timeout(None) as scope:
                watch = _Watch(loop, state, scope, self.timeout)
                try:
                    result = await op(self.client())
                finally:
                    watch.stop()
        except TimeoutError:
            if watch is not None and watch.expired:
                waited = loop.time() - watch.started
                raise NoAnswer(f"no answer within {waited:.3g}s") from None
            raise
        finally:
            state.leave()
        if watch.checked > watch.started:
            self.slow_answers += 1
        state.answered = loop.time()
        return result

    async def script(
        self, lua: str, keys: Sequence[str], args: Sequence[Any], *, max_wait: float | None = None
    ) -> Any:
        """Run a Lua script atomically (``EVALSHA``, ``EVAL`` if Redis lost it);
        ``max_wait`` bounds the wait for a free connection (see :meth:`run`)."""
        sha = self._shas.get(lua)
        if sha is None:
            sha = self._shas[lua] = hashlib.sha1(lua.encode()).hexdigest()

        async def op(client: Redis) -> Any:
            from redis.exceptions import NoScriptError

            try:
                return await client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                return await client.eval(lua, len(keys), *keys, *args)

        return await self.run(op, max_wait=max_wait)

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self._down_until = time.monotonic() + self.retry_interval
        if not self._warned:
            self._warned = True
            self.outages += 1
            self._episode_fallbacks = self.fallbacks
            logger.warning(
                "redis backend %s unavailable (%s); on_error=%r: shared state is not used "
                "for %gs, then Redis is asked again",
                self.address,
                type(exc).__name__,
                self.on_error,
                self.retry_interval,
            )

    def _recovered(self) -> None:
        self._warned = False
        self.recoveries += 1
        logger.info(
            "redis backend %s answers again after %d fallbacks; shared state resumed",
            self.address,
            self.fallbacks - self._episode_fallbacks,
        )

    def unavailable(self, what: str, request: Request | None, *, reject: bool = True) -> None:
        """Apply the failure policy to one operation: count it, report it, and under
        ``on_error="closed"`` (when ``reject``) raise :class:`lamina.BackendUnavailable`.

        The ``backend.unavailable`` event goes to the call's listeners when
        ``request`` is known, else to the current span (e.g. the call's span).
        """
        self.fallbacks += 1
        self.fallbacks_by[what] = self.fallbacks_by.get(what, 0) + 1
        if request is not None:
            emit(request, "backend.unavailable", backend="redis", what=what, policy=self.on_error)
        else:
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(
                    "backend.unavailable",
                    {"backend": "redis", "what": what, "policy": self.on_error},
                )
        if reject and self.on_error == "closed":
            raise BackendUnavailable(
                f"shared {what} state in redis at {self.address} is unavailable",
                backend="redis",
                request=request,
            )

    def __repr__(self) -> str:
        state = "up" if self.available else "down"
        return (
            f"{type(self).__name__}({self.address!r}, prefix={self.prefix!r}, "
            f"on_error={self.on_error!r}, {state}, max_connections={self.max_connections}, "
            f"errors={self.errors}, fallbacks={self.fallbacks})"
        )
