"""The shape fit's training.png: a caption in the PNG like every picture's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PIL import Image

from inr_cli.figures.layout import png_caption
from inr_cli.modalities.shape import write_progress
from training.metrics import psnr_from_mse


def test_the_shape_training_plot_carries_its_caption(tmp_path):
    losses = np.geomspace(0.7, 3e-5, 300)
    result = SimpleNamespace(batch_psnr=[psnr_from_mse(v) for v in losses],
                             evaluations=[{"step": s, "iou": {"uniform": 0.5, "surface": s / 400}}
                                          for s in range(30, 301, 30)])
    write_progress(tmp_path / "training.png", result, "torus.ply: siren 3L-16D")
    assert png_caption(tmp_path / "training.png") == "loss and IoU during training · torus.ply: siren 3L-16D"
    assert Image.open(tmp_path / "training.png").size == (700, 400)
