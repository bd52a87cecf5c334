"""Pictures for people: comparisons, grids, frame strips, mesh previews, and the plots of a run.

Raster figures are laid out with Pillow (:mod:`inr_cli.figures.layout`), and so are the line charts and
histograms written for every input (:mod:`inr_cli.figures.charts`: milliseconds, where matplotlib took ~85 ms a
plot after a second and a half to start). The few plots that need log or twin axes (audio spectrograms, the shape
training plot) use matplotlib, imported where such a plot is drawn, not at start-up (a third of a second of every
command). Its figures are made without pyplot, so no display backend is ever chosen or needed.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inr_cli.figures.charts import PALETTE, Series, faded, line_chart
from inr_cli.figures.comparison import ERROR_MAP_FULL_SCALE, comparison_image, write_comparison
from inr_cli.figures.grids import image_grid, write_image_grid
from inr_cli.figures.layout import save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ERROR_MAP_FULL_SCALE", "PSNR_AXIS", "PSNR_CEILING", "clipped_psnr", "comparison_image", "image_grid",
           "new_figure", "plain_log_ticks", "write_comparison", "write_image_grid", "write_psnr_plot"]

PSNR_AXIS = "PSNR (dB, values in [0, 1])"
PSNR_CEILING = 150.0  # dB: where plots draw a perfect (infinite) PSNR

# Titles carry file names, which may be in scripts the bundled font lacks (Chinese, Arabic...): those characters
# draw as boxes, and matplotlib's warning about each would reach the terminal raw. Installed once, at import, so
# that figures drawn on the writer thread need no (thread-unsafe) catch_warnings block.
warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
# A font matplotlib cannot find (findfont: Font family ... not found. Falling back to ...) is drawn in another:
# nothing for the user to act on, so its log lines never reach stderr, which inr keeps to progress and errors.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)


def plain_log_ticks(axis) -> None:
    """Label a log-scale matplotlib ``axis`` with plain numbers (``0.02``, ``1e-05``), with matplotlib's own choice
    of which ticks to label: its default writes them as mathtext (``2×10⁻²``), whose fonts (STIX, Computer Modern)
    a machine's font cache may not list, and matplotlib then warns of each fallback on stderr."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:.3g}"

    axis.set_major_formatter(PlainLogFormatter())
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))


def new_figure(figsize: tuple[float, float], dpi: int = 100) -> Figure:
    """A figure of its own, outside pyplot's global state: outputs are drawn on a background thread while the
    next input trains, and pyplot is not thread-safe. Nothing to close: it is freed with its last reference."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi)


def write_psnr_plot(path: Path, batch_psnr: list[float], evaluations: list[dict], title: str,
                    kept_step: int | None = None) -> None:
    """Training-batch PSNR every step, and the full evaluations (training and held-out points) along the run;
    ``kept_step``, where the run kept an earlier network than the last one (``--keep best``), is marked on its
    evaluation. PSNR past 150 dB (a perfect fit is infinite) is drawn at 150 so the rest of the curve stays
    readable."""
    steps = np.arange(1, len(batch_psnr) + 1)
    series = [Series(steps, clipped_psnr(batch_psnr), "batch (from training loss)", faded(PALETTE[0], 0.6), width=1.1)]
    if evaluations:
        eval_steps = [e["step"] for e in evaluations]
        series.append(Series(eval_steps, clipped_psnr([e["psnr"] for e in evaluations]), "training points",
                             PALETTE[1], width=2.0, marker="o"))
        if evaluations[-1].get("psnr_holdout") is not None:
            series.append(Series(eval_steps, clipped_psnr([e.get("psnr_holdout") for e in evaluations]),
                                 "held-out points", PALETTE[2], width=2.0, marker="s"))
        kept = [e["psnr"] for e in evaluations[:-1] if e["step"] == kept_step]
        if kept:
            series.append(Series([kept_step], clipped_psnr(kept), f"network kept (step {kept_step})", PALETTE[3],
                                 width=0, marker="s", marker_size=9.0))
    chart = line_chart(series, title, "step", PSNR_AXIS, size=(700, 400), integer_x=True)
    save_png(path, chart, f"PSNR during training · {title}")


def clipped_psnr(values: list) -> np.ndarray:
    """PSNR values to plot: missing ones (None) are gaps, +inf and anything past 150 dB is drawn at 150."""
    return np.clip(np.array(values, dtype=float), None, PSNR_CEILING)  # None becomes NaN as a float
