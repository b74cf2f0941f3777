"""Charts for the console, drawn on the server as inline SVG.

No chart library and no script: the page is one HTML response that prints, saves and
reads without JavaScript, like the rest of the console. Pure: values in, SVG text out
(escaped), tested without a browser.

Two shapes: :func:`bars` (one horizontal bar per group: sites, tenants, destinations),
and :func:`columns` (one column per day of a range, gaps shown as empty days).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

BAR_HEIGHT = 22
LABEL_WIDTH = 150
VALUE_WIDTH = 110
WIDTH = 640


def _scale(values: Sequence[Decimal]) -> Decimal:
    top = max(values, default=Decimal(0))
    return top if top > 0 else Decimal(1)


def bars(points: Sequence[tuple[str, Decimal, str]], *, title: str) -> str:
    """One horizontal bar per ``(label, value, shown value)``, longest for the largest."""
    top = _scale([v for _, v, _ in points])
    span = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    height = BAR_HEIGHT * max(len(points), 1) + 8
    parts = [
        f'<svg class="chart bars" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value, shown) in enumerate(points):
        y = 4 + i * BAR_HEIGHT
        length = int(span * value / top) if value > 0 else 0
        parts += [
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>',
            f'<rect class="bar" x="{LABEL_WIDTH}" y="{y + 3}" width="{max(length, 1)}" '
            f'height="{BAR_HEIGHT - 6}"><title>{escape(label)}: {escape(shown)}</title></rect>',
            f'<text x="{LABEL_WIDTH + length + 6}" y="{y + 15}">{escape(shown)}</text>',
        ]
    if not points:
        parts.append(f'<text x="{LABEL_WIDTH}" y="18">no calls in this range</text>')
    parts.append("</svg>")
    return "".join(parts)


def columns(points: Sequence[tuple[str, Decimal, str]], *, title: str) -> str:
    """One column per ``(day, value, shown value)``, in order; the first and last days
    are labelled under the axis, every column has its value as a tooltip."""
    top = _scale([v for _, v, _ in points])
    plot = 160
    height = plot + 40
    step = (WIDTH - 20) / max(len(points), 1)
    width = max(step * 0.8, 1.0)
    parts = [
        f'<svg class="chart columns" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="10" y1="{plot + 10}" x2="{WIDTH - 10}" y2="{plot + 10}"/>',
    ]
    for i, (label, value, shown) in enumerate(points):
        h = int(plot * value / top) if value > 0 else 0
        x = 10 + i * step
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{plot + 10 - h}" width="{width:.1f}" '
            f'height="{h}"><title>{escape(label)}: {escape(shown)}</title></rect>'
        )
    if points:
        parts += [
            f'<text x="10" y="{plot + 28}">{escape(points[0][0])}</text>',
            f'<text x="{WIDTH - 10}" y="{plot + 28}" text-anchor="end">'
            f"{escape(points[-1][0])}</text>",
        ]
    parts.append("</svg>")
    return "".join(parts)
