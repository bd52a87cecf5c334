"""Line charts and histograms drawn with Pillow: the training-PSNR plot, per-frame PSNR, the dataset histogram.

Why not matplotlib: every fitted input writes a PSNR plot, and matplotlib made it the largest cost of a grouped
fit that is not training. The first figure of a process paid 0.4 to 1.4 s (import, font manager) and each one
after it 65 to 85 ms, more on a busy machine: 4.3 s of a 20 s fit of 32 small crops. Drawn here, a 700x400 plot
takes about 5 ms and its PNG 5 more, the first one included (numbers in docs/pictures.md); the fonts and colours
are those of the other figures.

How it looks: the plot frame, a light grid, ticks at 1, 2 or 5 times a power of ten (whole numbers on axes that
count steps or frames), a centred title shrunk to fit (:mod:`inr_cli.figures.chart_axes`), and a legend when a
series is labelled. Lines, markers and bars are drawn at twice the size and halved, so they are anti-aliased; text
is drawn afterwards at full resolution, so it stays sharp. A value that is not finite breaks its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from inr_cli.figures.chart_axes import SCALE, TICK_SIZE, Axes, Frame, data_range, draw_frame, draw_grid, \
    empty_note, fill_pixels, finish, layout, new_canvas, on_canvas
from inr_cli.figures.layout import INK, PAD, WHITE, font, line_height, text_width

# matplotlib's default colour cycle, so plots read the same as the ones people know.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))
BAR_COLOUR = (76, 114, 176)
LEGEND_EDGE = (200, 200, 200)
MARKERS = ("o", "s")
LEGEND_PLACES = ("lower right", "upper right", "lower left", "upper left")


@dataclass(frozen=True, eq=False)
class Series:
    """One line of a chart: ``width`` and ``marker_size`` in pixels (width 0: markers only); ``marker`` is "o"
    (circle), "s" (square) or None; ``colour`` None takes the next colour of the palette."""

    x: Sequence[float]
    y: Sequence[float]
    label: str | None = None
    colour: tuple[int, int, int] | None = None
    width: float = 1.5
    marker: str | None = None
    marker_size: float = 5.0

    def __post_init__(self):
        if self.marker not in (None, *MARKERS):
            raise ValueError(f"marker must be one of {MARKERS} or None, not {self.marker!r}")
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} values and y {len(self.y)}")


def faded(colour: tuple[int, int, int], opacity: float) -> tuple[int, int, int]:
    """``colour`` as it looks at ``opacity`` over white: a thin, busy line that should not hide the others."""
    return tuple(round(opacity * c + (1 - opacity) * 255) for c in colour)


# ------------------------------------------------------------------------------------------------ line charts
def runs(px: np.ndarray, py: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The stretches of consecutive finite points: a value that is not finite breaks the line."""
    finite = np.isfinite(px) & np.isfinite(py)
    edges = np.flatnonzero(np.diff(np.r_[False, finite, False].astype(np.int8)))
    return [(px[a:b], py[a:b]) for a, b in zip(edges[::2], edges[1::2])]


