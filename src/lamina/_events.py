"""How layers tell observers (tracing, metrics, logs, run reports) what they did.

A layer calls :func:`emit` with an event name and attributes; observers that
an outer layer registered on the call with :func:`listen` receive it, and so do the
process-wide subscribers of :func:`lamina.events.subscribe` (as typed events). With
no observer, ``emit`` costs one dict lookup. The public names are in
:mod:`lamina.events`. Timing each attempt for ``http.attempt`` is work of its own, so
the layer that reports it does so only when a listener or a subscriber asked for it
(:func:`wants_attempts`).

Event names used by the built-in layers::

    retry.scheduled      attempt, delay (s), reason
    retry.budget_exhausted  attempt
    retry.retry_after_exceeded  attempt, retry_after (s), limit ("max_delay" or "deadline")
    breaker.rejected     retry_after (s)
    breaker.state        name, old, new
    ratelimit.wait       seconds
    cache.hit / cache.miss / cache.stale
    backend.unavailable  backend, what, policy (a shared store fell back to local state)
    http.attempt         duration (s) and the attempt's HTTP attributes (from TracingLayer)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ._core import Request

__all__ = [
    "ATTEMPTS_KEY",
    "EVENTS_KEY",
    "Listener",
    "Subscriber",
    "emit",
    "listen",
    "set_subscribers",
    "subscribers",
    "wants_attempts",
]

EVENTS_KEY = "lamina.listeners"
ATTEMPTS_KEY = "lamina.attempt_listeners"  # set when a listener wants http.attempt

Listener = Callable[[str, Mapping[str, Any]], None]
logger = logging.getLogger("lamina")


class Subscriber(Protocol):
    """A process-wide observer (see :func:`lamina.events.subscribe`)."""

    attempts: bool

    def deliver(self, request: Request, name: str, attributes: Mapping[str, Any]) -> None: ...


_subscribers: tuple[Subscriber, ...] = ()  # replaced whole, never mutated: safe to iterate
_attempt_subscribers = False  # whether a subscriber wants http.attempt


def subscribers() -> tuple[Subscriber, ...]:
    """The process-wide subscribers, in subscription order."""
    return _subscribers


def set_subscribers(new: Sequence[Subscriber]) -> None:
    """Replace the process-wide subscribers (``lamina.events`` does, under its lock)."""
    global _subscribers, _attempt_subscribers
    _subscribers = tuple(new)
    _attempt_subscribers = any(s.attempts for s in _subscribers)


def emit(request: Request, name: str, /, **attributes: Any) -> None:
    """Report event ``name`` on this call to every registered listener and subscriber."""
    listeners = request.extensions.get(EVENTS_KEY)
    if listeners:
        for listener in listeners:
            try:
                listener(name, attributes)
            except Exception:  # an observer never changes the caller's outcome
                logger.exception("event listener failed on %s", name)
    if _subscribers:
        for subscriber in _subscribers:
            try:
                subscriber.deliver(request, name, attributes)
            except Exception:
                logger.exception("event subscriber failed on %s", name)


def listen(request: Request, listener: Listener, /, *, attempts: bool = True) -> Request:
    """A copy of ``request`` whose events also reach ``listener``.

    ``attempts=False`` says the listener does not need ``http.attempt`` events (it
    still receives them when another listener asked for them).
    """
    extensions = dict(request.extensions)
    listeners = extensions.get(EVENTS_KEY)
    extensions[EVENTS_KEY] = [*listeners, listener] if listeners else [listener]
    if attempts:
        extensions[ATTEMPTS_KEY] = True
    copy = request.replace()  # then set the field directly: replace(**changes) costs more
    copy.extensions = extensions
    return copy


def wants_attempts(request: Request) -> bool:
    """Whether a listener on this call, or a subscriber, asked for ``http.attempt`` events."""
    return _attempt_subscribers or ATTEMPTS_KEY in request.extensions
