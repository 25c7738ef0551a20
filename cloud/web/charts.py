"""Charts drawn on the server as inline SVG: no chart library to download on a weak connection."""

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 420
HEIGHT = 220
PAD_LEFT = 44
PAD_RIGHT = 10
PAD_TOP = 26
PAD_BOTTOM = 26
COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700")


@dataclass(frozen=True)
class Series:
    """One line of a chart: a name for the legend and one value (or None for a gap) per label."""

    name: str
    values: Sequence[float | None]


def _text_width(text: str) -> float:
    # Wide (CJK) characters take about a full em at the chart's 13 px; Latin ones a little over half.
    return sum(13.0 if ord(ch) > 0x2E7F else 7.5 for ch in text)


def _nice_top(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 < value:
        step *= 10
    for factor in (1, 2, 2.5, 5, 10):
        if step * factor >= value:
            return step * factor
    return step * 10


def line_chart(labels: Sequence[str], series: Sequence[Series], *, title: str, unit: str = "") -> str:
    """An SVG line chart scaled to the largest value, with a legend and every few labels on the axis."""
    values = [v for s in series for v in s.values if v is not None]
    top = _nice_top(max(values, default=0.0))
    inner_w = WIDTH - PAD_LEFT - PAD_RIGHT
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    count = max(len(labels), 1)

    def x(i: int) -> float:
        return PAD_LEFT + (inner_w * i / (count - 1) if count > 1 else inner_w / 2)

    def y(v: float) -> float:
        return PAD_TOP + inner_h * (1 - v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for frac in (0, 0.5, 1):
        gy = y(top * frac)
        parts.append(f'<line x1="{PAD_LEFT}" y1="{gy:.1f}" x2="{WIDTH - PAD_RIGHT}" y2="{gy:.1f}" class="grid"/>')
        label = f"{top * frac:g}{unit}"
        parts.append(f'<text x="{PAD_LEFT - 4}" y="{gy + 4:.1f}" text-anchor="end">{escape(label)}</text>')
    step = max(1, len(labels) // 4)
    for i, label in enumerate(labels):
        last = i == len(labels) - 1
        if last or (i % step == 0 and len(labels) - 1 - i >= step / 2):
            anchor = "end" if last and len(labels) > 1 else "middle"
            parts.append(f'<text x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">{escape(label)}</text>')
    legend_x = PAD_LEFT
    for index, line in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        segments: list[list[str]] = [[]]
        for i, value in enumerate(line.values):
            if value is None:
                segments.append([])
                continue
            segments[-1].append(f"{x(i):.1f},{y(value):.1f}")
        for points in segments:
            if len(points) > 1:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>')
            elif points:
                cx, cy = points[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
        parts.append(f'<rect x="{legend_x}" y="4" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="14">{escape(line.name)}</text>')
        legend_x += 24 + _text_width(line.name)
    parts.append("</svg>")
    return "".join(parts)


def meter(value: float | None, *, target: float = 1.0) -> str:
    """A thin horizontal bar for a share between 0 and 1, with a tick at the target."""
    share = 0.0 if value is None else max(0.0, min(1.0, value))
    return (
        '<svg class="meter" viewBox="0 0 100 6" preserveAspectRatio="none" aria-hidden="true">'
        '<rect width="100" height="6" class="meter-bg"/>'
        f'<rect width="{share * 100:.1f}" height="6" class="meter-fg"/>'
        f'<line x1="{target * 100:.1f}" y1="0" x2="{target * 100:.1f}" y2="6" class="meter-target"/>'
        "</svg>"
    )
