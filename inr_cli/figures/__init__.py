"""Pictures for people: comparisons, grids, frame strips, mesh previews, and the plots of a run.

Raster figures are laid out with Pillow (:mod:`inr_cli.figures.layout`); plots with axes use matplotlib, which
is imported where a plot is drawn, not at start-up (a third of a second of every command). Its figures are made
without pyplot, so no display backend is ever chosen or needed.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inr_cli.figures.comparison import ERROR_MAP_FULL_SCALE, comparison_image, write_comparison
from inr_cli.figures.grids import image_grid, write_image_grid
from inr_cli.files import atomic_write_with

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ERROR_MAP_FULL_SCALE", "comparison_image", "image_grid", "new_figure", "write_comparison",
           "write_image_grid", "write_psnr_plot"]

# Titles carry file names, which may be in scripts the bundled font lacks (Chinese, Arabic...): those characters
# draw as boxes, and matplotlib's warning about each would reach the terminal raw. Installed once, at import, so
# that figures drawn on the writer thread need no (thread-unsafe) catch_warnings block.
warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)


def new_figure(figsize: tuple[float, float], dpi: int = 100) -> Figure:
    """A figure of its own, outside pyplot's global state: outputs are drawn on a background thread while the
    next input trains, and pyplot is not thread-safe. Nothing to close: it is freed with its last reference."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi)


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
