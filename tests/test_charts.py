"""The Pillow charts: nice ticks, lines landing on the rows their ticks name, gaps at NaN, legends only for labels,
histogram bars as tall as their counts, and the PSNR plot written without matplotlib."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from inr_cli.figures import clipped_psnr
from inr_cli.figures.chart_axes import FRAME, nice_ticks, tick_text
from inr_cli.figures.charts import LEGEND_EDGE, Series, histogram_chart, line_chart, thinned
from inr_cli.figures.layout import png_caption
from inr_cli.summary import write_histogram

MAGENTA = (200, 0, 200)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int64)


def frame_box(image: Image.Image) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the plot frame, found as the longest dark lines of the picture."""
    dark = np.all(pixels(image) == FRAME, axis=2)
    columns, rows = dark.sum(axis=0), dark.sum(axis=1)
    left, right = np.flatnonzero(columns >= 0.9 * columns.max())[[0, -1]]
    top, bottom = np.flatnonzero(rows >= 0.9 * rows.max())[[0, -1]]
    return int(left), int(top), int(right), int(bottom)


def y_tick_rows(image: Image.Image) -> list[int]:
    """Rows of the tick marks left of the frame, top first."""
    left, top, _, bottom = frame_box(image)
    column = np.all(pixels(image)[:, left - 3] == FRAME, axis=1)
    return [int(r) for r in np.flatnonzero(column) if top <= r <= bottom]


def x_tick_columns(image: Image.Image) -> list[int]:
    left, _, right, bottom = frame_box(image)
    row = np.all(pixels(image)[bottom + 3] == FRAME, axis=1)
    return [int(c) for c in np.flatnonzero(row) if left <= c <= right]


