"""The image comparison: target | reconstruction | error map, titled, captioned, with the error's colour bar."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from inr_cli.figures.captions import caption_text
from inr_cli.figures.grids import display_rgb, upscaled
from inr_cli.figures.layout import GAP, WHITE, ColourScale, centred_text, colour_bar, font, line_height, save_png, \
    to_uint8, with_caption

# The error map is scaled so that an absolute error of this much (on [0, 1]) is full brightness.
ERROR_MAP_FULL_SCALE = 0.1
COMPARISON_MAX_HEIGHT = 1024
COMPARISON_MAX_WIDTH = 1400  # per panel
# Small images are enlarged (whole pixels) until their longest side reaches this, so titles fit above them.
SMALL_PANEL = 256
TITLE_SIZE = 14


def error_scale() -> ColourScale:
    from matplotlib import colormaps

    inferno = colormaps["inferno"]
    return ColourScale(lambda values: inferno(np.clip(values, 0.0, 1.0))[..., :3], ERROR_MAP_FULL_SCALE,
                       "absolute error on [0, 1], channel mean", lambda value: f"{value:g}")


def _panels(target: torch.Tensor, reconstruction: torch.Tensor, scale: ColourScale) -> list[Image.Image]:
    """The three panels, each enlarged (small images) or shrunk (large ones) to the same display size."""
    error = (reconstruction - target).abs().mean(dim=2).numpy()
    arrays = [display_rgb(target.numpy()), display_rgb(reconstruction.numpy()),
              scale.colours(error / scale.full_scale).astype(np.float32)]
    height, width = error.shape
    if max(height, width) < SMALL_PANEL:
        return [upscaled(a, max(1, SMALL_PANEL // max(height, width))) for a in arrays]
    shrink = min(1.0, COMPARISON_MAX_HEIGHT / height, COMPARISON_MAX_WIDTH / width)
    images = [Image.fromarray(to_uint8(a)) for a in arrays]
    if shrink < 1.0:
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        images = [im.resize(size, Image.Resampling.LANCZOS) for im in images]
    return images


def comparison_image(target: torch.Tensor, reconstruction: torch.Tensor, caption: Sequence[str] = ()
                     ) -> Image.Image:
    """Target | reconstruction | error map (inferno, full scale 0.1), column titles, the error's colour bar under
    its panel, and the ``caption`` parts above."""
    scale = error_scale()
    panels = _panels(target, reconstruction, scale)
    width, height = panels[0].size
    bar = colour_bar(scale, max(width, 220))
    title_band = line_height(font(TITLE_SIZE, bold=True)) + GAP
    canvas = Image.new("RGB", (max(3 * width + 2 * GAP, 2 * (width + GAP) + bar.width),
                               title_band + height + GAP + bar.height), WHITE)
    draw = ImageDraw.Draw(canvas)
    for i, (panel, title) in enumerate(zip(panels, ("target", "reconstruction", "|error|"))):
        left = i * (width + GAP)
        centred_text(draw, (left, left + width, 0), title, TITLE_SIZE, bold=True)
        canvas.paste(panel, (left, title_band))
    bar_left = 2 * (width + GAP) + (width - bar.width) // 2
    canvas.paste(bar, (min(max(0, bar_left), canvas.width - bar.width), title_band + height + GAP))
    return with_caption(canvas, caption) if caption else canvas


def write_comparison(path: Path, target: torch.Tensor, reconstruction: torch.Tensor, caption: Sequence[str] = ()
                     ) -> None:
    save_png(path, comparison_image(target, reconstruction, caption), caption_text(caption))
