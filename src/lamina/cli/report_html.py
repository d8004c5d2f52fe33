"""A run as one self-contained HTML page: waterfall, dependency graph, results table.

The page has no network assets: CSS, the script that draws the waterfall and
the SVG graph are inline; the run's data is embedded as JSON. It holds no
results and no secrets: URLs are redacted, headers are not included.

Everything that comes from the run (endpoint names, URLs, errors, reasons, the
title) is data, never markup: it is HTML-escaped where it is written into the
page, and the embedded JSON cannot close its ``<script>`` element. The page's
Content-Security-Policy (:data:`CONTENT_SECURITY_POLICY`) lets only the page's
own script and stylesheet run, by hash, and loads nothing.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

from .._redact import redact_url, scrub
from .._version import __version__
from ..orchestration.config import APIOrchestrationConfig
from ..orchestration.report import RunReport
from .progress import Timeline
from .render import attempts, graph_edges, graph_levels, is_cached, run_dict, scrub_data

__all__ = ["CONTENT_SECURITY_POLICY", "render_html", "write_html"]

COLOURS = {
    "ok": "#2e9d5b",
    "cached": "#3a7bd5",
    "stale": "#6f8fc9",
    "handled": "#d49b00",
    "fallback": "#c77d1a",
    "failed": "#d64545",
    "skipped": "#9aa0a6",
    "cancelled": "#7d5a9a",
    "pending": "#bbbbbb",
}


def write_html(
    path: str | Path,
    report: RunReport,
    config: APIOrchestrationConfig,
    timelines: Mapping[str, Timeline] | None = None,
    *,
    title: str = "lamina run",
    secrets: Iterable[str] = (),
) -> Path:
    """Write :func:`render_html`'s page to ``path`` and return the path."""
    target = Path(path)
    target.write_text(
        render_html(report, config, timelines, title=title, secrets=secrets), encoding="utf-8"
    )
    return target


def render_html(
    report: RunReport,
    config: APIOrchestrationConfig,
    timelines: Mapping[str, Timeline] | None = None,
    *,
    title: str = "lamina run",
    secrets: Iterable[str] = (),
) -> str:
    """The report page for ``report`` (a run of ``config``) as one HTML string.

    ``timelines`` (from :class:`lamina.cli.progress.Recorder`) add attempts, retry
    and rate-limit waits and cache/breaker marks; ``secrets`` are values scrubbed
    from the page (for example the environment variables a flow file used).
    """
    timelines = timelines or {}
    hidden = frozenset(s for s in secrets if s)
    data = run_dict(report, timelines)
    data.pop("value", None)  # results stay out of the page
    endpoints = {e.name: e for e in config.endpoints}
    for entry in data["endpoints"]:
        endpoint = endpoints.get(entry["name"])
        if endpoint is not None:
            entry["method"] = endpoint.method
            entry["url"] = redact_url(endpoint.url)
    verdict_text = "succeeded" if report.ok else f"failed ({', '.join(report.failed) or 'run'})"
    if report.chaos:  # fault injection was on: the run does not measure the upstream
        verdict_text += f"; CHAOS: fault injection was ON for {', '.join(report.chaos)}"
    # What comes from the run is scrubbed before it is escaped or serialized, never
    # after: scrubbing the page would hit its markup and JSON tokens (an ${ENV} value
    # "true" or "span"), and the script and stylesheet must stay what the hashes allow.
    return _PAGE.substitute(
        title=_e(title, hidden),
        mode=_e(report.mode, hidden),
        verdict_text=_e(verdict_text, hidden),
        critical=_e(" \u2192 ".join(report.critical_path) or "-", hidden),
        graph=graph_svg(config, report, secrets=hidden),
        table=_table(report, timelines, config, hidden),
        data=script_json(scrub_data(data, hidden)),
        csp=_e(CONTENT_SECURITY_POLICY),
        version=_e(__version__),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        verdict="ok" if report.ok else "failed",
        duration=f"{report.duration * 1000:.0f}",
        count=len(report.endpoints),
        css=_CSS,
        legend=_legend(),
        script=_SCRIPT,
        colours=script_json(COLOURS),
    )


