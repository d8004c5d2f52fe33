"""Plain-text views of a flow and a run: results table, waterfall, dependency graph."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._redact import REDACTED, scrub, scrub_clip
from ..orchestration.config import APIOrchestrationConfig
from ..orchestration.report import EndpointReport, RunReport
from .progress import Timeline

__all__ = [
    "error_note",
    "graph_levels",
    "graph_mermaid",
    "graph_text",
    "results_table",
    "run_dict",
    "scrub_data",
    "waterfall",
]

IN_ORDER = frozenset({"sequential", "pipeline", "conditional"})


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.0f} ms"


def is_cached(report: RunReport, name: str, timelines: Mapping[str, Timeline]) -> bool:
    """True when ``name``'s result came from the cache."""
    timeline = timelines.get(name)
    return report.endpoints[name].outcome in ("cached", "stale") or bool(
        timeline and timeline.cache_hit
    )


def attempts(report: RunReport, name: str, timelines: Mapping[str, Timeline]) -> int:
    """Attempts made: the report's count, or the attempts the recorder saw if more."""
    timeline = timelines.get(name)
    seen = sum(s.kind == "attempt" for s in timeline.segments) if timeline else 0
    return max(report.endpoints[name].attempts, seen)


#: Longest error note in the results table (the JSON output and HTML report hold it all).
NOTE_CHARS = 100


def error_note(report: EndpointReport, limit: int = NOTE_CHARS, secrets: Iterable[str] = ()) -> str:
    """``Type: message`` of the endpoint's error on one line, scrubbed of its request's
    secrets and of ``secrets`` (the flow's hidden values) before it is cut to ``limit``
    (a value cut in two would no longer be found), without the ``[endpoint]`` prefix."""
    error = report.error
    if error is None:
        return ""
    hidden = report.secrets | frozenset(secrets) if secrets else report.secrets
    message = " ".join(scrub_clip(str(error), hidden, limit + 64).split())
    prefix = f"[{report.name}] "
    message = message.removeprefix(prefix).removeprefix(f"{type(error).__name__}: ")
    note = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return note if len(note) <= limit else note[: limit - 1].rstrip() + "…"


def results_table(
    report: RunReport, timelines: Mapping[str, Timeline], secrets: Iterable[str] = ()
) -> str:
    """Endpoint, outcome, status, attempts, latency, cached and a note, one row each
    (``secrets`` scrubbed from the notes before they are cut)."""
    rows = [["endpoint", "outcome", "status", "attempts", "latency", "cached", "note"]]
    hidden = frozenset(secrets)
    for name, r in report.endpoints.items():
        note = r.reason or error_note(r, secrets=hidden)
        rows.append(
            [
                name,
                r.outcome,
                "" if r.status_code is None else str(r.status_code),
                str(attempts(report, name, timelines)),
                _ms(r.latency),
                "yes" if is_cached(report, name, timelines) else "no",
                note,
            ]
        )
    return _table(rows)


WIDTH = 48
LEGEND = "# attempt  x failed attempt  . retry wait  ~ rate-limit wait  = rest of the call"


_RANK = {" ": 0, "=": 1, "#": 2, ".": 3, "~": 4, "x": 5}


def waterfall(report: RunReport, timelines: Mapping[str, Timeline], width: int = WIDTH) -> str:
    """One bar per endpoint on a shared time axis, attempts and waits drawn inside."""
    span = max(
        [report.duration]
        + [r.end for r in report.endpoints.values() if r.end is not None]
        + [s.end for t in timelines.values() for s in t.segments],
    )
    span = span if span > 0 else 1e-3
    name_width = max(len(n) for n in report.endpoints)

    def col(t: float) -> int:
        return min(width - 1, max(0, int(t / span * width)))

    lines = [f"{'':<{name_width}}  0 ms{' ' * (width - 8)}{span * 1000:>6.0f} ms"]
    for name, r in report.endpoints.items():
        cells = [" "] * width
        if r.start is not None:
            end = r.end if r.end is not None else report.duration
            for i in range(col(r.start), col(end) + 1):
                cells[i] = "="
            timeline = timelines.get(name)
            for seg in timeline.segments if timeline else ():
                char = {"retry-wait": ".", "ratelimit-wait": "~"}.get(
                    seg.kind, "x" if seg.error else "#"
                )
                for i in range(col(seg.start), col(seg.end) + 1):
                    # on a shared cell the more telling mark wins: x > ~ > . > # > =
                    if _RANK[char] >= _RANK[cells[i]]:
                        cells[i] = char
        note = r.outcome if r.start is not None else f"{r.outcome} ({r.reason or 'not started'})"
        lines.append(f"{name:<{name_width}} |{''.join(cells)}| {_ms(r.latency):>7} {note}")
    lines.append(LEGEND)
    return "\n".join(line.rstrip() for line in lines)


