"""The shape fit's training.png: a caption in the PNG like every picture's, and nothing on stderr (its log-scale
tick labels were matplotlib mathtext, whose fonts a machine may lack: 21 findfont lines with --quiet)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import trimesh
from PIL import Image

from helpers import run_cli
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


def test_a_quiet_sdf_fit_writes_nothing_on_stderr_and_captions_its_training_plot(tmp_path):
    trimesh.creation.icosphere(subdivisions=2, radius=0.5).export(tmp_path / "sphere.ply")
    proc = run_cli(["fit", "sdf", "sphere.ply", "--steps", "10", "--hidden", "16", "--samples", "3000",
                    "--resolution", "16", "--eval-points", "1000", "--quiet", "--out", "run"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    caption = png_caption(Path(tmp_path / "run" / "training.png"))
    assert caption == "loss and IoU during training · sphere.ply: siren 3L-16D"