def _e(value: object, secrets: frozenset[str] = frozenset()) -> str:
    """``value`` as HTML text, safe in element content and in quoted attributes, with
    ``secrets`` scrubbed from it first."""
    return html.escape(scrub(str(value), secrets) if secrets else str(value), quote=True)


def script_json(value: Any) -> str:
    """``value`` as JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` are written as ``\\u003c``, ``\\u003e`` and ``\\u0026``, so no
    string in it can close the element (``</script>``) or open a comment
    (``<!--``) that changes how the HTML parser reads the rest; ``JSON.parse``
    gives back the same strings. U+2028 and U+2029 are escaped too.
    """
    text = json.dumps(value, default=str)
    for raw, escaped in _SCRIPT_ESCAPES:
        text = text.replace(raw, escaped)
    return text


_SCRIPT_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def _colour_class(outcome: str) -> str:
    """The CSS class that colours ``outcome`` (no style attributes: the CSP forbids them)."""
    return f"c-{outcome}" if outcome in COLOURS else "c-other"


def _legend() -> str:
    items = [
        f'<span class="key"><i class="{_colour_class(o)}"></i>{_e(o)}</span>'
        for o in COLOURS
        if o != "pending"
    ]
    items += [
        '<span class="key"><i class="k-attempt"></i>attempt</span>',
        '<span class="key"><i class="k-attempt-err"></i>failed attempt</span>',
        '<span class="key"><i class="k-retry"></i>retry wait</span>',
        '<span class="key"><i class="k-rl"></i>rate-limit wait</span>',
        '<span class="key"><b class="k-mark">\u25c6</b>cache hit / breaker event</span>',
    ]
    return "".join(items)


