"""bits_per_point counts what psnr_fp16_weights rounds: every number a checkpoint stores for the network, an
implicit model's spectral-norm vectors u, v included (they set sigma, and so the network's function)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import run_cli, save_png
from models.registry import MODELS, build_model, count_parameters, count_stored_numbers
from training.fitting.evaluate import bits_per_point
from training.fitting.signal import image_signal


@pytest.mark.parametrize("name", list(MODELS))
def test_the_stored_numbers_are_the_parameters_and_an_implicit_model_s_u_and_v(name):
    model = build_model(name, 2, 3, hidden=16, layers=2, frequency=30.0)
    extra = 2 * 16 * 2 if MODELS[name].implicit else 0  # u and v of each normalised layer
    assert count_stored_numbers(model) == count_parameters(model) + extra
    # Exactly the floating tensors the checkpoint holds and the fp16 measure rounds (not SIREN's w0 settings).
    assert count_stored_numbers(model) == sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    signal = image_signal(torch.zeros(8, 4, 3))
    assert bits_per_point(count_stored_numbers(model), signal) == 16 * count_stored_numbers(model) / 32


def test_an_implicit_fit_s_report_counts_its_spectral_norm_vectors_in_bits_per_point(tmp_path):
    save_png(tmp_path / "a.png", np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    proc = run_cli(["fit", "image", "a.png", "--model", "gabor-imfn", "--hidden", "16", "--layers", "1", "--steps",
                    "3", "--out", "run", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    stored = report["params"] + 2 * 16  # u and v of the one normalised layer
    assert report["bits_per_point"] == pytest.approx(16 * stored / 64)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=False)
    state = checkpoint["model_state"]
    assert sum(t.numel() for t in state.values() if t.is_floating_point()) == stored
