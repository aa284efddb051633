"""Small SVG charts drawn on the server: no script, no CDN, nothing for the
Content-Security-Policy to allow. Lines over time buckets, and horizontal bars.
Every point carries a <title> with its value, which browsers show on hover."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["bars", "lines"]

_WIDTH, _HEIGHT = 640, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 32, 12, 28
# Distinguishable colours, also for the common colour-vision deficiencies (Okabe-Ito).
_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442")


def lines(labels: Sequence[str], series: Mapping[str, Sequence[float]], unit: str = "") -> str:
    """A line per series over the buckets `labels`, with a legend."""
    top = max((max(values, default=0) for values in series.values()), default=0) or 1
    inner_w, inner_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    step = inner_w / max(1, len(labels) - 1)

    def x(i: int) -> float:
        return _LEFT + i * step

    def y(v: float) -> float:
        return _TOP + inner_h * (1 - v / top)

    parts = [_frame(), _axis_label(_LEFT - 6, _TOP + 4, _number(top, unit))]
    parts.append(_axis_label(_LEFT - 6, _TOP + inner_h + 4, "0"))
    every = max(1, len(labels) // 6)
    for i, label in enumerate(labels):
        if i % every == 0:
            parts.append(
                f'<text x="{x(i):.1f}" y="{_HEIGHT - 8}" font-size="11" '
                f'text-anchor="middle" fill="#6e6e73">{escape(label)}</text>'
            )
    for n, (name, values) in enumerate(series.items()):
        colour = _COLOURS[n % len(_COLOURS)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for i, v in enumerate(values):
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(name)} {escape(labels[i])}: {_number(v, unit)}</title></circle>"
            )
    legend = "".join(
        f'<span class="key"><svg width="12" height="12" aria-hidden="true"><rect width="12" '
        f'height="12" fill="{_COLOURS[n % len(_COLOURS)]}"/></svg> {escape(name)}</span>'
        for n, name in enumerate(series)
    )
    return _svg("".join(parts)) + f'<p class="legend">{legend}</p>'


def bars(values: Mapping[str, float], unit: str = "") -> str:
    """A horizontal bar per key, longest first."""
    if not values:
        return '<p class="empty">None.</p>'
    ordered = sorted(values.items(), key=lambda kv: -kv[1])
    top = ordered[0][1] or 1
    row = 24
    height = row * len(ordered) + 8
    label_w, inner_w = 150, _WIDTH - 150 - 60
    parts = []
    for i, (name, value) in enumerate(ordered):
        y = 4 + i * row
        width = inner_w * value / top
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" font-size="12" text-anchor="end" '
            f'fill="#1d1d1f">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row - 8}" '
            f'fill="{_COLOURS[0]}"><title>{escape(name)}: {_number(value, unit)}</title></rect>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + 16}" font-size="12" '
            f'fill="#1d1d1f">{_number(value, unit)}</text>'
        )
    return _svg("".join(parts), height)


def _svg(body: str, height: int = _HEIGHT) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _frame() -> str:
    bottom = _HEIGHT - _BOTTOM
    return (
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" stroke="#d2d2d7"/>'
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{_WIDTH - _RIGHT}" y2="{bottom}" '
        'stroke="#d2d2d7"/>'
    )


def _axis_label(x: float, y: float, text: str) -> str:
    return (
        f'<text x="{x}" y="{y}" font-size="11" text-anchor="end" fill="#6e6e73">'
        f"{escape(text)}</text>"
    )


def _number(value: float, unit: str) -> str:
    shown = f"{value:.0f}" if value == int(value) or value >= 100 else f"{value:.1f}"
    return f"{shown} {unit}".strip()
