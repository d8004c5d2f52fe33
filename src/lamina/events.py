"""What lamina's layers did, as typed events you can subscribe to.

Every layer reports what it decides (a retry scheduled, a breaker opening, a cache hit,
a wait for the rate limit) as an event on the call. Two ways to receive them:

* :func:`subscribe` — process-wide: ``callback(event)`` gets a frozen :class:`Event`
  (a typed subclass such as :class:`RetryScheduled` for the built-in names) for every
  call. It returns a :class:`Subscription`: call it, or leave its ``with`` block, to
  unsubscribe. ::

      from lamina import events

      with events.subscribe(print, names={"retry.scheduled"}):
          ...  # RetryScheduled(name='retry.scheduled', endpoint='users', attempt=2, ...)

* :func:`listen` — one call: a layer of your own adds a listener to the request it
  passes down and receives ``(name, attributes)`` for that call only (this is how the
  call span records its events).

A layer reports its own events with :func:`emit` ``(request, "myplugin.thing", key=value)``:
they reach both kinds of observer (subscribers get an :class:`Event` with the
attributes). An observer that raises is logged and never changes the call's outcome.
String attributes given to subscribers are scrubbed of the call's secrets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar

from . import _events
from ._core import Request
from ._events import Listener, emit, listen, wants_attempts
from ._redact import scrub, secret_values

__all__ = [
    "AdaptiveLimitChanged",
    "AdaptiveRejected",
    "BackendFallback",
    "BreakerRejected",
    "BreakerStateChanged",
    "CacheHit",
    "CacheMiss",
    "CacheRevalidated",
    "CacheSkip",
    "CacheStale",
    "ChaosInjected",
    "Event",
    "FallbackUsed",
    "HedgeSent",
    "HedgeWon",
    "HttpAttempt",
    "Listener",
    "RateLimitWait",
    "RetryAfterExceeded",
    "RetryBudgetExhausted",
    "RetryScheduled",
    "Subscription",
    "TokenFetched",
    "TokenRefreshFailed",
    "TokenRejected",
    "emit",
    "event_types",
    "listen",
    "subscribe",
    "wants_attempts",
]


@dataclass(frozen=True, kw_only=True)
class Event:
    """One thing a layer did during a call.

    ``name`` is the event's name (``"retry.scheduled"``), ``endpoint`` the call's endpoint
    name (or None), ``url`` its URL with secrets masked, ``attributes`` everything the
    layer reported (read-only; strings scrubbed). Events of names lamina does not type
    (a plugin's, or a new one) arrive as a plain :class:`Event`.
    """

    #: The event name a subclass stands for ("" for the base class).
    NAME: ClassVar[str] = ""

    name: str
    endpoint: str | None = None
    url: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class RetryScheduled(Event):
    """The retry layer will make ``attempt`` after sleeping ``delay`` seconds because of
    ``reason`` (a status such as ``"503"`` or an error's class name)."""

    NAME: ClassVar[str] = "retry.scheduled"
    attempt: int = 0
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class RetryBudgetExhausted(Event):
    """The retry budget had no retry left after ``attempt``: the call ends there."""

    NAME: ClassVar[str] = "retry.budget_exhausted"
    attempt: int = 0


@dataclass(frozen=True, kw_only=True)
class RetryAfterExceeded(Event):
    """The server's ``Retry-After`` (``retry_after`` seconds) is longer than the call may
    wait (``limit`` is ``"max_delay"`` or ``"deadline"``): no retry after ``attempt``."""

    NAME: ClassVar[str] = "retry.retry_after_exceeded"
    attempt: int = 0
    retry_after: float = 0.0
    limit: str = ""


@dataclass(frozen=True, kw_only=True)
class BreakerRejected(Event):
    """The circuit is open: the call was refused; it may be tried after ``retry_after`` s."""

    NAME: ClassVar[str] = "breaker.rejected"
    retry_after: float = 0.0


@dataclass(frozen=True, kw_only=True)
class BreakerStateChanged(Event):
    """Breaker ``breaker`` went from state ``old`` to ``new`` (``closed``, ``open``,
    ``half_open``)."""

    NAME: ClassVar[str] = "breaker.state"
    breaker: str = ""
    old: str = ""
    new: str = ""


@dataclass(frozen=True, kw_only=True)
class RateLimitWait(Event):
    """The call waited ``seconds`` for the rate limit before going on."""

    NAME: ClassVar[str] = "ratelimit.wait"
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class CacheHit(Event):
    """Answered from the cache, with an entry ``age`` seconds old."""

    NAME: ClassVar[str] = "cache.hit"
    age: float = 0.0


@dataclass(frozen=True, kw_only=True)
class CacheMiss(Event):
    """Not answered from the cache; ``reason`` says why (e.g. ``"absent"``, ``"expired"``)."""

    NAME: ClassVar[str] = "cache.miss"
    reason: str | None = None
    revalidate: bool = False  # a stored entry is being revalidated with the server


@dataclass(frozen=True, kw_only=True)
class CacheSkip(Event):
    """The cache neither answered nor stored this call; ``reason`` says why (the method,
    a bypass, ``no-store``, a status that is not cacheable, ...)."""

    NAME: ClassVar[str] = "cache.skip"
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class CacheRevalidated(Event):
    """The server confirmed a stored entry ``age`` seconds old (``status`` 304)."""

    NAME: ClassVar[str] = "cache.revalidated"
    age: float = 0.0
    status: int = 304


@dataclass(frozen=True, kw_only=True)
class CacheStale(Event):
    """Answered with a stale entry ``age`` seconds old: shared from a refresh another call
    made (``shared``), or because the upstream failed with ``error``."""

    NAME: ClassVar[str] = "cache.stale"
    age: float = 0.0
    shared: bool = False
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class BackendFallback(Event):
    """A shared store (``backend``, e.g. ``"redis"``) was unreachable while doing ``what``;
    ``policy`` says what lamina did instead (e.g. fell back to local state)."""

    NAME: ClassVar[str] = "backend.unavailable"
    backend: str = ""
    what: str = ""
    policy: str = ""


@dataclass(frozen=True, kw_only=True)
class HttpAttempt(Event):
    """One attempt ended after ``duration`` seconds (sent only to subscribers that asked
    with ``subscribe(..., attempts=True)``: timing attempts costs a little)."""

    NAME: ClassVar[str] = "http.attempt"
    duration: float = 0.0


@dataclass(frozen=True, kw_only=True)
class HedgeSent(Event):
    """The hedge layer sent extra attempt number ``hedge`` after ``delay`` seconds, because
    the earlier attempts were slow (``reason="delay"``) or one failed (``"failure"``)."""

    NAME: ClassVar[str] = "hedge.sent"
    hedge: int = 0
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class HedgeWon(Event):
    """Attempt number ``hedge`` (0: the first one) gave the answer; the others were cancelled."""

    NAME: ClassVar[str] = "hedge.won"
    hedge: int = 0


@dataclass(frozen=True, kw_only=True)
class FallbackUsed(Event):
    """The fallback answered in place of a failure of class ``error`` (``status`` when the
    failure was an HTTP status)."""

    NAME: ClassVar[str] = "fallback.used"
    error: str = ""
    status: int | None = None


@dataclass(frozen=True, kw_only=True)
class ChaosInjected(Event):
    """A chaos layer injected ``kind`` (``"latency"`` of ``seconds``, a ``"fault"`` of class
    ``error``, or a made-up ``"status"``)."""

    NAME: ClassVar[str] = "chaos.injected"
    kind: str = ""
    seconds: float | None = None
    error: str | None = None
    status: int | None = None


@dataclass(frozen=True, kw_only=True)
class AdaptiveRejected(Event):
    """The adaptive concurrency limit (``limit``, with ``in_flight`` calls running) shed
    the call."""

    NAME: ClassVar[str] = "adaptive.rejected"
    limit: int = 0
    in_flight: int = 0


@dataclass(frozen=True, kw_only=True)
class AdaptiveLimitChanged(Event):
    """The adaptive concurrency limit moved from ``old`` to ``new`` (latency ``sample_rtt``
    against the unloaded ``min_rtt``, in seconds)."""

    NAME: ClassVar[str] = "adaptive.limit"
    old: int = 0
    new: int = 0
    sample_rtt: float | None = None
    min_rtt: float | None = None


@dataclass(frozen=True, kw_only=True)
class TokenFetched(Event):
    """A client-credentials token was fetched, valid for ``expires_in`` seconds."""

    NAME: ClassVar[str] = "auth.token_fetched"
    expires_in: float = 0.0
    source: str = ""


@dataclass(frozen=True, kw_only=True)
class TokenRejected(Event):
    """The upstream answered 401: the token was dropped and the call sent once more."""

    NAME: ClassVar[str] = "auth.token_rejected"


@dataclass(frozen=True, kw_only=True)
class TokenRefreshFailed(Event):
    """An early token renewal failed with ``error``; the still-valid token was used."""

    NAME: ClassVar[str] = "auth.token_refresh_failed"
    error: str = ""


_TYPED: tuple[type[Event], ...] = (
    RetryScheduled,
    RetryBudgetExhausted,
    RetryAfterExceeded,
    BreakerRejected,
    BreakerStateChanged,
    RateLimitWait,
    CacheHit,
    CacheMiss,
    CacheSkip,
    CacheRevalidated,
    CacheStale,
    BackendFallback,
    HttpAttempt,
    HedgeSent,
    HedgeWon,
    FallbackUsed,
    ChaosInjected,
    AdaptiveRejected,
    AdaptiveLimitChanged,
    TokenFetched,
    TokenRejected,
    TokenRefreshFailed,
)
_BY_NAME: dict[str, type[Event]] = {cls.NAME: cls for cls in _TYPED}
#: attribute name -> field name, where they differ ("name" is the event's own name).
_RENAMED: dict[type[Event], dict[str, str]] = {BreakerStateChanged: {"name": "breaker"}}
_BASE_FIELDS = frozenset(f.name for f in fields(Event))


def event_types() -> dict[str, type[Event]]:
    """The typed event classes, by event name."""
    return dict(_BY_NAME)


def _clean(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str) and secrets:
        return scrub(value, secrets)
    return value


def make_event(request: Request, name: str, attributes: Mapping[str, Any]) -> Event:
    """The :class:`Event` for ``name`` reported on ``request`` with ``attributes``."""
    secrets = secret_values(request)
    attrs = {key: _clean(value, secrets) for key, value in attributes.items()}
    cls = _BY_NAME.get(name, Event)
    renamed = _RENAMED.get(cls, {})
    typed: dict[str, Any] = {}
    if cls is not Event:
        wanted = {f.name for f in fields(cls)} - _BASE_FIELDS
        for key, value in attrs.items():
            target = renamed.get(key, key)
            if target in wanted and value is not None:
                typed[target] = value
    return cls(
        name=name,
        endpoint=request.endpoint,
        url=request.redacted_url,
        attributes=MappingProxyType(attrs),
        **typed,
    )


Callback = Callable[[Event], None]


class Subscription:
    """A live :func:`subscribe`: call it (or :meth:`close`, or leave ``with``) to stop."""

    __slots__ = ("attempts", "callback", "names")

    def __init__(self, callback: Callback, names: frozenset[str] | None, attempts: bool) -> None:
        self.callback = callback
        self.names = names
        self.attempts = attempts

    def deliver(self, request: Request, name: str, attributes: Mapping[str, Any]) -> None:
        if self.names is not None and name not in self.names:
            return
        if name == HttpAttempt.NAME and not self.attempts:
            return
        self.callback(make_event(request, name, attributes))

    def close(self) -> None:
        """Stop receiving events (twice is fine)."""
        _unsubscribe(self)

    def __call__(self) -> None:
        self.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        names = "all" if self.names is None else ", ".join(sorted(self.names))
        return f"<Subscription {getattr(self.callback, '__name__', 'callback')} ({names})>"


_lock = threading.Lock()


def subscribe(
    callback: Callback, *, names: Iterable[str] | None = None, attempts: bool = False
) -> Subscription:
    """Call ``callback(event)`` for every event of every call from now on, in this process.

    ``names`` keeps only those event names. ``attempts=True`` also delivers an
    :class:`HttpAttempt` per attempt (and makes the tracing layer time every attempt).
    The callback runs inside the call, on its task: keep it quick.
    """
    if not callable(callback):
        from ._errors import ConfigError

        raise ConfigError("must be callable", field="callback")
    if isinstance(names, str):
        names = [names]
    subscription = Subscription(
        callback, None if names is None else frozenset(names), bool(attempts)
    )
    with _lock:
        _events.set_subscribers([*_events.subscribers(), subscription])
    return subscription


def _unsubscribe(subscription: Subscription) -> None:
    with _lock:
        current = _events.subscribers()
        if subscription in current:
            _events.set_subscribers([s for s in current if s is not subscription])
