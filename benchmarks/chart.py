"""A small hand-written SVG bar chart (no plotting dependency).

``svg(panels)`` stacks panels of horizontal bars; each panel may draw a dashed
target line. ``run_all.py`` uses it for ``docs/performance.svg``. Run this file to
write a demo chart to stdout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

WIDTH = 860
LABEL_W = 250  # left column for bar labels
VALUE_W = 90  # right column for the value text
BAR_H = 18
GAP = 6
TITLE_H = 28
PANEL_PAD = 18
COLORS = {
    "lamina": "#2b6cb0",
    "other": "#a0aec0",
    "peer": "#dd6b20",
    "met": "#38a169",
    "missed": "#c53030",
}
LEGEND = {
    "lamina": "lamina",
    "other": "hand-written / bare client",
    "peer": "peer",
    "met": "target met",
    "missed": "target not met",
}


@dataclass
class Bar:
    """One bar: its label, value, how to print the value, and whose it is."""

    label: str
    value: float
    text: str = ""
    kind: str = "other"  # "lamina", "other", "peer", "met" or "missed": the colour


@dataclass
class Panel:
    """A titled group of bars with an optional target line."""

    title: str
    bars: list[Bar] = field(default_factory=list)
    target: float | None = None
    target_label: str = ""
    log: bool = False  # log scale, for values spanning orders of magnitude


def _x(value: float, top: float, log: bool, span: float) -> float:
    import math

    if log:
        lo = 1.0
        return span * max(0.0, math.log10(max(value, lo))) / math.log10(max(top, lo * 10))
    return span * value / top if top > 0 else 0.0


def svg(panels: list[Panel], title: str = "") -> str:
    """The panels as one SVG document."""
    span = WIDTH - LABEL_W - VALUE_W - 20
    parts: list[str] = []
    y = 10
    if title:
        parts.append(
            f'<text x="10" y="{y + 16}" font-size="16" font-weight="bold">{escape(title)}</text>'
        )
        y += 30
    for panel in panels:
        values = [b.value for b in panel.bars] + ([panel.target] if panel.target else [])
        top = max([*values, 1e-9]) * 1.08
        parts.append(
            f'<text x="10" y="{y + 18}" font-size="13" font-weight="bold">'
            f"{escape(panel.title)}</text>"
        )
        y += TITLE_H
        y0 = y
        for bar in panel.bars:
            w = _x(bar.value, top, panel.log, span)
            color = COLORS.get(bar.kind, COLORS["other"])
            parts.append(
                f'<text x="{LABEL_W - 6}" y="{y + BAR_H - 5}" font-size="12" '
                f'text-anchor="end">{escape(bar.label)}</text>'
            )
            parts.append(
                f'<rect x="{LABEL_W}" y="{y}" width="{max(w, 1):.1f}" height="{BAR_H}" '
                f'fill="{color}"/>'
            )
            parts.append(
                f'<text x="{LABEL_W + max(w, 1) + 4:.1f}" y="{y + BAR_H - 5}" '
                f'font-size="11">{escape(bar.text or f"{bar.value:g}")}</text>'
            )
            y += BAR_H + GAP
        if panel.target is not None:
            tx = LABEL_W + _x(panel.target, top, panel.log, span)
            parts.append(
                f'<line x1="{tx:.1f}" y1="{y0 - 4}" x2="{tx:.1f}" y2="{y - GAP + 4}" '
                'stroke="#c53030" stroke-width="1.5" stroke-dasharray="5,3"/>'
            )
            parts.append(
                f'<text x="{tx + 3:.1f}" y="{y0 - 6}" font-size="10" fill="#c53030">'
                f"{escape(panel.target_label)}</text>"
            )
        y += PANEL_PAD
    used = {bar.kind for panel in panels for bar in panel.bars}
    x = 10
    for kind, text in LEGEND.items():
        if kind not in used:
            continue
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{COLORS[kind]}"/>')
        parts.append(f'<text x="{x + 16}" y="{y + 10}" font-size="11">{escape(text)}</text>')
        x += 40 + 7 * len(text)
    y += 24
    body = "\n  ".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" '
        f'viewBox="0 0 {WIDTH} {y}" font-family="Helvetica, Arial, sans-serif">\n'
        f'  <rect width="{WIDTH}" height="{y}" fill="white"/>\n  {body}\n</svg>\n'
    )


if __name__ == "__main__":
    demo = Panel(
        "Demo: ms per run",
        [Bar("lamina", 12.0, "12 ms", "lamina"), Bar("gather", 10.0, "10 ms")],
        target=15,
        target_label="target 15 ms",
    )
    print(svg([demo], "chart.py demo"))
