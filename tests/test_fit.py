"""The fit loop on a real photo crop: each model gets past a PSNR bar, hold-out, minibatches, determinism.

Bars were set from measurements on the 64x64 crop camera()[200:264, 200:264] with the default recipe
(resolved by training.fitting.recipes for a 64 px image: SIREN lr 5e-4, w0 30; MFN lr 5e-3, input scale 32),
PyTorch 2.13 CPU. Each bar sits a few dB under the measured value so that other CPUs / BLAS builds pass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers import psnr_np
from inr_core.errors import UserError
from training.fitting.fit import FitConfig, fit, resolve_config
from training.fitting.recipes import default_frequency, default_learning_rate
from training.fitting.signal import image_signal

CPU = "cpu"


# (model, hidden, layers, steps, measured PSNR in dB, bar)
QUALITY = [
    ("siren", 64, 3, 300, 47.29, 44.0),
    ("fourier-mfn", 64, 3, 300, 30.10, 28.0),
    ("gabor-mfn", 64, 3, 300, 30.75, 28.5),
]


@pytest.mark.parametrize("model,hidden,layers,steps,measured,bar", QUALITY, ids=[q[0] for q in QUALITY])
def test_model_fits_camera_crop(camera_crop, model, hidden, layers, steps, measured, bar):
    signal = image_signal(camera_crop)
    result = fit(signal, FitConfig(model=model, hidden=hidden, layers=layers, steps=steps, device=CPU, eval_every=0))
    # The reported PSNR is the PSNR of the returned reconstruction against the image.
    reconstruction = result.final.reconstruction
    assert reconstruction.shape == (64, 64, 1)
    assert float(reconstruction.min()) >= 0.0 and float(reconstruction.max()) <= 1.0
    assert result.final.psnr == pytest.approx(psnr_np(reconstruction.numpy(), camera_crop.numpy()), abs=1e-4)
    assert result.final.psnr > bar, f"{model}: {result.final.psnr:.2f} dB (measured {measured} dB when the bar was set)"
    assert 0.5 < result.final.ssim <= 1.0
    # Training really progressed: the batch PSNR of the last step is far above that of the first.
    assert result.batch_psnr[-1] > result.batch_psnr[0] + 10.0
    assert len(result.batch_psnr) == steps


def test_default_evaluations_along_the_run(camera_crop):
    signal = image_signal(camera_crop[:32, :32])
    result = fit(signal, FitConfig(model="siren", hidden=32, layers=1, steps=50, device=CPU))
    steps = [e["step"] for e in result.evaluations]
    assert result.config.eval_every == 2  # steps // 25
    assert steps == list(range(2, 51, 2))
    assert result.evaluations[-1]["psnr"] == result.final.psnr
    # PSNR rises along the run (allowing small wiggles).
    assert result.evaluations[-1]["psnr"] > result.evaluations[0]["psnr"] + 3.0


def test_holdout_grid(camera_crop):
    signal = image_signal(camera_crop, holdout="grid")
    result = fit(signal, FitConfig(model="siren", hidden=32, layers=2, steps=200, device=CPU, eval_every=0,
                                   holdout="grid"))
    final = result.final
    # Measured: train 38.52 dB, held-out 25.64 dB.
    assert final.psnr_holdout is not None and math.isfinite(final.psnr_holdout)
    assert final.psnr_holdout < final.psnr - 5.0
    assert final.psnr_holdout > 22.0
    assert final.ssim_holdout is not None
    # Train points are [::2, ::2], held-out points [1::2, 1::2]: recompute both from the reconstruction.
    rec, img = final.reconstruction.numpy(), camera_crop.numpy()
    assert final.psnr == pytest.approx(psnr_np(rec[::2, ::2], img[::2, ::2]), abs=1e-4)
    assert final.psnr_holdout == pytest.approx(psnr_np(rec[1::2, 1::2], img[1::2, 1::2]), abs=1e-4)
    # Only the 1024 training points are fitted: full batch means 1024 per step.
    assert result.config.batch_size == 32 * 32


def test_image_signal_grid_split():
    pixels = torch.rand(6, 5, 2)
    signal = image_signal(pixels, holdout="grid")
    flat = np.arange(30).reshape(6, 5)
    assert signal.train_index.tolist() == flat[::2, ::2].ravel().tolist()
    assert signal.holdout_index.tolist() == flat[1::2, 1::2].ravel().tolist()
    assert signal.train_grid_shape == (3, 3) and signal.holdout_grid_shape == (3, 2)
    torch.testing.assert_close(signal.values, pixels.reshape(-1, 2) * 2 - 1)
    plain = image_signal(pixels)
    assert len(plain.train_index) == 30 and len(plain.holdout_index) == 0
    with pytest.raises(ValueError):
        image_signal(pixels, holdout="random")


def test_minibatch_still_learns(camera_crop):
    signal = image_signal(camera_crop)
    result = fit(signal, FitConfig(model="siren", hidden=64, layers=3, steps=300, batch_size=512, device=CPU,
                                   eval_every=0))
    assert result.config.batch_size == 512
    # Measured 38.61 dB (full batch of 4096 reaches 47.29 dB in the same number of steps).
    assert result.final.psnr > 35.0


@pytest.mark.parametrize("model", ["fourier-mfn", "gabor-mfn", "siren"])
def test_same_seed_same_result(camera_crop, model):
    signal = image_signal(camera_crop[:32, :32])
    config = FitConfig(model=model, hidden=32, layers=2, steps=60, batch_size=300, device=CPU, eval_every=0, seed=7)
    first, second = fit(signal, config), fit(signal, config)
    assert first.batch_psnr == second.batch_psnr
    assert first.final.psnr == second.final.psnr
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    other = fit(signal, FitConfig(**{**config.to_dict(), "seed": 8}))
    assert other.batch_psnr != first.batch_psnr


def test_resolved_config_is_concrete(camera_crop):
    signal = image_signal(camera_crop)
    config = resolve_config(FitConfig(model="gabor-mfn", hidden=16, layers=1, steps=100, device=CPU), signal)
    assert config.device == "cpu"
    assert config.lr == pytest.approx(5e-3)  # 1e-3 at 512 px, boosted and capped at 5x for 64 px
    assert config.frequency == pytest.approx(32.0)  # half the longest side
    assert config.batch_size == 64 * 64
    assert config.eval_every == 4


def test_recipes_match_reference_at_paper_sizes():
    # REFERENCE.md: SIREN lr 1e-4, w0 30 at 512 px; MFN lr 1e-3 and input scale 256 at 512 px,
    # lr 3e-3 and input scale 64 at 128 px.
    assert default_learning_rate("siren", (512, 512)) == pytest.approx(1e-4)
    assert default_frequency("siren", (512, 512)) == pytest.approx(30.0)
    assert default_learning_rate("gabor-mfn", (512, 512)) == pytest.approx(1e-3)
    assert default_frequency("fourier-mfn", (512, 512)) == pytest.approx(256.0)
    assert default_learning_rate("fourier-mfn", (128, 128)) == pytest.approx(3e-3, rel=1e-6)
    assert default_frequency("gabor-mfn", (128, 128)) == pytest.approx(64.0)


@pytest.mark.parametrize("field,value", [("steps", 0), ("steps", -5), ("hidden", 0), ("lr", -1.0),
                                         ("lr", float("nan")), ("frequency", 0.0), ("batch_size", 0),
                                         ("model", "nope")])
def test_invalid_config_is_rejected(camera_crop, field, value):
    signal = image_signal(camera_crop[:8, :8])
    with pytest.raises((UserError, ValueError)) as info:
        fit(signal, FitConfig(**{"device": CPU, "steps": 5, "hidden": 8, "layers": 1, field: value}))
    assert "\n" not in str(info.value)


def test_divergence_is_a_user_error(camera_crop):
    signal = image_signal(camera_crop[:16, :16])
    with pytest.raises(UserError, match="diverged"):
        fit(signal, FitConfig(model="siren", hidden=16, layers=1, steps=20, lr=1e30, device=CPU))