def thinned(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A line of many more points than pixel columns, cut to the first, last, lowest and highest point of each
    column: the same picture, and a 100,000-step run draws in a few milliseconds more than a short one."""
    if len(px) < 8 or len(px) <= 4 * (px[-1] - px[0] + 1) or np.any(np.diff(px) < 0):
        return px, py
    columns = np.floor(px).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, columns[1:] != columns[:-1]])
    ends = np.r_[starts[1:], len(px)] - 1
    group = np.repeat(np.arange(len(starts)), ends - starts + 1)  # each point's column, counted from 0
    keep = [starts, ends]
    for extreme in (np.minimum, np.maximum):
        at = np.flatnonzero(py == extreme.reduceat(py, starts)[group])
        keep.append(at[np.r_[True, group[at][1:] != group[at][:-1]]])  # the first, where values tie
    keep = np.unique(np.concatenate(keep))
    return px[keep], py[keep]


def draw_marker(draw: ImageDraw.ImageDraw, x: float, y: float, marker: str, size: float, colour) -> None:
    r = size * SCALE / 2
    x, y = float(on_canvas(x)), float(on_canvas(y))
    box = (x - r, y - r, x + r, y + r)
    if marker == "o":
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)


def draw_series(draw: ImageDraw.ImageDraw, axes: Axes, series: Series, colour) -> list[np.ndarray]:
    """Draw one series; returns its lines' points in figure pixels (for placing the legend)."""
    drawn = []
    for px, py in runs(axes.px(series.x), axes.py(series.y)):
        px, py = thinned(px, py)
        drawn.append(np.stack([px, py], axis=1))
        if series.width > 0 and len(px) > 1:
            width = max(1, round(series.width * SCALE))
            points = on_canvas(np.stack([px, py], axis=1), width)
            draw.line(points.ravel().tolist(), fill=colour, width=width, joint="curve" if len(px) < 500 else None)
        if series.marker or len(px) == 1:  # a lone point shows even on a line without markers
            for x, y in zip(px, py):
                draw_marker(draw, x, y, series.marker or "o", series.marker_size, colour)
    return drawn


def legend_box(frame: Frame, entries: list[tuple[Series, tuple]], place: str, drawn: list[np.ndarray]):
    """The legend's (left, top, right, bottom) in figure pixels: at ``place``, or with "best" the first corner
    (lower right first) that hides the fewest points of the lines."""
    face = font(TICK_SIZE)
    width = 2 * PAD + 28 + 6 + max(text_width(series.label or "", face) for series, _ in entries)
    height = PAD + len(entries) * (line_height(face) + 2)
    left, top, right, bottom = frame.axes.box
    corners = {"lower right": (right - 8 - width, bottom - 8 - height), "upper right": (right - 8 - width, top + 8),
               "lower left": (left + 8, bottom - 8 - height), "upper left": (left + 8, top + 8)}
    if place == "best":
        samples = np.concatenate([densified(points) for points in drawn]) if drawn else np.zeros((0, 2))

        def hidden(corner):
            x, y = corners[corner]
            return int(np.count_nonzero((samples[:, 0] >= x) & (samples[:, 0] <= x + width)
                                        & (samples[:, 1] >= y) & (samples[:, 1] <= y + height)))
        place = min(LEGEND_PLACES, key=hidden)
    x, y = corners[place]
    return x, y, x + width, y + height


def densified(points: np.ndarray, spacing: float = 4.0) -> np.ndarray:
    """Points every ``spacing`` pixels along a line, so a segment crossing a box is seen to cross it."""
    if len(points) < 2:
        return points
    length = np.r_[0.0, np.cumsum(np.hypot(*np.diff(points, axis=0).T))]
    at = np.arange(0.0, length[-1] + spacing, spacing)
    return np.stack([np.interp(at, length, points[:, 0]), np.interp(at, length, points[:, 1])], axis=1)


def draw_legend(draw: ImageDraw.ImageDraw, box, entries: list[tuple[Series, tuple]]) -> list[tuple[int, int, str]]:
    """The legend's box and line samples; returns where each label goes (drawn after the reduction)."""
    left, top, right, bottom = box
    # Whole pixels of the figure for the edges, as _rect does: crisp lines, not a half-tone between two rows.
    draw.rounded_rectangle((left * SCALE, top * SCALE, right * SCALE + SCALE - 1, bottom * SCALE + SCALE - 1),
                           radius=3 * SCALE, fill=WHITE, outline=LEGEND_EDGE, width=SCALE)
    rows = line_height(font(TICK_SIZE)) + 2
    labels = []
    for i, (series, colour) in enumerate(entries):
        y = top + PAD // 2 + i * rows + rows / 2
        if series.width > 0:
            width = max(1, round(series.width * SCALE))
            draw.line(on_canvas([left + PAD, y, left + PAD + 28, y], width).tolist(), fill=colour, width=width)
        if series.marker:
            draw_marker(draw, left + PAD + 14, y, series.marker, series.marker_size, colour)
        labels.append((left + PAD + 34, round(y - rows / 2) + 1, series.label or ""))
    return labels


def legend(draw: ImageDraw.ImageDraw, frame: Frame, styled: list[tuple[Series, tuple]], place: str,
           drawn: list[np.ndarray]) -> list[tuple[int, int, str]]:
    """The legend of the labelled series that have a point on the chart (one that is all gaps would name nothing),
    unless it would not fit inside the plot; returns where its labels go."""
    entries = [(s, colour) for s, colour in styled if s.label and np.isfinite(np.asarray(s.y, dtype=float)).any()]
    if not entries:
        return []
    box = legend_box(frame, entries, place, drawn)
    left, top, _, _ = frame.axes.box
    if box[0] < left + 4 or box[1] < top + 4:  # wider or taller than the plot: it would cover the axes
        return []
    return draw_legend(draw, box, entries)


def line_chart(series: Sequence[Series], title: str = "", x_label: str = "", y_label: str = "",
               size: tuple[int, int] = (700, 400), integer_x: bool = False, legend_at: str = "lower right"
               ) -> Image.Image:
    """A chart of ``series`` on axes fitted to their finite values; ``integer_x`` keeps the x ticks on whole
    numbers (steps, frames). The labelled series are named in a legend at ``legend_at``, one of the four corners or
    "best" (the first corner, lower right first, that hides the least of the lines); no label, no legend."""
    if legend_at not in (*LEGEND_PLACES, "best"):
        raise ValueError(f"legend_at must be one of {LEGEND_PLACES + ('best',)}, not {legend_at!r}")
    xs = np.concatenate([np.asarray(s.x, dtype=float) for s in series]) if series else np.zeros(0)
    ys = np.concatenate([np.asarray(s.y, dtype=float) for s in series]) if series else np.zeros(0)
    both = np.isfinite(xs) & np.isfinite(ys)
    frame = layout(size, title, x_label, y_label, data_range(xs[both]), data_range(ys[both]), integer_x, False)
    canvas, draw = new_canvas(size)
    draw_grid(draw, frame)
    colours = [s.colour or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]
    drawn = [points for s, colour in zip(series, colours) for points in draw_series(draw, frame.axes, s, colour)]
    draw_frame(draw, frame)
    labels = legend(draw, frame, list(zip(series, colours)), legend_at, drawn)
    image = finish(canvas, frame, title, x_label, y_label)
    text = ImageDraw.Draw(image)
    for x, y, label in labels:
        text.text((x, y), label, font=font(TICK_SIZE), fill=INK)
    if not both.any():
        empty_note(image, frame)
    return image


# ------------------------------------------------------------------------------------------------ histograms
def histogram_chart(values: Sequence[float], bins: int | Sequence[float] = 10, title: str = "", x_label: str = "",
                    y_label: str = "count", size: tuple[int, int] = (600, 350),
                    colour: tuple[int, int, int] = BAR_COLOUR) -> Image.Image:
    """Bars of ``numpy.histogram(values, bins)`` over the finite values (its edges on the x axis), standing on
    zero, a pixel of white between neighbours."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    counts, edges = np.histogram(finite, bins=bins) if finite.size else (np.zeros(0), np.zeros(0))
    frame = layout(size, title, x_label, y_label, data_range(edges), data_range(counts.astype(float), 0.0),
                   False, True)
    canvas, draw = new_canvas(size)
    draw_grid(draw, frame)
    axes = frame.axes
    lefts, rights, tops = axes.px(edges[:-1]), axes.px(edges[1:]), axes.py(counts)
    for left, right, top, count in zip(lefts, rights, tops, counts):
        if count > 0:
            fill_pixels(draw, left + 1, top, max(left + 1, right - 1), axes.box[3] - 1, colour)
    draw_frame(draw, frame)
    image = finish(canvas, frame, title, x_label, y_label)
    if not finite.size:
        empty_note(image, frame)
    return image
