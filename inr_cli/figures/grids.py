"""Tables of pictures: rows with labels on the left, optional column titles above and a line of text under each
picture (its PSNR). JIIO's grids (corrupted / each method / original) and video frame strips are drawn here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from inr_cli.figures.layout import GAP, PAD, SEPARATOR, WHITE, centred_text, fitted, font, line_height, save_png, \
    text_width, to_uint8, with_caption
from inr_cli.reports import db_text

LABEL_SIZE = 13
NOTE_SIZE = 11
MAX_LABEL_WIDTH = 200


def display_rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W, C) in [0, 1] -> (H, W, 3) floats for display; alpha is composited over white."""
    array = np.asarray(pixels, dtype=np.float32)
    if array.shape[2] in (2, 4):
        colour, alpha = array[:, :, :-1], array[:, :, -1:]
        array = colour * alpha + (1.0 - alpha)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return array


def tile_table(rows: Sequence[Sequence[Image.Image]], labels: Sequence[str] | None = None,
               notes: Sequence[Sequence[str] | None] | None = None, titles: Sequence[str] | None = None,
               columns: int | None = None) -> Image.Image:
    """Rows of equally many, equally sized pictures, laid out in blocks of ``columns`` (a block keeps its rows
    together). ``labels``: one per row, in a left margin; ``notes``: per row, a line under each picture (None: the
    row has none); ``titles``: one per column, above each block."""
    count = len(rows[0])
    width, height = rows[0][0].size
    columns = max(1, min(columns or count, count))
    blocks = -(-count // columns)
    label_face = font(LABEL_SIZE)
    margin = 0
    if labels:
        margin = min(MAX_LABEL_WIDTH, max(text_width(label, label_face) for label in labels)) + 2 * PAD
    note_band = line_height(font(NOTE_SIZE)) + 2 if notes and any(n is not None for n in notes) else 0
    title_band = line_height(font(LABEL_SIZE, bold=True)) + GAP if titles else 0
    row_heights = [height + (note_band if notes and notes[r] is not None else 0) + GAP for r in range(len(rows))]
    block_height = title_band + sum(row_heights) + 3 * GAP  # blocks stand apart from the rows within them
    canvas = Image.new("RGB", (margin + columns * (width + GAP) - GAP, blocks * block_height - 4 * GAP), WHITE)
    draw = ImageDraw.Draw(canvas)
    for block in range(blocks):
        top = block * block_height
        for column, index in enumerate(range(block * columns, min(count, (block + 1) * columns))):
            left = margin + column * (width + GAP)
            if titles:
                centred_text(draw, (left, left + width, top), titles[index], LABEL_SIZE, bold=True)
            y = top + title_band
            for r, row in enumerate(rows):
                canvas.paste(row[index], (left, y))
                if notes and notes[r] is not None:
                    centred_text(draw, (left, left + width, y + height + 1), notes[r][index], NOTE_SIZE)
                y += row_heights[r]
        y = top + title_band
        for r, label in enumerate(labels or []):
            text, face = fitted(label, margin - 2 * PAD, LABEL_SIZE)
            draw.text((PAD, y + (height - line_height(face)) // 2), text, font=face, fill=(0, 0, 0))
            y += row_heights[r]
    return canvas


PSNR_NOTE = "under each image: its PSNR against the original"


def grid_caption(caption: Sequence[str] | None, psnrs: Sequence[Sequence[float] | None] | None) -> list[str]:
    """The parts of a grid's caption: ``caption``'s, then, where PSNRs are shown, what they are."""
    return [*(caption or []), *([PSNR_NOTE] if psnrs is not None else [])]


def image_grid(rows: list[torch.Tensor], columns: int = 16, min_cell: int = 64, labels: list[str] | None = None,
               psnrs: Sequence[Sequence[float] | None] | None = None,
               caption: Sequence[str] | None = None) -> Image.Image:
    """Rows of equally many images (N, C, H, W) in [-1, 1], e.g. corrupted / restored / original, in blocks of
    ``columns``; each image upscaled by an integer factor (nearest neighbour) to at least ``min_cell`` pixels so
    small images stay readable. ``labels`` name the rows; ``psnrs`` (per row, or None) go under each image;
    ``caption``: parts drawn above the grid (with, where PSNRs are shown, a line saying what they are)."""
    side = max(rows[0].shape[-2:])
    factor = max(1, -(-min_cell // side))
    tiles = []
    for images in rows:
        pixels = ((images.detach().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
        tiles.append([upscaled(display_rgb(p), factor) for p in pixels])
    notes = None if psnrs is None else [None if row is None else [db_text(v) for v in row] for row in psnrs]
    table = tile_table(tiles, labels, notes, columns=columns)
    parts = grid_caption(caption, psnrs)
    return with_caption(table, parts, size=NOTE_SIZE + 1) if parts else table


def upscaled(pixels: np.ndarray, factor: int) -> Image.Image:
    """(H, W, 3) floats in [0, 1] as a picture ``factor`` times larger, every pixel a visible square."""
    tile = Image.fromarray(to_uint8(pixels))
    return tile if factor == 1 else tile.resize((tile.width * factor, tile.height * factor),
                                                Image.Resampling.NEAREST)


def write_image_grid(path: Path, rows: list[torch.Tensor], columns: int = 16, labels: list[str] | None = None,
                     psnrs: Sequence[Sequence[float] | None] | None = None,
                     caption: Sequence[str] | None = None) -> None:
    """:func:`image_grid` as a PNG; its caption (what it shows, and what the numbers under the images are) is
    drawn above it and stored in the file as its ``Description``, as every picture's is."""
    parts = grid_caption(caption, psnrs)
    save_png(path, image_grid(rows, columns, labels=labels, psnrs=psnrs, caption=caption),
             SEPARATOR.join(parts) if parts else None)
