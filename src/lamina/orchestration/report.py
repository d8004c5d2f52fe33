"""What a run did: one report per endpoint and the run's critical path.

The reprs leave results out: a result holds whatever the upstream sent (an
echoed header, a signed URL), so it is shown by type only; read ``value`` and
``result`` for the data. Errors show as their type and their message scrubbed of the
request's secret values (:attr:`EndpointReport.error_text`), never as the error's own
repr: a hook's error, or a ``UnicodeEncodeError``, may hold a header value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .._redact import scrub

__all__ = ["EndpointReport", "Outcome", "RunReport"]

Outcome = Literal[
    "pending", "ok", "cached", "stale", "handled", "fallback", "failed", "skipped", "cancelled"
]
GOOD: frozenset[str] = frozenset({"ok", "cached", "stale", "handled", "fallback", "skipped"})


@dataclass
class EndpointReport:
    """One endpoint's part in a run. Offsets and latency are in seconds."""

    name: str
    outcome: Outcome = "pending"
    result: Any = None
    attempts: int = 0
    status_code: int | None = None
    latency: float | None = None
    start: float | None = None
    end: float | None = None
    error: BaseException | None = None
    """Why it failed; for a ``fallback`` outcome, the failure the fallback replaced."""
    reason: str | None = None  # why it was skipped
    depends_on: list[str] = field(default_factory=list)
    chaos: str | None = None
    """The settings of the chaos layer that was on for this call (None: no chaos)."""
    injected: list[str] = field(default_factory=list)
    """What the chaos layer injected into this call's attempts, in order."""
    secrets: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)
    """The request's secret values (secret headers, secret query values, URL user
    info), scrubbed from :attr:`error_text`; the orchestrator sets them."""

    def note_chaos(self, settings: str, injected: str | None = None) -> None:
        """Called by a :class:`~lamina.layers.chaos.ChaosLayer` on this call: it is on
        (``settings``) and, when it did, what it injected."""
        self.chaos = settings
        if injected is not None:
            self.injected.append(injected)

    @property
    def error_text(self) -> str | None:
        """``"Type: message"`` of :attr:`error`, its message scrubbed of :attr:`secrets`
        (in every encoding: raw, repr and JSON escapes, HTML, percent-encoding)."""
        if self.error is None:
            return None
        return f"{type(self.error).__name__}: {scrub(str(self.error), self.secrets)}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (the error as :attr:`error_text`)."""
        return {
            "name": self.name,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "status_code": self.status_code,
            "latency_ms": None if self.latency is None else round(self.latency * 1000, 3),
            "start_ms": None if self.start is None else round(self.start * 1000, 3),
            "end_ms": None if self.end is None else round(self.end * 1000, 3),
            "error": self.error_text,
            "reason": self.reason,
            **({"chaos": self.chaos, "injected": list(self.injected)} if self.chaos else {}),
        }

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"outcome={self.outcome!r}"]
        if self.result is not None:
            parts.append(f"result=<{type(self.result).__name__}>")
        parts.append(f"attempts={self.attempts}")
        if self.status_code is not None:
            parts.append(f"status_code={self.status_code}")
        if self.latency is not None:
            parts.append(f"latency={self.latency:.6f}")
        if self.error is not None:
            parts.append(f"error={self.error_text!r}")
        if self.reason is not None:
            parts.append(f"reason={self.reason!r}")
        if self.depends_on:
            parts.append(f"depends_on={self.depends_on!r}")
        if self.chaos is not None:
            parts.append(f"chaos={self.chaos!r}, injected={self.injected!r}")
        return f"EndpointReport({', '.join(parts)})"


@dataclass
class RunReport:
    """The value ``execute`` returns, plus how each endpoint got there."""

    value: Any
    mode: str
    endpoints: dict[str, EndpointReport]
    duration: float
    order: list[str] = field(default_factory=list)  # the order calls started in
    in_order: bool = False  # True for modes that run one call at a time

    @property
    def ok(self) -> bool:
        """True when no endpoint failed or was cancelled."""
        return all(r.outcome in GOOD for r in self.endpoints.values())

    @property
    def failed(self) -> list[str]:
        """Names of the endpoints that failed without a handler."""
        return [n for n, r in self.endpoints.items() if r.outcome == "failed"]

    @property
    def fallbacks(self) -> list[str]:
        """Names of the endpoints answered by a fallback (their ``error`` says why)."""
        return [n for n, r in self.endpoints.items() if r.outcome == "fallback"]

    @property
    def chaos(self) -> dict[str, str]:
        """Endpoints whose calls ran with a chaos layer on, and its settings: a run with
        any is a resilience test, not a measure of the upstream."""
        return {n: r.chaos for n, r in self.endpoints.items() if r.chaos is not None}

    @property
    def critical_path(self) -> list[str]:
        """The chain of calls that decided the run's duration, first to last.

        Starting from the call that ended last, step back to the dependency (or,
        for in-order modes, the call before it) that ended last before it started.
        """
        done = {n: r for n, r in self.endpoints.items() if r.end is not None}
        if not done:
            return []
        position = {name: i for i, name in enumerate(self.order)}
        current = max(done.values(), key=lambda r: r.end or 0.0)
        path = [current.name]
        while True:
            start = current.start or 0.0
            before = [done[d] for d in current.depends_on if d in done]
            if not before and self.in_order and position.get(current.name, 0) > 0:
                previous = self.order[position[current.name] - 1]
                if previous in done and (done[previous].end or 0.0) <= start + 1e-9:
                    before = [done[previous]]
            before = [r for r in before if (r.end or 0.0) <= start + 1e-9]
            if not before:
                break
            current = max(before, key=lambda r: r.end or 0.0)
            path.append(current.name)
        return path[::-1]

    def summary(self) -> str:
        """A plain-text table: endpoint, outcome, status, attempts, latency, start
        (a CHAOS line first when fault injection was on)."""
        rows = [["endpoint", "outcome", "status", "attempts", "latency", "start", "note"]]
        for r in self.endpoints.values():
            note = r.reason or (type(r.error).__name__ if r.error is not None else "")
            rows.append(
                [
                    r.name,
                    r.outcome,
                    "" if r.status_code is None else str(r.status_code),
                    str(r.attempts),
                    "" if r.latency is None else f"{r.latency * 1000:.0f} ms",
                    "" if r.start is None else f"+{r.start * 1000:.0f} ms",
                    note,
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        if self.chaos:
            lines.insert(0, self.chaos_banner())
        lines.append(
            f"{self.mode} run: {self.duration * 1000:.0f} ms, "
            f"critical path {' -> '.join(self.critical_path) or '-'}"
        )
        return "\n".join(line.rstrip() for line in lines)

    def chaos_banner(self) -> str:
        """One loud line naming the endpoints chaos was on for and what it injected."""
        injected = sum(len(r.injected) for r in self.endpoints.values())
        return (
            f"CHAOS: fault injection was ON for {', '.join(self.chaos)} "
            f"({injected} injected); this run does not measure the upstream"
        )

    def __repr__(self) -> str:
        chaos = ", chaos=ON" if self.chaos else ""
        return (
            f"RunReport(mode={self.mode!r}, ok={self.ok}, value=<{type(self.value).__name__}>, "
            f"duration={self.duration:.6f}{chaos}, endpoints={list(self.endpoints.values())!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary of the run (results excluded)."""
        return {
            "mode": self.mode,
            "ok": self.ok,
            "duration_ms": round(self.duration * 1000, 3),
            "critical_path": self.critical_path,
            **({"chaos": self.chaos} if self.chaos else {}),
            "endpoints": [r.to_dict() for r in self.endpoints.values()],
        }