def legend_edges(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the legend box's straight edges (lines of its grey long enough not to be text)."""
    edge = np.all(pixels(image) == LEGEND_EDGE, axis=2)
    return np.flatnonzero(edge.sum(axis=1) >= 30), np.flatnonzero(edge.sum(axis=0) >= 15)


def coloured(image: Image.Image, colour, tolerance: int = 40) -> np.ndarray:
    """Where ``image`` is close to ``colour`` (the middle of an anti-aliased line, not its faded edge)."""
    return np.abs(pixels(image) - np.array(colour)).max(axis=2) <= tolerance


@pytest.mark.parametrize(("low", "high", "most", "integer", "expected"), [
    (-13.95, 314.95, 8, True, [0, 50, 100, 150, 200, 250, 300]),
    (0.0, 1.0, 6, False, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (9.0, 31.0, 6, False, [10.0, 15.0, 20.0, 25.0, 30.0]),
    (-0.35, 0.35, 8, False, [-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3]),
    (-0.5, 3.5, 10, True, [0, 1, 2, 3]),  # a step of 0.5 would fit, but frames are whole
    (-0.5, 3.5, 10, False, [-0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]),
    (0.0, 2.5e6, 6, False, [0.0, 5e5, 1e6, 1.5e6, 2e6, 2.5e6]),
    (1e-5, 3e-5, 3, False, [1e-5, 2e-5, 3e-5]),
])
def test_nice_ticks(low, high, most, integer, expected):
    assert nice_ticks(low, high, most, integer) == expected


def test_tick_text_uses_the_step_s_decimals_and_a_true_minus():
    ticks = [-0.5, 0.0, 0.5]
    assert [tick_text(t, ticks) for t in ticks] == ["−0.5", "0.0", "0.5"]
    ticks = [0, 50, 100]
    assert [tick_text(t, ticks) for t in ticks] == ["0", "50", "100"]
    assert tick_text(-0.0, [-1.0, 0.0, 1.0]) == "0"
    assert tick_text(2e-5, [1e-5, 2e-5]) == "2e−05"
    assert tick_text(-20000, [-20000, 0, 20000]) == "−20,000" and tick_text(5000, [0, 5000]) == "5000"


def test_a_horizontal_line_lands_on_the_row_of_its_tick_and_stays_inside_the_frame():
    rising = Series([0, 10], [10, 30], colour=(0, 0, 0))
    level = Series([0, 10], [20, 20], colour=MAGENTA, width=2.0)
    image = line_chart([rising, level], "level", "x", "y", size=(500, 300))
    assert image.size == (500, 300)
    rows = y_tick_rows(image)
    assert len(rows) == 5  # 10, 15, 20, 25, 30
    # Ticks sit on whole pixels, a line is anti-aliased where it falls: its weighted centre is within half a
    # pixel of the tick's row.
    left, top, right, bottom = frame_box(image)
    rgb = pixels(image)
    weight = np.clip(rgb[:, (left + right) // 2 - 20:(left + right) // 2 + 20, 0]
                     - rgb[:, (left + right) // 2 - 20:(left + right) // 2 + 20, 1], 0, None).sum(axis=1)
    assert abs((weight * np.arange(len(weight))).sum() / weight.sum() - rows[2]) <= 0.5
    line = coloured(image, MAGENTA)
    ys, xs = np.nonzero(line)
    assert xs.size > 0.8 * (right - left)  # the line spans the plot
    assert left < xs.min() and xs.max() < right and top < ys.min() and ys.max() < bottom


def test_a_nan_breaks_the_line():
    x = np.arange(101)
    y = np.full(101, 20.0)
    y[40:61] = np.nan
    image = line_chart([Series(x, y, colour=MAGENTA, width=2.0)], size=(600, 300), integer_x=True)
    columns = x_tick_columns(image)
    assert len(columns) == 6  # 0, 20, ..., 100

    def at(value: float) -> float:
        return columns[0] + value / 100 * (columns[-1] - columns[0])
    drawn = np.flatnonzero(coloured(image, MAGENTA).any(axis=0))
    gap = np.flatnonzero(np.diff(drawn) > 1)
    assert len(gap) == 1  # two stretches
    last_before, first_after = drawn[gap[0]], drawn[gap[0] + 1]
    assert abs(last_before - at(39)) <= 2 and abs(first_after - at(61)) <= 2


def test_one_point_shows_as_a_marker_and_no_points_draw_empty_axes():
    lone = line_chart([Series([3], [7.5], colour=MAGENTA)], size=(400, 250))
    assert lone.size == (400, 250)
    ys, xs = np.nonzero(coloured(lone, MAGENTA))
    left, top, right, bottom = frame_box(lone)
    # A constant gets a range of ±1 around it: the point sits in the middle of the plot.
    assert xs.size >= 9 and abs(xs.mean() - (left + right) / 2) <= 1.5 and abs(ys.mean() - (top + bottom) / 2) <= 1.5
    for series in ([], [Series([], [], "nothing")], [Series([1, 2], [math.nan, math.inf], "gaps", MAGENTA)]):
        empty = line_chart(series, "empty", size=(300, 200))
        assert empty.size == (300, 200) and not coloured(empty, MAGENTA).any()
        assert [len(edges) for edges in legend_edges(empty)] == [0, 0]  # nothing drawn, nothing to name


def test_the_legend_appears_only_for_labelled_series_in_the_corner_asked():
    x, y = np.arange(50), np.linspace(0, 1, 50)
    unlabelled = line_chart([Series(x, y), Series(x, 1 - y)], size=(500, 300))
    assert [len(edges) for edges in legend_edges(unlabelled)] == [0, 0]
    labelled = line_chart([Series(x, y, "rising"), Series(x, 1 - y, "falling")], size=(500, 300))
    rows, columns = legend_edges(labelled)
    assert len(rows) == 2 and len(columns) == 2  # a box
    left, top, right, bottom = frame_box(labelled)
    assert rows.min() > (top + bottom) / 2 and columns.min() > (left + right) / 2  # lower right
    assert right - 12 < columns.max() < right and bottom - 12 < rows.max() < bottom
    upper = line_chart([Series(x, y, "rising")], size=(500, 300), legend_at="upper left")
    rows, columns = legend_edges(upper)
    assert len(rows) == 2 and rows.max() < (top + bottom) / 2 and columns.max() < (left + right) / 2
    cramped = line_chart([Series(x, y, "a label longer than the plot is wide")], size=(200, 120))
    assert cramped.size == (200, 120) and [len(edges) for edges in legend_edges(cramped)] == [0, 0]
    with pytest.raises(ValueError, match="legend_at must be one of"):
        line_chart([Series(x, y, "rising")], legend_at="middle")


def test_best_legend_place_avoids_the_lines():
    x = np.arange(100)
    # A line along the bottom and up the right side: lower right and upper right are taken, lower left too.
    y = np.where(x < 90, 0.0, (x - 89) * 10.0)
    image = line_chart([Series(x, y, "hook", MAGENTA)], size=(500, 300), legend_at="best")
    rows, columns = legend_edges(image)
    left, top, right, bottom = frame_box(image)
    assert len(rows) == 2 and rows.max() < (top + bottom) / 2 and columns.max() < (left + right) / 2  # upper left


def test_histogram_bars_reach_the_tick_of_their_count():
    values = [0.1] * 1 + [1.1] * 3 + [2.1] * 6 + [3.1] * 2
    counts, _ = np.histogram(values, bins=4)
    assert counts.tolist() == [1, 3, 6, 2]
    bar = (76, 114, 176)
    image = histogram_chart(values + [math.nan], bins=4, size=(500, 320), colour=bar)
    rows = y_tick_rows(image)[::-1]  # bottom first: counts 0, 1, ..., 6
    assert len(rows) == 7
    filled = np.all(pixels(image) == bar, axis=2)
    left, top, right, bottom = frame_box(image)
    in_bar = np.flatnonzero(filled[bottom - 1])
    starts = in_bar[np.r_[True, np.diff(in_bar) > 1]]
    assert len(starts) == 4
    for start, count in zip(starts, counts):
        column = filled[:, start + 2]
        assert np.flatnonzero(column)[0] == rows[count]
        assert column[rows[count]:bottom].all()


def test_psnr_plot_without_matplotlib(tmp_path):
    """The plot of every fit: the size asked, its caption in the PNG, and matplotlib never imported."""
    path = tmp_path / "psnr.png"
    script = f"""
import math, sys
from pathlib import Path
from inr_cli.figures import write_psnr_plot
batch = [10 + 20 * (1 - math.exp(-s / 60)) for s in range(300)] + [math.inf]
evaluations = [{{"step": s, "psnr": 10 + s / 10, "psnr_holdout": 9 + s / 10}} for s in range(0, 301, 50)]
write_psnr_plot(Path({str(path)!r}), batch, evaluations, "crop.png · siren")
assert "matplotlib" not in sys.modules, "matplotlib was imported"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (700, 400)
        rows = y_tick_rows(image)
    assert png_caption(path) == "PSNR during training · crop.png · siren"
    # The infinite last step is drawn at 150 dB, so the axis reaches from 9 dB past it: ticks 20, 40, ..., 140
    # (dropped as a gap it would leave 10, 15, ..., 30).
    assert len(rows) == 7


def test_psnr_values_are_clipped_and_missing_ones_are_gaps():
    assert np.array_equal(clipped_psnr([12.5, math.inf, None, 200.0]), [12.5, 150.0, math.nan, 150.0],
                          equal_nan=True)


def test_summary_histogram(tmp_path):
    write_histogram(tmp_path / "summary.png", [20.0, 21.0, None, math.nan, 25.0], "psnr", "3 crops")
    assert png_caption(tmp_path / "summary.png") == "psnr over 3 inputs · 3 crops"
    with Image.open(tmp_path / "summary.png") as image:
        assert image.size == (600, 350)
    write_histogram(tmp_path / "none.png", [None], "psnr", "none fitted")
    assert png_caption(tmp_path / "none.png") == "psnr over 0 inputs · none fitted"


def test_a_long_run_is_thinned_to_each_column_s_extremes():
    px = np.linspace(0, 99.99, 100_000)
    py = np.sin(px * 7.0) + np.random.default_rng(0).normal(0, 0.1, px.size)
    kept_x, kept_y = thinned(px, py)
    assert len(kept_x) <= 4 * 100 and np.all(np.diff(kept_x) >= 0)
    assert kept_y.min() == py.min() and kept_y.max() == py.max()
    for column in (0, 37, 99):  # every column keeps its own lowest and highest point
        inside = np.floor(px) == column
        assert py[inside].min() in kept_y and py[inside].max() in kept_y
    sparse_x = np.arange(50) * 3.0  # a point every third column: nothing to cut
    assert all(np.array_equal(a, b) for a, b in zip(thinned(sparse_x, py[:50]), (sparse_x, py[:50])))
