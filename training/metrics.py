"""Quality metrics on the signal's natural range ([0, 1] for pixels)."""

from __future__ import annotations

import math

import numpy as np
import torch


def to_unit_range(values: torch.Tensor) -> torch.Tensor:
    """Map network outputs from the training range [-1, 1] to [0, 1], clamped."""
    return ((values + 1.0) * 0.5).clamp(0.0, 1.0)


def _decibels(mse: float) -> float:
    """``-10 log10(mse)`` for an MSE on a unit range; infinite for a perfect match."""
    return math.inf if mse <= 0.0 else -10.0 * math.log10(mse)


def psnr(prediction: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None, *,
         value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """PSNR in dB with a peak of 1 on the unit range: ``-10 log10(MSE)`` once both tensors, whose values lie in
    ``value_range`` ([0, 1] by default; (-1, 1) for data kept in the training range), are mapped onto [0, 1].

    The prediction is clamped to ``value_range`` first. With ``region`` (1 where a value counts, 0 elsewhere;
    broadcast to the tensors' shape) the MSE is taken over that region only. Infinite for a perfect match.
    """
    low, high = value_range
    error = ((prediction.clamp(low, high).double() - target.double()) / (high - low)) ** 2
    if region is None:
        return _decibels(error.mean().item())
    region = region.double().expand_as(error)
    return _decibels((error * region).sum().item() / region.sum().item())


def psnr_on_device(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`psnr` of values in [0, 1] as a 0-d tensor left where the inputs are: no host-device synchronisation,
    for measurements taken while training goes on. ``inf`` for a perfect match."""
    error = (prediction.clamp(0.0, 1.0).double() - target.double()) ** 2
    return -10.0 * torch.log10(error.mean())


def psnr_from_mse(mse_pm1: float) -> float:
    """PSNR on [0, 1] from an MSE measured on [-1, 1] data (a factor 4 apart); no clamping, for progress."""
    return _decibels(mse_pm1 / 4.0)


def mse_from_psnr(psnr_db: float) -> float:
    """The inverse of :func:`psnr_from_mse`: the MSE on [-1, 1] data a PSNR on [0, 1] came from."""
    return 4.0 * 10.0 ** (-psnr_db / 10.0)


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> float | None:
    """SSIM (scikit-image defaults: uniform 7x7 window, smaller for tiny images) of two ``(H, W, C)`` images in [0, 1].

    Returns None when the image is too small for even a 3x3 window.
    """
    height, width = target.shape[:2]
    win = min(7, height, width)
    win -= 1 - win % 2  # the window must be odd
    if win < 3:
        return None
    from skimage.metrics import structural_similarity  # loads scipy: only when SSIM is asked for, not at start-up

    pred = prediction.clamp(0.0, 1.0).cpu().numpy().astype(np.float64)
    ref = target.cpu().numpy().astype(np.float64)
    return float(structural_similarity(ref, pred, data_range=1.0, channel_axis=-1, win_size=win))


def snr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Signal-to-noise ratio in dB, ``10 log10(sum x^2 / sum (x - x_hat)^2)``, on the signal's own values."""
    noise = torch.sum((prediction.double() - target.double()) ** 2).item()
    power = torch.sum(target.double() ** 2).item()
    if noise == 0.0:
        return math.inf
    return -math.inf if power == 0.0 else 10.0 * math.log10(power / noise)


def psnr_per_frame(prediction: torch.Tensor, target: torch.Tensor) -> list[float]:
    """PSNR of each frame of ``(T, ...)`` tensors in [0, 1]; a video's PSNR is their mean (:func:`video_psnr`)."""
    return [psnr(p, t) for p, t in zip(prediction, target)]


def video_psnr(per_frame: list[float]) -> float:
    """A video's PSNR as the papers report it: the mean of its frames' PSNRs (:func:`psnr_per_frame`), infinite
    where a frame is matched exactly. Every PSNR a video's report gives is on this definition."""
    return math.fsum(per_frame) / len(per_frame) if all(map(math.isfinite, per_frame)) else math.inf
