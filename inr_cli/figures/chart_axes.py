"""The axes of a chart: limits fitted to the data, ticks at round numbers, the frame, grid and text around a plot.

Everything but text is drawn on a canvas ``SCALE`` times larger, which :func:`finish` reduces (a box filter: 1 ms
for a 700x400 figure, against 15 ms for a Lanczos resize that looks no better on lines this thin) before the text
goes on at full resolution. Axis-aligned lines (frame, grid, ticks) cover whole pixels of the figure, so they are
crisp; a coordinate in figure pixels names a pixel's centre at whole numbers, on the canvas as in the figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from inr_cli.figures.layout import INK, MUTED, PAD, WHITE, centred_text, font, line_height, text_width

GRID = (228, 228, 228)
FRAME = (40, 40, 40)
SCALE = 2  # geometry is drawn this many times larger, then reduced: anti-aliasing for free
TICK_LENGTH = 5
TICK_SIZE, LABEL_SIZE, TITLE_SIZE = 12, 13, 15
MARGIN = 0.05  # of the data's span, on each side, so no point sits on the frame


def _step(mantissa: int, exponent: int) -> float:
    # Dividing by a power of ten (not multiplying by a negative one) keeps 0.1, 0.2... the floats people type.
    return mantissa * 10.0 ** exponent if exponent >= 0 else mantissa / 10.0 ** -exponent


def nice_ticks(low: float, high: float, most: int, integer: bool = False) -> list[float]:
    """The ticks in [low, high] at the smallest step of 1, 2 or 5 times a power of ten that puts at most ``most``
    of them there; whole-number steps only when ``integer`` (a range holding no whole number then has no ticks).
    At least 3 are allowed: with fewer, the first step that fits could fall between two ticks and show none."""
    most = max(3, most)
    exponent = math.floor(math.log10((high - low) / most)) - 1
    while True:
        for mantissa in (1, 2, 5):
            step = _step(mantissa, exponent)
            if integer and step < 1:
                continue
            first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
            if last - first + 1 <= most:
                return [_step(mantissa * i, exponent) if exponent < 0 else i * step for i in range(first, last + 1)]
        exponent += 1


def tick_text(value: float, ticks: Sequence[float]) -> str:
    """``value`` with as many decimals as the tick step needs, a true minus sign, thousands separated from 10,000,
    exponents for extreme scales."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(value) or 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    largest = max(abs(t) for t in ticks)
    if decimals > 4 or largest >= 1e7:
        digits = max(1, math.floor(math.log10(largest)) - math.floor(math.log10(step)) + 1)
        text = f"{value:.{digits}g}"
    else:  # thousands separated, as the captions write step counts
        text = f"{value:,.{decimals}f}" if largest >= 1e4 else f"{value:.{decimals}f}"
    if text.lstrip("-").strip("0.") == "":
        text = text.lstrip("-")  # no "-0"
    return text.replace("-", "−")


def data_range(values: np.ndarray, pinned_low: float | None = None) -> tuple[float, float]:
    """The axis limits for ``values``: their finite span plus a margin; one value (or none) gets ±1 around it
    (or [0, 1]); ``pinned_low`` is a floor the axis starts at exactly (bars standing on zero)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        low, high = 0.0, 1.0
    else:
        low, high = float(finite.min()), float(finite.max())
        if high - low <= 1e-12 * max(1.0, abs(high)):
            low, high = low - 1.0, high + 1.0
        else:
            span = high - low
            low, high = low - MARGIN * span, high + MARGIN * span
    if pinned_low is not None:
        low = pinned_low
        high = max(high, pinned_low + 1.0)
    return low, high


@dataclass(frozen=True)
class Axes:
    """Where the plot area lies in the figure (pixels: left, top, right, bottom inclusive) and what it spans."""

    box: tuple[int, int, int, int]
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def px(self, x) -> np.ndarray:
        left, _, right, _ = self.box
        low, high = self.x_range
        return left + (np.asarray(x, dtype=float) - low) / (high - low) * (right - left)

    def py(self, y) -> np.ndarray:
        _, top, _, bottom = self.box
        low, high = self.y_range
        return bottom - (np.asarray(y, dtype=float) - low) / (high - low) * (bottom - top)


@dataclass(frozen=True)
class Frame:
    """A laid-out empty chart: the plot area and the ticks."""

    axes: Axes
    x_ticks: list[float]
    y_ticks: list[float]


def layout(size: tuple[int, int], title: str, x_label: str, y_label: str, x_range, y_range, integer_x: bool,
           integer_y: bool) -> Frame:
    """Margins measured from the text they hold, then ticks as dense as their labels allow."""
    width, height = size
    tick_face, label_face = font(TICK_SIZE), font(LABEL_SIZE)
    top = PAD + (line_height(font(TITLE_SIZE)) + 4 if title else 0)
    bottom = max(top + 10, height - 1 - (TICK_LENGTH + 3 + line_height(tick_face)
                                         + (line_height(label_face) if x_label else 0) + PAD // 2))
    y_ticks = nice_ticks(*y_range, most=(bottom - top) // 45 + 1, integer=integer_y)
    label_width = max((text_width(tick_text(t, y_ticks), tick_face) for t in y_ticks), default=0)
    left = PAD + (line_height(label_face) + 4 if y_label else 0) + label_width + 3 + TICK_LENGTH
    right = max(left + 10, width - 1 - 2 * PAD)  # a figure too small for its text still gets a (tiny) plot
    axes = Axes((left, top, right, bottom), tuple(x_range), tuple(y_range))
    most = max(3, (right - left) // 60 + 1)
    while True:  # fewer ticks until their labels leave a gap between them
        x_ticks = nice_ticks(*x_range, most=most, integer=integer_x)
        widest = max((text_width(tick_text(t, x_ticks), tick_face) for t in x_ticks), default=0)
        if most <= 3 or len(x_ticks) < 2 or axes.px(x_ticks[1]) - axes.px(x_ticks[0]) >= widest + 12:
            return Frame(axes, x_ticks, y_ticks)
        most -= 1


def fill_pixels(draw: ImageDraw.ImageDraw, x0: float, y0: float, x1: float, y1: float, fill) -> None:
    """A rectangle covering the figure's pixels x0..x1, y0..y1 (inclusive), drawn on the enlarged canvas."""
    draw.rectangle((round(x0) * SCALE, round(y0) * SCALE, round(x1) * SCALE + SCALE - 1,
                    round(y1) * SCALE + SCALE - 1), fill=fill)


