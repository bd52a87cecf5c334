"""Training curves as inline SVG: drawn here from the report's numbers, so a page needs no plotting library in
the browser and its curves stay sharp at any zoom."""

from __future__ import annotations

import math

import numpy as np

from inr_cli.figures.chart_axes import data_range, nice_ticks, tick_text
from inr_cli.pages.html import number, text

COLOURS = ("#2d6cb5", "#d9822b", "#3a9a5b", "#b3407a", "#7a5bb3")
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 14, 40
TICKS = 6  # at most, per axis


def line_chart(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str, key: str = "") -> str:
    """An SVG chart of named (x, y) series; points whose y is missing or not finite are left out. '' when no
    series has two points."""
    clean = {name: [(x, y) for x, y in points if y is not None and math.isfinite(y)]
             for name, points in series.items()}
    clean = {name: points for name, points in clean.items() if len(points) >= 2}
    if not clean:
        return ""
    xs = [x for points in clean.values() for x, _ in points]
    ys = [y for points in clean.values() for _, y in points]
    # The same limits and ticks as the PNG charts (inr_cli/figures/chart_axes.py): the data's span with a margin.
    (x_low, x_high), (y_low, y_high) = data_range(np.asarray(xs, float)), data_range(np.asarray(ys, float))
    x_ticks, y_ticks = nice_ticks(x_low, x_high, TICKS), nice_ticks(y_low, y_high, TICKS)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_low) / ((x_high - x_low) or 1) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - (y - y_low) / ((y_high - y_low) or 1) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" aria-label="{text(y_label)} against {text(x_label)}">',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#d8dde3"/>']
    for tick in y_ticks:
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" '
                     f'stroke="#eef1f4"/><text x="{LEFT - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">'
                     f'{text(tick_text(tick, y_ticks))}</text>')
    for tick in x_ticks:
        parts.append(f'<text x="{px(tick):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">'
                     f'{text(tick_text(tick, x_ticks))}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">{text(x_label)}</text>')
    parts.append(f'<text x="14" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {TOP + plot_h / 2:.1f})">{text(y_label)}</text>')
    for index, (name, points) in enumerate(clean.items()):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        last_x, last_y = points[-1]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{path}">'
                     f'<title>{text(name)}: {text(number(last_y, key))} at {text(number(last_x))}</title></polyline>')
        parts.append(f'<text x="{LEFT + 10}" y="{TOP + 16 + 16 * index}" style="fill:{colour}">'
                     f'{text(name)} (last {text(number(last_y, key))})</text>')
    parts.append("</svg>")
    return "".join(parts)
