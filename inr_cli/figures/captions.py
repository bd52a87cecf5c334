"""Captions: what a figure shows, in the words and numbers of the run's report.

A caption is a list of parts (drawn joined by `` · ``, wrapped to the figure's width, and stored whole in the PNG
as its ``Description``). Numbers are formatted by the same functions as the terminal summary, from the same
metrics as report.json, so the picture, the summary and the report always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from inr_cli.figures.layout import SEPARATOR
from inr_cli.reports import db_text, number_text


def source_name(source: str) -> str:
    """The input as a reader would name it: the file name, or the built-in image's name."""
    return source.split(":", 1)[1] if source.startswith("skimage:") else (Path(source).name or source)


def model_label(model: str, layers: int, hidden: int) -> str:
    return f"{model} {layers}L-{hidden}D"


def steps_text(steps: int, kept_step: int | None = None) -> str:
    """The steps of a fit whose network is shown: ``step 175 of 200`` where it is an earlier step's (``--keep
    best``, or a fit stopped early at its last good network), else ``200 steps``."""
    return f"{steps:,} steps" if kept_step in (None, steps) else f"step {kept_step:,} of {steps:,}"


def fit_caption(source: str, model: str, layers: int, hidden: int, steps: int,
                quality: Sequence[str], kept_step: int | None = None) -> list[str]:
    """The parts of a fit's caption: input, network, steps (and the step of the network shown, ``kept_step``,
    where it is not the last: the quality is that network's), then the ``quality`` entries."""
    return [source_name(source), model_label(model, layers, hidden), steps_text(steps, kept_step), *quality]


def run_caption(source: str, config, quality: Sequence[str], kept_step: int | None = None) -> list[str]:
    """:func:`fit_caption` for a fit's resolved config (a ``FitConfig``) and its ``FitResult.kept_step``."""
    return fit_caption(source, config.model, config.layers, config.hidden, config.steps, quality, kept_step)


def caption_text(parts: Sequence[str]) -> str:
    return SEPARATOR.join(parts)


def grid_quality(metrics: dict) -> list[str]:
    """PSNR and SSIM of a fit on a grid (and on held-out pixels where there were any), from its report entries."""
    parts = [f"PSNR {db_text(metrics['psnr'])}"]
    if metrics.get("ssim") is not None:
        parts.append(f"SSIM {number_text(metrics['ssim'])}")
    if metrics.get("psnr_holdout") is not None:
        parts.append(f"held-out PSNR {db_text(metrics['psnr_holdout'])}")
        if metrics.get("ssim_holdout") is not None:
            parts.append(f"held-out SSIM {number_text(metrics['ssim_holdout'])}")
    return parts

