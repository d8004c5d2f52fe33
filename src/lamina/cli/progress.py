"""Watching a run: a recorder of every call, attempt and wait, and a live display.

:func:`watch_layers` puts two small layers into each endpoint's stack:

* :class:`ProgressLayer`, outermost, sees the whole call and listens to the
  events the inner layers emit (``retry.scheduled``, ``ratelimit.wait``,
  ``cache.hit``, ``breaker.rejected``...);
* :class:`AttemptLayer`, just inside the retry layer, times each attempt.

Both write into a :class:`Recorder`, which keeps a :class:`Timeline` per
endpoint (offsets in seconds from the start of the run) and tells a
:class:`LiveDisplay` when an endpoint changes state.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .._clock import Clock, default_clock
from .._core import Layer, Request, Response, Service
from .._events import listen
from ..layers.circuit_breaker import CircuitBreakerLayer
from ..layers.rate_limit import RateLimitLayer
from ..layers.retry import RetryLayer
from ..layers.timeout import TimeoutLayer
from ..layers.tracing import TracingLayer

__all__ = [
    "AttemptLayer",
    "LiveDisplay",
    "Mark",
    "ProgressLayer",
    "Recorder",
    "Segment",
    "Timeline",
    "watch_layers",
]


@dataclass
class Segment:
    """A stretch of one call: an ``attempt``, a ``retry-wait`` or a ``ratelimit-wait``."""

    kind: str
    start: float
    end: float
    attempt: int | None = None
    status: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly, times in milliseconds."""
        return {
            "kind": self.kind,
            "start_ms": round(self.start * 1000, 3),
            "end_ms": round(self.end * 1000, 3),
            "attempt": self.attempt,
            "status": self.status,
            "error": self.error,
        }