def _table(
    report: RunReport,
    timelines: Mapping[str, Timeline],
    config: APIOrchestrationConfig,
    hidden: frozenset[str],
) -> str:
    endpoints = {e.name: e for e in config.endpoints}
    rows = []
    for name, r in report.endpoints.items():
        endpoint = endpoints.get(name)
        target = "" if endpoint is None else f"{endpoint.method} {redact_url(endpoint.url)}"
        note = r.reason or r.error_text or ""
        cells = [
            f"<td>{_e(name, hidden)}</td>",
            f'<td><span class="pill {_colour_class(r.outcome)}">{_e(r.outcome)}</span></td>',
            f"<td>{'' if r.status_code is None else _e(r.status_code)}</td>",
            f"<td>{_e(attempts(report, name, timelines))}</td>",
            f"<td>{'' if r.latency is None else f'{r.latency * 1000:.1f} ms'}</td>",
            f"<td>{'yes' if is_cached(report, name, timelines) else 'no'}</td>",
            f'<td class="mono">{_e(target, hidden)}</td>',
            f"<td>{_e(note, hidden)}</td>",
        ]
        rows.append(f'<tr class="outcome-{_e(r.outcome)}">{"".join(cells)}</tr>')
    head = "".join(
        f"<th>{h}</th>"
        for h in ("endpoint", "outcome", "status", "attempts", "latency", "cached", "call", "note")
    )
    return (
        f'<table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 150, 46, 70, 18, 16


def graph_svg(
    config: APIOrchestrationConfig,
    report: RunReport | None = None,
    *,
    secrets: Iterable[str] = (),
) -> str:
    """The dependency graph as an inline SVG; nodes coloured by outcome when ``report``;
    ``secrets`` scrubbed from the names before they are escaped."""
    hidden = frozenset(s for s in secrets if s)
    levels = graph_levels(config)
    rows: dict[int, int] = {}
    pos: dict[str, tuple[int, int]] = {}
    for e in config.endpoints:
        lvl = levels[e.name]
        row = rows.get(lvl, 0)
        rows[lvl] = row + 1
        pos[e.name] = (PAD + lvl * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    width = PAD * 2 + (max(levels.values(), default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(rows.values(), default=1) * (NODE_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="dependency graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#667"/></marker></defs>',
    ]
    for a, b, kind in graph_edges(config):
        (x1, y1), (x2, y2) = pos[a], pos[b]
        sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        mid = (sx + ex) / 2
        dash = ' stroke-dasharray="5 4"' if kind == "then" else ""
        parts.append(
            f'<path class="edge" d="M{sx},{sy} C{mid},{sy} {mid},{ey} {ex - 2},{ey}" '
            f'fill="none" stroke="#667" stroke-width="1.5"{dash} marker-end="url(#arrow)">'
            f"<title>{_e(a, hidden)} \u2192 {_e(b, hidden)} ({_e(kind)})</title></path>"
        )
    for e in config.endpoints:
        x, y = pos[e.name]
        outcome = report.endpoints[e.name].outcome if report and e.name in report.endpoints else ""
        colour = COLOURS.get(outcome, "#5b6b8c")
        name = scrub(e.name, hidden) if hidden else e.name  # before it is cut
        label = name if len(name) <= 18 else name[:17] + "\u2026"
        sub = f"{e.method} \u00b7 {outcome}" if outcome else e.method
        parts.append(
            f'<g class="node"><title>{_e(name)}: {_e(sub)}</title>'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8" fill="#fff" '
            f'stroke="{colour}" stroke-width="2.5"/>'
            f'<rect x="{x}" y="{y}" width="7" height="{NODE_H}" rx="3" fill="{colour}"/>'
            f'<text x="{x + 16}" y="{y + 19}" font-size="13" font-weight="600">'
            f"{_e(label)}</text>"
            f'<text x="{x + 16}" y="{y + 36}" font-size="11" fill="#556">{_e(sub)}</text>'
            "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;
background:#f5f6f8}
header{background:#1f2937;color:#fff;padding:14px 24px}
header h1{margin:0 0 4px;font-size:20px}
header .meta span{margin-right:18px;opacity:.9}
.verdict{padding:2px 8px;border-radius:10px;font-weight:600}
.verdict.ok{background:#2e9d5b}.verdict.failed{background:#d64545}
section{background:#fff;margin:14px 24px;padding:12px 16px;border-radius:8px;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:15px;margin:0 0 10px}
.legend{font-size:12px;margin-bottom:8px}
.key{margin-right:12px;white-space:nowrap}
.key i{display:inline-block;width:14px;height:10px;margin-right:4px;border-radius:2px;
vertical-align:middle}
.k-attempt{background:#2e9d5b}.k-attempt-err{background:#d64545}
.k-retry{background:repeating-linear-gradient(45deg,#bbb 0 3px,#eee 3px 6px)}
.k-rl{background:repeating-linear-gradient(45deg,#e0a800 0 3px,#fff3cd 3px 6px)}
.k-mark{color:#1f2937;margin-right:4px}
#waterfall{position:relative;font-size:12px}
.row{display:flex;align-items:center;height:24px;border-bottom:1px solid #eef0f3}
.row.child{height:18px;color:#556}
.row:hover{background:#f0f4ff}
.label{width:220px;flex:none;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;
padding-right:8px;cursor:default}
.row.child .label{padding-left:18px}
.row.parent .label{cursor:pointer;font-weight:600}
.track{position:relative;flex:1;height:100%}
.bar{position:absolute;top:5px;height:14px;min-width:2px;border-radius:3px}
.row.child .bar{top:4px;height:10px}
.bar.retry-wait{background:repeating-linear-gradient(45deg,#bbb 0 3px,#eee 3px 6px)}
.bar.ratelimit-wait{background:repeating-linear-gradient(45deg,#e0a800 0 3px,#fff3cd 3px 6px)}
.bar.attempt{background:#2e9d5b}.bar.attempt.error{background:#d64545}
.bar .txt{position:absolute;left:100%;margin-left:4px;white-space:nowrap;color:#445;
font-size:11px;line-height:14px}
.bar .txt.left{left:auto;right:100%;margin-left:0;margin-right:4px}
.row.child .bar .txt{line-height:10px}
.mark{position:absolute;top:3px;font-size:13px;line-height:16px;margin-left:-6px;color:#1f2937}
.axis{height:22px;border-bottom:1px solid #ccd}
.tick{position:absolute;top:0;height:100%;border-left:1px solid #dde;font-size:11px;
padding-left:3px;color:#667}
.gridline{position:absolute;top:0;bottom:0;border-left:1px dashed #eef0f3;pointer-events:none}
.skipped .label{color:#888;font-style:italic}
#tip{position:fixed;display:none;background:#1f2937;color:#fff;padding:6px 9px;border-radius:5px;
font-size:12px;pointer-events:none;white-space:pre;z-index:10;max-width:480px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eef0f3}
th{background:#f7f8fa}
.pill{color:#fff;padding:1px 7px;border-radius:9px;font-size:12px}
.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
#graphbox{overflow-x:auto}
#graph text{font-family:system-ui,sans-serif;fill:#1d2330}
"""
_CSS += "".join(f".c-{o}{{background:{c}}}" for o, c in COLOURS.items())
_CSS += ".c-other{background:#999}\n"

_SCRIPT = r"""
(function () {
  var data = JSON.parse(document.getElementById("run-data").textContent);
  var colours = JSON.parse(document.getElementById("colours").textContent);
  var root = document.getElementById("waterfall");
  var tip = document.getElementById("tip");
  var span = Math.max(data.duration_ms, 0.001);
  data.endpoints.forEach(function (e) {
    if (e.end_ms !== null) span = Math.max(span, e.end_ms);
    e.timeline.segments.forEach(function (s) { span = Math.max(span, s.end_ms); });
  });
  function pct(ms) { return (100 * ms / span).toFixed(3) + "%"; }
  function fmt(ms) { return ms < 10 ? ms.toFixed(1) + " ms" : Math.round(ms) + " ms"; }
  function el(tag, cls, parent) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (parent) parent.appendChild(n);
    return n;
  }
  function hover(node, text) {
    node.setAttribute("title", text);
    node.addEventListener("mousemove", function (ev) {
      tip.textContent = text; tip.style.display = "block";
      tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 12) + "px";
    });
    node.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  }
  function label_of(b, end, text) {
    var t = el("span", end / span > 0.75 ? "txt left" : "txt", b);
    t.textContent = text;
    return t;
  }
  function bar(track, start, end, cls, colour, text) {
    var b = el("div", "bar " + cls, track);
    b.style.left = pct(start);
    b.style.width = pct(Math.max(end - start, 0));
    if (colour) b.style.background = colour;
    hover(b, text);
    return b;
  }
  var axis = el("div", "row axis", root);
  el("div", "label", axis).textContent = "endpoint";
  var axisTrack = el("div", "track", axis);
  for (var i = 0; i <= 5; i++) {
    var t = el("div", "tick", axisTrack);
    t.style.left = (i * 20) + "%";
    t.textContent = fmt(span * i / 5);
    if (i === 5) { t.style.left = "auto"; t.style.right = "0"; t.style.borderLeft = "none"; }
  }
  data.endpoints.forEach(function (e) {
    var row = el("div", "row parent outcome-" + e.outcome, root);
    row.setAttribute("data-endpoint", e.name);
    var label = el("div", "label", row);
    label.textContent = e.name;
    var track = el("div", "track", row);
    var info = e.name + "\n" + (e.method || "") + " " + (e.url || "") +
      "\noutcome: " + e.outcome + (e.status_code ? "  status: " + e.status_code : "") +
      "\nattempts: " + e.attempts + (e.cached ? "  (from cache)" : "");
    if (e.start_ms === null) {
      row.className += " skipped";
      var s = el("span", "txt", track);
      s.style.position = "absolute"; s.style.left = "0"; s.style.color = "#888";
      s.textContent = e.outcome + (e.reason ? ": " + e.reason : "");
      hover(label, info + (e.reason ? "\nreason: " + e.reason : ""));
      return;
    }
    var end = e.end_ms === null ? span : e.end_ms;
    info += "\nstart: +" + fmt(e.start_ms) + "  latency: " + fmt(end - e.start_ms);
    if (e.error) info += "\nerror: " + e.error;
    var call = bar(track, e.start_ms, end, "call outcome-" + e.outcome,
                   colours[e.outcome] || "#999", info);
    label_of(call, end, fmt(end - e.start_ms) + (e.status_code ? " \u00b7 " + e.status_code : "") +
      (e.cached ? " \u00b7 cached" : "") +
      (e.attempts > 1 ? " \u00b7 " + e.attempts + " attempts" : ""));
    hover(label, info);
    e.timeline.marks.forEach(function (m) {
      var mk = el("div", "mark", track);
      mk.style.left = pct(m.at_ms);
      mk.textContent = "\u25c6";
      hover(mk, m.kind + " at +" + fmt(m.at_ms));
    });
    var children = [];
    var segs = e.timeline.segments.slice();
    segs.sort(function (a, b) { return a.start_ms - b.start_ms; });
    if (segs.length > 1 || segs.some(function (s) { return s.kind !== "attempt"; })) {
      segs.forEach(function (s) {
        var crow = el("div", "row child", root);
        children.push(crow);
        var name = s.kind === "attempt" ? "attempt " + (s.attempt || "") :
          s.kind === "retry-wait" ? "retry wait" : "rate-limit wait";
        el("div", "label", crow).textContent = name;
        var ctrack = el("div", "track", crow);
        var text = e.name + ": " + name + "\n+" + fmt(s.start_ms) + " \u2192 +" + fmt(s.end_ms) +
          " (" + fmt(s.end_ms - s.start_ms) + ")" +
          (s.status ? "\nstatus: " + s.status : "") + (s.error ? "\nerror: " + s.error : "");
        var cls = s.kind + (s.kind === "attempt" && s.error ? " error" : "");
        var b = bar(ctrack, s.start_ms, s.end_ms, cls, null, text);
        label_of(b, s.end_ms, fmt(s.end_ms - s.start_ms) + (s.status ? " \u00b7 " + s.status :
          s.error ? " \u00b7 " + s.error : ""));
      });
    }
    label.addEventListener("click", function () {
      children.forEach(function (c) {
        c.style.display = c.style.display === "none" ? "" : "none";
      });
    });
  });
  root.setAttribute("data-drawn", String(root.querySelectorAll(".bar").length));
})();
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


#: The page's policy: nothing is loaded or sent, no plugin, form, base or frame;
#: only the page's own ``<script>`` and ``<style>`` (by hash) run. The JSON data
#: blocks are not scripts, so they need no hash.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"script-src {_sha256(_SCRIPT)}; "
    f"style-src {_sha256(_CSS)}; "
    "img-src 'none'; connect-src 'none'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)

_PAGE = Template(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="$csp">
<meta name="generator" content="lamina $version">
<title>$title</title>
<style>$css</style></head>
<body>
<header><h1>$title</h1>
<div class="meta"><span class="verdict $verdict">$verdict_text</span>
<span>mode <b>$mode</b></span><span>$count endpoints</span><span>duration <b>$duration ms</b></span>
<span>critical path <b>$critical</b></span><span>$generated</span></div></header>
<section><h2>Timeline</h2><div class="legend">$legend</div>
<div id="waterfall"></div>
<noscript>The waterfall needs JavaScript; the table below has the same numbers.</noscript>
</section>
<section><h2>Dependency graph</h2><div id="graphbox">$graph</div></section>
<section><h2>Results</h2>$table</section>
<div id="tip"></div>
<script type="application/json" id="run-data">$data</script>
<script type="application/json" id="colours">$colours</script>
<script>$script</script>
</body></html>
"""
)


def page_data(text: str) -> dict[str, Any]:
    """The run data embedded in a report page (for tests and tools)."""
    start = text.index('<script type="application/json" id="run-data">') + len(
        '<script type="application/json" id="run-data">'
    )
    end = text.index("</script>", start)
    data: dict[str, Any] = json.loads(text[start:end])
    return data
