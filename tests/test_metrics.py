"""Metrics: PSNR on [0, 1] against an independent numpy computation, the [-1, 1] MSE shortcut, SSIM vs skimage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from helpers import psnr_np
from training.metrics import psnr, psnr_from_mse, ssim, to_unit_range


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    target = rng.random((20, 24, 3))
    prediction = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1)
    return torch.from_numpy(prediction).float(), torch.from_numpy(target).float()


def test_psnr_is_minus_ten_log10_mse(pair):
    prediction, target = pair
    expected = -10 * np.log10(np.mean((prediction.double().numpy() - target.double().numpy()) ** 2))
    assert psnr(prediction, target) == pytest.approx(expected, abs=1e-9)
    assert 20 < psnr(prediction, target) < 30  # noise of sigma 0.05 is about 26 dB


def test_psnr_known_value():
    target = torch.zeros(10, 10, 1)
    prediction = torch.full((10, 10, 1), 0.1)  # MSE 0.01 -> 20 dB
    assert psnr(prediction, target) == pytest.approx(20.0, abs=1e-5)


def test_psnr_identical_is_infinite(pair):
    _, target = pair
    assert psnr(target, target) == math.inf


def test_psnr_clamps_the_prediction(pair):
    prediction, target = pair
    wild = prediction.clone()
    wild[0, 0] = 5.0
    wild[1, 1] = -3.0
    assert psnr(wild, target) == pytest.approx(psnr_np(wild.numpy(), target.numpy()), abs=1e-9)
    assert psnr(wild, target) == pytest.approx(psnr(wild.clamp(0, 1), target), abs=1e-12)


def test_psnr_of_signed_data_over_a_region_matches_a_recomputation():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 8, 8, generator=generator) * 2 - 1
    prediction = target + 0.2 * torch.randn(2, 3, 8, 8, generator=generator)  # some values leave [-1, 1]
    region = torch.zeros(2, 1, 8, 8)
    region[:, :, 2:5, 3:7] = 1
    a, b = (prediction.clamp(-1, 1).double().numpy() + 1) / 2, (target.double().numpy() + 1) / 2  # float64
    inside = np.broadcast_to(region.numpy(), a.shape).astype(bool)
    signed = (-1.0, 1.0)
    expected_inside = -10 * np.log10(((a - b)[inside] ** 2).mean())
    assert psnr(prediction, target, region, value_range=signed) == pytest.approx(expected_inside, abs=1e-9)
    assert psnr(prediction, target, value_range=signed) == pytest.approx(-10 * np.log10(((a - b) ** 2).mean()),
                                                                         abs=1e-9)
    # The same data moved to [0, 1] by hand gives the same value with the default range.
    assert psnr((prediction + 1) / 2, (target + 1) / 2, region) == pytest.approx(expected_inside, abs=1e-4)
    assert psnr(target, target, region, value_range=signed) == math.inf


def test_psnr_from_mse_is_psnr_of_pm1_data(pair):
    """An MSE measured on [-1, 1] data is 4x the [0, 1] MSE: psnr_from_mse must undo exactly that."""
    prediction, target = pair
    mse_pm1 = torch.mean(((prediction * 2 - 1).double() - (target * 2 - 1).double()) ** 2).item()
    assert psnr_from_mse(mse_pm1) == pytest.approx(psnr(prediction, target), abs=1e-6)
    assert psnr_from_mse(4.0 * 0.01) == pytest.approx(20.0, abs=1e-9)
    assert psnr_from_mse(0.0) == math.inf


def test_to_unit_range_maps_and_clamps():
    values = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0])
    assert to_unit_range(values).tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]


def test_ssim_identical_is_one(pair):
    _, target = pair
    assert ssim(target, target) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(20, 24, 3), (32, 32, 1)])
def test_ssim_matches_skimage(shape):
    rng = np.random.default_rng(1)
    target = rng.random(shape)
    prediction = np.clip(target + rng.normal(0, 0.1, shape), 0, 1)
    expected = structural_similarity(target, prediction, data_range=1.0, channel_axis=-1, win_size=7)
    got = ssim(torch.from_numpy(prediction).float(), torch.from_numpy(target).float())
    assert got == pytest.approx(expected, abs=1e-5)
    assert got < 0.99


def test_ssim_small_images_use_a_smaller_window_or_none():
    rng = np.random.default_rng(2)
    target = rng.random((5, 6, 1))
    prediction = np.clip(target + 0.05, 0, 1)
    expected = structural_similarity(target, prediction, data_range=1.0, channel_axis=-1, win_size=5)
    got = ssim(torch.from_numpy(prediction).float(), torch.from_numpy(target).float())
    assert got == pytest.approx(expected, abs=1e-5)
    tiny = torch.rand(2, 2, 1)
    assert ssim(tiny, tiny) is None