@dataclass
class Mark:
    """An instant on a call: ``cache.hit``, ``cache.stale``, ``breaker.rejected``..."""

    kind: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly, time in milliseconds."""
        return {"kind": self.kind, "at_ms": round(self.at * 1000, 3)}


@dataclass
class Timeline:
    """What the recorder saw of one endpoint's call."""

    segments: list[Segment] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    state: str = "waiting"

    @property
    def cache_hit(self) -> bool:
        """True when the call was answered from the cache."""
        return any(m.kind in ("cache.hit", "cache.stale") for m in self.marks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly."""
        return {
            "segments": [s.to_dict() for s in self.segments],
            "marks": [m.to_dict() for m in self.marks],
        }


class LiveDisplay:
    """Shows which endpoints are waiting, running, retrying or done, on ``stream``.

    On a terminal the block of endpoint lines is redrawn in place; elsewhere
    (a pipe, a CI log) each change of state is printed as one line.
    """

    def __init__(self, names: Sequence[str], stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.names = list(names)
        self.states: dict[str, str] = dict.fromkeys(self.names, "waiting")
        self.in_place = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = 0
        self._width = max((len(n) for n in self.names), default=4)

    def start(self) -> None:
        """Show the initial state."""
        if self.in_place:
            self._redraw()
        else:
            self._line(0.0, f"waiting: {', '.join(self.names)}")

    def update(self, name: str, state: str, at: float, detail: str = "") -> None:
        """Record that ``name`` is now in ``state`` (at ``at`` seconds into the run)."""
        self.states[name] = state
        if self.in_place:
            self._redraw()
        else:
            self._line(at, f"{name}: {state}{f' ({detail})' if detail else ''}")

    def finish(self) -> None:
        """Leave the final state on screen."""
        if self.in_place:
            self._redraw()

    def _line(self, at: float, text: str) -> None:
        self.stream.write(f"[{at * 1000:7.0f} ms] {text}\n")
        self.stream.flush()

    def _redraw(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F")
        for name in self.names:
            state = self.states[name]
            self.stream.write(
                f"\x1b[2K  {_SYMBOLS.get(state, '*')} {name:<{self._width}}  {state}\n"
            )
        self._drawn = len(self.names)
        self.stream.flush()


_SYMBOLS = {"waiting": ".", "running": ">", "retrying": "~", "ok": "+", "failed": "x"}


class Recorder:
    """Collects the timelines of one run; offsets count from :meth:`begin`."""

    def __init__(self, clock: Clock | None = None, display: LiveDisplay | None = None) -> None:
        self.clock = clock or default_clock
        self.display = display
        self.started = 0.0
        self.timelines: dict[str, Timeline] = {}

    def begin(self) -> None:
        """Mark the start of the run (call just before ``orchestrator.run``)."""
        self.started = self.clock.now()
        if self.display is not None:
            self.display.start()

    def now(self) -> float:
        """Seconds since :meth:`begin`."""
        return self.clock.now() - self.started

    def timeline(self, name: str) -> Timeline:
        """The timeline of endpoint ``name`` (created on first use)."""
        return self.timelines.setdefault(name, Timeline())

    def state(self, name: str, state: str, detail: str = "") -> None:
        """Move ``name`` to ``state`` and tell the display."""
        self.timeline(name).state = state
        if self.display is not None:
            self.display.update(name, state, self.now(), detail)

    def event(self, name: str, event: str, attributes: Mapping[str, Any]) -> None:
        """A layer's event on endpoint ``name``'s call."""
        now = self.now()
        timeline = self.timeline(name)
        if event == "retry.scheduled":
            delay = float(attributes.get("delay", 0.0))
            attempt = attributes.get("attempt")
            timeline.segments.append(Segment("retry-wait", now, now + delay, attempt=attempt))
            reason = attributes.get("reason", "")
            self.state(name, "retrying", f"attempt {attempt} in {delay * 1000:.0f} ms, {reason}")
        elif event == "ratelimit.wait":
            seconds = float(attributes.get("seconds", 0.0))
            timeline.segments.append(Segment("ratelimit-wait", max(0.0, now - seconds), now))
            if self.display is not None:
                self.display.update(
                    name, "running", now, f"rate limiter held it {seconds * 1000:.0f} ms"
                )
        elif event in ("cache.hit", "cache.stale", "breaker.rejected"):
            timeline.marks.append(Mark(event, now))
        elif event == "breaker.state":
            timeline.marks.append(Mark(f"breaker.{attributes.get('new', '?')}", now))


class ProgressLayer:
    """Outermost layer: reports a call's start and end and listens to its events."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def wrap(self, inner: Service) -> Service:
        """Wrap ``inner``."""
        return _Progress(inner, self.recorder)


class _Progress:
    __slots__ = ("inner", "recorder")

    def __init__(self, inner: Service, recorder: Recorder) -> None:
        self.inner = inner
        self.recorder = recorder

    async def __call__(self, request: Request) -> Response:
        recorder = self.recorder
        name = request.endpoint or request.url
        recorder.state(name, "running")

        def on_event(event: str, attributes: Mapping[str, Any]) -> None:
            recorder.event(name, event, attributes)

        try:
            response = await self.inner(listen(request, on_event))
        except asyncio.CancelledError:
            recorder.state(name, "cancelled")
            raise
        except Exception as exc:
            recorder.state(name, "failed", type(exc).__name__)
            raise
        detail = "from cache" if response.from_cache else str(response.status_code)
        recorder.state(name, "ok", detail)
        return response


class AttemptLayer:
    """Times each attempt (put it just inside the retry layer)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def wrap(self, inner: Service) -> Service:
        """Wrap ``inner``."""
        return _Attempt(inner, self.recorder)


class _Attempt:
    __slots__ = ("inner", "recorder")

    def __init__(self, inner: Service, recorder: Recorder) -> None:
        self.inner = inner
        self.recorder = recorder

    async def __call__(self, request: Request) -> Response:
        recorder = self.recorder
        timeline = recorder.timeline(request.endpoint or request.url)
        segment = Segment("attempt", recorder.now(), recorder.now(), attempt=request.attempt)
        timeline.segments.append(segment)
        try:
            response = await self.inner(request)
        except BaseException as exc:
            segment.end = recorder.now()
            segment.status = getattr(exc, "status_code", None)
            segment.error = type(exc).__name__
            raise
        segment.end = recorder.now()
        segment.status = response.status_code
        if response.status_code >= 400:
            segment.error = str(response.status_code)
        return response


_ATTEMPT_BOUNDARY = (CircuitBreakerLayer, RateLimitLayer, TimeoutLayer, TracingLayer)


def watch_layers(recorder: Recorder, layers: Sequence[Layer]) -> list[Layer]:
    """``layers`` with a :class:`ProgressLayer` outside and an :class:`AttemptLayer` per attempt.

    The attempt layer goes just inside the retry layer; with no retry layer, just
    outside the first per-attempt layer (breaker, rate limit, timeout, tracing).
    """
    stack = list(layers)
    index = next((i + 1 for i, lay in enumerate(stack) if isinstance(lay, RetryLayer)), None)
    if index is None:
        index = next(
            (i for i, lay in enumerate(stack) if isinstance(lay, _ATTEMPT_BOUNDARY)), len(stack)
        )
    stack.insert(index, AttemptLayer(recorder))
    return [ProgressLayer(recorder), *stack]
