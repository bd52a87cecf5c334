"""Pictures for people: the side-by-side comparison and the PSNR-vs-step plot."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from inr_cli.files import atomic_write_with

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# matplotlib is imported where a picture is drawn, not at start-up (a third of a second of every command). Its
# figures are made without pyplot, so no display backend is ever chosen or needed.

# Titles carry file names, which may be in scripts the bundled font lacks (Chinese, Arabic...): those characters
# draw as boxes, and matplotlib's warning about each would reach the terminal raw. Installed once, at import, so
# that figures drawn on the writer thread need no (thread-unsafe) catch_warnings block.
warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)

# The error map is scaled so that an absolute error of this much (on [0, 1]) is full brightness.
ERROR_MAP_FULL_SCALE = 0.1
COMPARISON_MAX_HEIGHT = 1024
GAP = 4


def _display_rgb(pixels: torch.Tensor) -> np.ndarray:
    """(H, W, C) in [0, 1] -> (H, W, 3) floats for display; alpha is composited over white."""
    array = pixels.numpy().astype(np.float32)
    channels = array.shape[2]
    if channels in (2, 4):
        colour, alpha = array[:, :, :-1], array[:, :, -1:]
        array = colour * alpha + (1.0 - alpha)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return array


def new_figure(figsize: tuple[float, float], dpi: int = 100) -> Figure:
    """A figure of its own, outside pyplot's global state: outputs are drawn on a background thread while the
    next input trains, and pyplot is not thread-safe. Nothing to close: it is freed with its last reference."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi)


def comparison_image(target: torch.Tensor, reconstruction: torch.Tensor) -> Image.Image:
    """target | reconstruction | error map (mean absolute error over channels, inferno colour map)."""
    error = (reconstruction - target).abs().mean(dim=2).numpy()
    from matplotlib import colormaps

    error_rgb = colormaps["inferno"](np.clip(error / ERROR_MAP_FULL_SCALE, 0.0, 1.0))[:, :, :3]
    panels = [_display_rgb(target), _display_rgb(reconstruction), error_rgb.astype(np.float32)]
    height, width = panels[0].shape[:2]
    scale = min(1.0, COMPARISON_MAX_HEIGHT / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    images = [Image.fromarray(np.rint(p * 255).astype(np.uint8)) for p in panels]
    if scale < 1.0:
        images = [im.resize(size, Image.Resampling.LANCZOS) for im in images]
    canvas = Image.new("RGB", (3 * size[0] + 2 * GAP, size[1]), (255, 255, 255))
    for i, im in enumerate(images):
        canvas.paste(im, (i * (size[0] + GAP), 0))
    return canvas


def write_comparison(path: Path, target: torch.Tensor, reconstruction: torch.Tensor) -> None:
    image = comparison_image(target, reconstruction)
    atomic_write_with(path, lambda buf: image.save(buf, format="PNG"))


def write_psnr_plot(path: Path, batch_psnr: list[float], evaluations: list[dict], title: str) -> None:
    """Training-batch PSNR every step, and the full evaluations (training and held-out points) along the run."""
    fig = new_figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    steps = np.arange(1, len(batch_psnr) + 1)
    finite = np.clip(np.asarray(batch_psnr, dtype=float), None, 150.0)
    ax.plot(steps, finite, lw=0.8, alpha=0.6, label="batch (from training loss)")
    if evaluations:
        eval_steps = [e["step"] for e in evaluations]
        ax.plot(eval_steps, [min(e["psnr"], 150.0) for e in evaluations], "o-", ms=3, label="training points")
        if evaluations[-1].get("psnr_holdout") is not None:
            ax.plot(eval_steps, [e["psnr_holdout"] for e in evaluations], "s-", ms=3, label="held-out points")
    ax.set_xlabel("step")
    ax.set_ylabel("PSNR (dB, values in [0, 1])")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    # Fixed margins rather than tight_layout, which draws the whole figure once more just to measure it.
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.12, top=0.92)
    atomic_write_with(path, lambda buf: fig.savefig(buf, format="png"))


def image_grid(rows: list[torch.Tensor], columns: int = 16, min_cell: int = 64,
               labels: list[str] | None = None) -> Image.Image:
    """Rows of equally many images (N, C, S, S) in [-1, 1], e.g. corrupted / restored / original, laid out in
    blocks of ``columns`` images (the rows of one block stay together), each image upscaled by an integer factor
    (nearest neighbour) to at least ``min_cell`` pixels so small images stay readable. ``labels``, one per row,
    are written in a margin left of every block's rows."""
    count, side = rows[0].shape[0], rows[0].shape[-1]
    factor = max(1, -(-min_cell // side))
    cell = side * factor
    columns = max(1, min(columns, count))
    blocks = -(-count // columns)
    block_height = len(rows) * (cell + GAP) + GAP  # a double gap between blocks
    font = ImageFont.load_default() if labels else None
    margin = 0 if font is None else 2 * GAP + max(math.ceil(font.getlength(label)) for label in labels)
    canvas = Image.new("RGB", (margin + columns * (cell + GAP) - GAP, blocks * block_height - 2 * GAP),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, label in enumerate(labels or []):
        _, top, _, bottom = font.getbbox(label)
        for block in range(blocks):
            draw.text((GAP, block * block_height + r * (cell + GAP) + (cell - bottom - top) // 2), label,
                      fill=(0, 0, 0), font=font)
    for r, images in enumerate(rows):
        pixels = ((images.detach().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)
        for i in range(count):
            tile = Image.fromarray(np.rint(_display_rgb(pixels[i]) * 255).astype(np.uint8))
            tile = tile.resize((cell, cell), Image.Resampling.NEAREST)
            block, column = divmod(i, columns)
            canvas.paste(tile, (margin + column * (cell + GAP), block * block_height + r * (cell + GAP)))
    return canvas


def write_image_grid(path: Path, rows: list[torch.Tensor], columns: int = 16, labels: list[str] | None = None
                     ) -> None:
    image = image_grid(rows, columns, labels=labels)
    atomic_write_with(path, lambda buf: image.save(buf, format="PNG"))