def draw_grid(draw: ImageDraw.ImageDraw, frame: Frame) -> None:
    left, top, right, bottom = frame.axes.box
    for x in frame.axes.px(frame.x_ticks):
        fill_pixels(draw, x, top, x, bottom, GRID)
    for y in frame.axes.py(frame.y_ticks):
        fill_pixels(draw, left, y, right, y, GRID)


def draw_frame(draw: ImageDraw.ImageDraw, frame: Frame) -> None:
    left, top, right, bottom = frame.axes.box
    for edge in ((left, top, right, top), (left, bottom, right, bottom), (left, top, left, bottom),
                 (right, top, right, bottom)):
        fill_pixels(draw, *edge, FRAME)
    for x in frame.axes.px(frame.x_ticks):
        fill_pixels(draw, x, bottom + 1, x, bottom + TICK_LENGTH, FRAME)
    for y in frame.axes.py(frame.y_ticks):
        fill_pixels(draw, left - TICK_LENGTH, y, left - 1, y, FRAME)


def draw_text(image: Image.Image, frame: Frame, title: str, x_label: str, y_label: str) -> None:
    """Tick labels, axis labels and title, at full resolution on the reduced image."""
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = frame.axes.box
    tick_face, label_face = font(TICK_SIZE), font(LABEL_SIZE)
    rows = line_height(tick_face)
    for x in frame.x_ticks:
        text = tick_text(x, frame.x_ticks)
        at = round(float(frame.axes.px(x))) - text_width(text, tick_face) // 2
        at = min(max(at, 0), image.width - text_width(text, tick_face))
        draw.text((at, bottom + TICK_LENGTH + 3), text, font=tick_face, fill=INK)
    for y in frame.y_ticks:
        text = tick_text(y, frame.y_ticks)
        draw.text((left - TICK_LENGTH - 3 - text_width(text, tick_face), round(float(frame.axes.py(y))) - rows // 2),
                  text, font=tick_face, fill=INK)
    if x_label:
        centred_text(draw, (left, right, bottom + TICK_LENGTH + 3 + rows), x_label, LABEL_SIZE)
    if y_label:
        band = Image.new("RGB", (bottom - top + 1, line_height(label_face)), WHITE)
        centred_text(ImageDraw.Draw(band), (0, band.width, 0), y_label, LABEL_SIZE)
        image.paste(band.transpose(Image.Transpose.ROTATE_90), (PAD, top))
    if title:
        centred_text(draw, (left, right, PAD // 2), title, TITLE_SIZE)


def new_canvas(size: tuple[int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("RGB", (size[0] * SCALE, size[1] * SCALE), WHITE)
    return canvas, ImageDraw.Draw(canvas)


def finish(canvas: Image.Image, frame: Frame, title: str, x_label: str, y_label: str) -> Image.Image:
    image = canvas.reduce(SCALE)
    draw_text(image, frame, title, x_label, y_label)
    return image


def empty_note(image: Image.Image, frame: Frame, text: str = "no finite values") -> None:
    left, top, right, bottom = frame.axes.box
    centred_text(ImageDraw.Draw(image), (left, right, (top + bottom - line_height(font(LABEL_SIZE))) // 2), text,
                 LABEL_SIZE, fill=MUTED)


def on_canvas(position, width: int = 1):
    """Where Pillow must be told to draw a line ``width`` canvas pixels wide (or, width 1, a marker) so that it is
    centred on ``position``, a figure coordinate in which whole numbers are pixel centres, as ticks and grid are.
    Pillow puts pixel centres at whole numbers and widens an even-width line downwards and rightwards."""
    return SCALE * (np.asarray(position, dtype=float) + 0.5) - (1.0 if width % 2 == 0 else 0.5)
