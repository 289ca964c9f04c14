"""Charts as SVG drawn on the server: no script, no canvas, nothing fetched by the browser.

Each chart is an ``<svg role="img">`` with a title and a description for screen readers; the pages also
show the same numbers as a table. Colours are from the Okabe-Ito palette (distinguishable with the
common colour-vision deficiencies), each with at least 3:1 contrast on white, and every series also has
its own dash pattern so colour is never the only cue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import count

from markupsafe import Markup, escape

PALETTE = (
    ("#1f2937", ""),  # near-black, solid: "all accounts"
    ("#0072b2", "6 3"),  # blue
    ("#c2410c", "2 3"),  # dark vermillion
    ("#007a5a", "8 3 2 3"),  # dark bluish green
    ("#a3367e", "4 2"),  # dark reddish purple
    ("#6b5b00", "1 2"),  # dark yellow
)
_ids = count(1)


@dataclass(frozen=True)
class Series:
    """One line: a name, a value per time (``None`` where there is no value), and how it is drawn."""

    name: str
    values: Sequence[float | None]
    color: str
    dash: str = ""
    strong: bool = False


def styled(names: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(name, colour, dash)`` for each name, in palette order."""
    return [(name, *PALETTE[i % len(PALETTE)]) for i, name in enumerate(names)]


def _fmt_pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def line_chart(
    *,
    title: str,
    times: Sequence[datetime],
    series: Sequence[Series],
    label_format: str = "%b %Y",
    width: int = 480,
    height: int = 220,
) -> Markup:
    """A line chart of shares (0 to 1) over time, with a 0-100 % axis and hover titles on the points."""
    chart_id = f"chart-{next(_ids)}"
    left, right, top, bottom = 44, 12, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(times)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - max(0.0, min(1.0, v)))

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
    ]
    last = [s for s in series if s.values and s.values[-1] is not None]
    summary = "; ".join(f"{s.name} {_fmt_pct(float(s.values[-1] or 0))}" for s in last)
    parts.append(f'<desc id="{chart_id}-d">Share allowing, latest: {escape(summary)}</desc>')
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        ty = y(tick)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" '
            'stroke="#d1d5db" stroke-width="1"/>'
        )
        parts.append(
            f'<text class="tick" x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end" fill="#374151" '
            f'font-size="11">{int(tick * 100)}%</text>'
        )
    if n:
        shown = sorted({0, n // 2, n - 1}) if n > 2 else list(range(n))
        for i in shown:
            anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
            parts.append(
                f'<text class="tick" x="{x(i):.1f}" y="{height - 8}" text-anchor="{anchor}" fill="#374151" '
                f'font-size="11">{escape(times[i].strftime(label_format))}</text>'
            )
    for s in series:
        points = [(x(i), y(v), v) for i, v in enumerate(s.values) if v is not None]
        if not points:
            continue
        path = " ".join(f"{'M' if j == 0 else 'L'}{px:.1f},{py:.1f}" for j, (px, py, _) in enumerate(points))
        dash = f' stroke-dasharray="{escape(s.dash)}"' if s.dash else ""
        color = escape(s.color)
        stroke_width = 3 if s.strong else 2
        parts.append(
            f'<path d="{path}" fill="none" stroke="{color}" stroke-width="{stroke_width}"{dash} '
            'stroke-linejoin="round" stroke-linecap="round"/>'
        )
        for i, v in enumerate(s.values):
            if v is None:
                continue
            label = f"{s.name}, {times[i].strftime('%d %b %Y')}: {_fmt_pct(v)}"
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{3 if s.strong else 2.5}" fill="{color}">'
                f"<title>{escape(label)}</title></circle>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text and attribute value above is escaped)


def swatch(color: str, dash: str, *, strong: bool = False) -> Markup:
    """A short line in a series' colour and dash, for legends."""
    dash_attr = f' stroke-dasharray="{escape(dash)}"' if dash else ""
    return Markup(  # noqa: S704 (the colour and dash are escaped)
        '<svg class="swatch" viewBox="0 0 28 10" width="28" height="10" aria-hidden="true" focusable="false">'
        f'<line x1="1" y1="5" x2="27" y2="5" stroke="{escape(color)}" stroke-width="{3 if strong else 2}"'
        f'{dash_attr} stroke-linecap="round"/></svg>'
    )


def bar(share: float, *, color: str = "#0f5ea8", width: int = 120, label: str = "") -> Markup:
    """A horizontal bar for a share between 0 and 1 (decorative: the number is printed next to it)."""
    filled = round(width * max(0.0, min(1.0, share)), 1)
    return Markup(  # noqa: S704 (numbers, and the escaped colour and label)
        f'<svg class="bar" viewBox="0 0 {width} 10" width="{width}" height="10" aria-hidden="true" '
        f'focusable="false"><rect x="0" y="0" width="{width}" height="10" rx="2" fill="#e5e7eb"/>'
        f'<rect x="0" y="0" width="{filled}" height="10" rx="2" fill="{escape(color)}"/>'
        f"{f'<title>{escape(label)}</title>' if label else ''}</svg>"
    )