def run_dict(report: RunReport, timelines: Mapping[str, Timeline]) -> dict[str, Any]:
    """``report.to_dict()`` plus, per endpoint, ``cached`` and its timeline."""
    data = report.to_dict()
    for entry in data["endpoints"]:
        name = entry["name"]
        entry["cached"] = is_cached(report, name, timelines)
        entry["attempts"] = attempts(report, name, timelines)
        entry["depends_on"] = list(report.endpoints[name].depends_on)
        timeline = timelines.get(name)
        entry["timeline"] = (timeline or Timeline()).to_dict()
    data["value"] = report.value
    return data


def scrub_data(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` as JSON-ready data with ``secrets`` scrubbed from every string in it
    (keys included) before it is serialized, so the JSON stays valid: scrubbing the
    serialized text would also hit JSON's own tokens (``true``, ``null``, a number).
    A number equal to a secret becomes ``"[REDACTED]"``; ``true``, ``false`` and
    ``null`` stay. Other objects become their ``str()``, scrubbed (as
    ``json.dumps(default=str)`` would write them)."""
    hidden = frozenset(s for s in secrets if s)
    if not hidden:
        return value
    numbers = {s.strip() for s in hidden}
    return _scrub_value(value, hidden, numbers)


def _scrub_value(value: Any, hidden: frozenset[str], numbers: set[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, hidden)
    if value is None or value is True or value is False:  # JSON's own tokens stay
        return value
    if isinstance(value, int | float):
        return REDACTED if str(value) in numbers else value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _scrub_value(key if isinstance(key, str) else _key(key), hidden, numbers)
            name = str(name)
            while name in out:  # two keys scrubbed alike: keep both
                name += "'"
            out[name] = _scrub_value(item, hidden, numbers)
        return out
    if isinstance(value, list | tuple):
        return [_scrub_value(item, hidden, numbers) for item in value]
    return scrub(str(value), hidden)


def _key(key: Any) -> str:
    """A non-string key as ``json.dumps`` writes it (other objects: their ``str()``)."""
    return json.dumps(key) if key is None or isinstance(key, int | float) else str(key)


# -- the dependency graph --------------------------------------------------------


def graph_edges(config: APIOrchestrationConfig) -> list[tuple[str, str, str]]:
    """``(before, after, kind)``: ``depends_on`` edges, and ``then`` for in-order modes."""
    edges = [(dep, e.name, "depends_on") for e in config.endpoints for dep in e.dependencies]
    if config.mode.value in IN_ORDER:
        names = config.endpoint_names
        explicit = {(a, b) for a, b, _ in edges}
        edges += [(a, b, "then") for a, b in itertools.pairwise(names) if (a, b) not in explicit]
    return edges


def graph_levels(config: APIOrchestrationConfig) -> dict[str, int]:
    """Column of each endpoint: its position for in-order modes, else its depth."""
    if config.mode.value in IN_ORDER:
        return {name: i for i, name in enumerate(config.endpoint_names)}
    level: dict[str, int] = {}
    pending = list(config.endpoints)
    while pending:  # the config has no cycles (validated at construction)
        rest = []
        for e in pending:
            if all(d in level for d in e.dependencies):
                level[e.name] = 1 + max((level[d] for d in e.dependencies), default=-1)
            else:
                rest.append(e)
        if len(rest) == len(pending):  # defensive: never loop forever
            level.update({e.name: 0 for e in rest})
            break
        pending = rest
    return level


def graph_mermaid(config: APIOrchestrationConfig) -> str:
    """The dependency graph as a Mermaid ``flowchart`` (``then``: dashed, in-order modes)."""
    ids = {name: f"n{i}" for i, name in enumerate(config.endpoint_names)}
    lines = ["flowchart LR"]
    for e in config.endpoints:
        label = f"{e.name}<br/>{e.method}".replace('"', "#quot;")
        lines.append(f'    {ids[e.name]}["{label}"]')
    for a, b, kind in graph_edges(config):
        arrow = "-.->" if kind == "then" else "-->"
        lines.append(f"    {ids[a]} {arrow} {ids[b]}")
    return "\n".join(lines)


def graph_text(config: APIOrchestrationConfig) -> str:
    """The dependency graph as text: one line per level, then each endpoint's inputs."""
    mode = config.mode.value
    levels = graph_levels(config)
    by_level: dict[int, list[str]] = {}
    for name, lvl in levels.items():
        by_level.setdefault(lvl, []).append(name)
    head = (
        f"mode {mode}: one call at a time, in this order"
        if mode in IN_ORDER
        else f"mode {mode}: each call starts when its dependencies are done"
        if mode == "hybrid"
        else f"mode {mode}: calls run concurrently (max_concurrent={config.max_concurrent}),"
        " after their dependencies"
    )
    lines = [head]
    for lvl in sorted(by_level):
        lines.append(f"  step {lvl + 1}: {', '.join(by_level[lvl])}")
    edges = graph_edges(config)
    if edges:
        lines.append("edges:")
        lines += [
            f"  {a} {'-->' if kind == 'depends_on' else '..>'} {b}"
            + ("" if kind == "depends_on" else "  (config order)")
            for a, b, kind in edges
        ]
    else:
        lines.append("edges: none (no endpoint depends on another)")
    return "\n".join(lines)
