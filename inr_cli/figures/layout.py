"""Laying out raster figures with Pillow: fonts, text that fits its box, colour bars, captioned PNGs.

Raster figures (comparisons, frame strips, grids, mesh previews) are assembled here rather than in matplotlib:
pixels stay pixels (no resampling of the panels), text is measured before it is placed so nothing overlaps, and a
figure costs milliseconds. The font is the DejaVu Sans that ships inside matplotlib, so every machine draws the
same letters; it is found by path, without importing matplotlib.
"""

from __future__ import annotations

import importlib.util
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from inr_cli.files import atomic_write_with

WHITE = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (90, 90, 90)
GAP = 4
PAD = 8
SEPARATOR = " · "
# The PNG text keyword holding a figure's caption: readable with any PNG tool, and by the tests.
CAPTION_KEY = "Description"


# Characters no text of ours may carry as they are: controls (a CR or LF in a file name), line and paragraph
# separators (the text shaper fails on several of them) and lone surrogates (UTF-8 cannot encode them).
_UNSHOWABLE = {"Cc", "Zl", "Zp", "Cs"}
# Python decodes a file name's undecodable bytes to the surrogates U+DC80..U+DCFF (PEP 383).
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def printable(text: str) -> str:
    """``text`` safe to draw, and to write as UTF-8 into a page or a PNG: each control character shown as its
    escape (``\\r``, ``\\x1b``), each undecodable byte of a file name as ``\\xff``; any other text unchanged."""
    if text.isprintable():
        return text
    return "".join(_shown(c) if unicodedata.category(c) in _UNSHOWABLE else c for c in text)


def _shown(character: str) -> str:
    if ord(character) in _ESCAPED_BYTES:
        return f"\\x{ord(character) - 0xDC00:02x}"
    return repr(character)[1:-1]  # Python's own escape: \r, \x85, \u2029


@lru_cache(maxsize=None)
def _font_folder() -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf"


@lru_cache(maxsize=None)
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans at ``size`` pixels; Pillow's own scalable font if matplotlib's files are missing."""
    folder = _font_folder()
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    if folder is not None and (folder / name).is_file():
        return ImageFont.truetype(str(folder / name), size)
    return ImageFont.load_default(size)


def text_width(text: str, face) -> int:
    return int(np.ceil(face.getlength(printable(text))))


def line_height(face) -> int:
    """Height of a line of text in ``face``, ascender to descender, the same for every string."""
    ascent, descent = face.getmetrics()
    return ascent + descent


def fitted(text: str, width: int, size: int, bold: bool = False, smallest: int = 9) -> tuple[str, object]:
    """``text`` and a font no larger than ``size`` in which it fits ``width`` pixels: shrunk down to ``smallest``,
    then cut short with an ellipsis."""
    text = printable(text)
    for candidate in range(size, smallest - 1, -1):
        face = font(candidate, bold)
        if text_width(text, face) <= width:
            return text, face
    face = font(smallest, bold)
    while len(text) > 1 and text_width(text + "…", face) > width:
        text = text[:-1]
    return text + "…", face


def wrapped(parts: Sequence[str], width: int, face) -> list[str]:
    """``parts`` joined with `` · `` into as few lines as fit ``width``; a part wider than a line gets its own."""
    lines: list[str] = []
    for part in map(printable, parts):
        if lines and text_width(lines[-1] + SEPARATOR + part, face) <= width:
            lines[-1] += SEPARATOR + part
        else:
            lines.append(part)
    return lines


def centred_text(draw: ImageDraw.ImageDraw, box: tuple[int, int, int], text: str, size: int, bold: bool = False,
                 fill=INK) -> None:
    """``text`` centred over the span ``(left, right)`` with its top at ``top``, shrunk to fit the span."""
    left, right, top = box
    text, face = fitted(text, right - left, size, bold)
    draw.text(((left + right - text_width(text, face)) // 2, top), text, font=face, fill=fill)


def caption_band(lines: list[str], width: int, face) -> Image.Image:
    """The caption's lines, left-aligned, on a white band ``width`` pixels wide."""
    height = PAD + len(lines) * line_height(face) + PAD // 2
    band = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(band)
    for i, line in enumerate(lines):
        draw.text((PAD, PAD + i * line_height(face)), line, font=face, fill=INK)
    return band


def stack(parts: Sequence[Image.Image]) -> Image.Image:
    """Images one above the other, left-aligned, on white."""
    width = max(p.width for p in parts)
    canvas = Image.new("RGB", (width, sum(p.height for p in parts)), WHITE)
    top = 0
    for part in parts:
        canvas.paste(part, (0, top))
        top += part.height
    return canvas


def with_caption(figure: Image.Image, parts: Sequence[str], size: int = 15) -> Image.Image:
    """``figure`` under its caption, the ``parts`` wrapped to the figure's width."""
    face = font(size)
    return stack([caption_band(wrapped(parts, figure.width - 2 * PAD, face), figure.width, face), figure])


@dataclass(frozen=True)
class ColourScale:
    """How a quantity maps to colour: ``colours`` takes values in [0, 1] of ``full_scale``; the bar's ``label``
    names the quantity, ``tick`` formats a value, and values past ``full_scale`` saturate (marked with ≥)."""

    colours: Callable[[np.ndarray], np.ndarray]
    full_scale: float
    label: str
    tick: Callable[[float], str]


def colour_bar(scale: ColourScale, width: int, size: int = 12) -> Image.Image:
    """A horizontal colour bar ``width`` pixels wide: the gradient, ticks at 0, half and full scale, the label."""
    face = font(size)
    bar_height, tick_length = 12, 4
    left = right_margin = max(text_width(scale.tick(0.0), face), text_width("≥ " + scale.tick(scale.full_scale),
                                                                            face)) // 2 + 2
    inner = max(8, width - left - right_margin)
    gradient = scale.colours(np.linspace(0.0, 1.0, inner))[None, :, :3]
    rows = line_height(face)
    image = Image.new("RGB", (left + inner + right_margin, bar_height + tick_length + 2 * rows + 4), WHITE)
    image.paste(Image.fromarray(to_uint8(np.repeat(gradient, bar_height, axis=0))), (left, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((left - 1, -1, left + inner, bar_height), outline=MUTED)
    for fraction, prefix in ((0.0, ""), (0.5, ""), (1.0, "≥ ")):
        x = left + round(fraction * (inner - 1))
        draw.line((x, bar_height, x, bar_height + tick_length), fill=MUTED)
        text = prefix + scale.tick(fraction * scale.full_scale)
        draw.text((x - text_width(text, face) // 2, bar_height + tick_length), text, font=face, fill=INK)
    centred_text(draw, (0, image.width, bar_height + tick_length + rows + 2), scale.label, size, fill=MUTED)
    return image


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)


def save_png(path: Path, image: Image.Image, caption: str | None = None) -> None:
    """Write ``image`` as PNG atomically, its caption kept in the file as text (keyword ``Description``)."""
    info = PngInfo()
    info.add_text("Software", "inr")
    if caption:
        info.add_itxt(CAPTION_KEY, printable(caption))  # international text: names and symbols beyond Latin-1
    # Light compression: a third of the default's time for files a fifth larger.
    atomic_write_with(path, lambda buf: image.save(buf, format="PNG", pnginfo=info, compress_level=3))


def png_caption(path: Path) -> str | None:
    """The caption :func:`save_png` stored in a PNG, or None."""
    with Image.open(path) as image:
        return image.text.get(CAPTION_KEY)
