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


# Metrics over a whole signal are accumulated a piece at a time, so no float64 copy of the whole signal (8 bytes a
# value, several of them at once) ever exists: a 40 MP photo's evaluation used to hold more than its training did.
# About 2**20 values per piece (8 MiB as float64); the tests set these smaller to force many pieces.
METRIC_CHUNK_VALUES = 1 << 20
SSIM_TILE_VALUES = 1 << 20


def _unit(values: torch.Tensor, target_pm1: bool) -> torch.Tensor:
    """``values`` in [0, 1]: as they are, or mapped from [-1, 1] exactly as ``GridSignal.unit_values`` maps them."""
    return (values + 1.0) * 0.5 if target_pm1 else values


def squared_error_sum(prediction: torch.Tensor, target: torch.Tensor, index: torch.Tensor | None = None, *,
                      target_pm1: bool = False) -> tuple[float, int]:
    """The sum over every value of ``(clamp(prediction, 0, 1) - target)^2`` in float64, and how many values it
    covers, for ``(n, C)`` tensors (the rows ``index`` of them, when given); ``target_pm1``: the target is held
    in [-1, 1] (a signal's values) and is compared in [0, 1]. Summed a piece of float32 rows at a time, so only
    one piece is ever in float64; equal to the whole-tensor sum up to the order of float64 additions."""
    rows = len(prediction) if index is None else len(index)
    step = max(1, METRIC_CHUNK_VALUES // max(1, prediction.shape[-1]))
    total = 0.0
    for start in range(0, rows, step):
        part = slice(start, start + step) if index is None else index[start:start + step]
        error = (prediction[part].clamp(0.0, 1.0).double() - _unit(target[part], target_pm1).double()) ** 2
        total += error.sum().item()
    return total, rows * prediction.shape[-1]


def psnr_from_sums(total: float, count: int) -> float:
    """The PSNR of ``count`` values in [0, 1] whose squared errors sum to ``total`` (:func:`squared_error_sum`)."""
    return _decibels(total / count)


def psnr_in_chunks(prediction: torch.Tensor, target: torch.Tensor, index: torch.Tensor | None = None, *,
                   target_pm1: bool = False) -> float:
    """:func:`psnr` of ``(n, C)`` tensors in [0, 1] (rows ``index``; a ``target_pm1`` target in [-1, 1]) from
    :func:`squared_error_sum`: no whole-size copy of either."""
    return psnr_from_sums(*squared_error_sum(prediction, target, index, target_pm1=target_pm1))


def _ssim_window(height: int, width: int) -> int | None:
    win = min(7, height, width)
    win -= 1 - win % 2  # the window must be odd
    return win if win >= 3 else None


def ssim(prediction: torch.Tensor, target: torch.Tensor, *, target_pm1: bool = False) -> float | None:
    """SSIM (scikit-image defaults: uniform 7x7 window, smaller for tiny images) of two ``(H, W, C)`` images in [0, 1]
    (``target_pm1``: the target in [-1, 1], compared in [0, 1]).

    Computed in bands of rows, each with a halo as wide as the window's radius: scikit-image's SSIM is the mean
    of a map whose every value depends on the window around it, and whose border (the radius) is left out, so
    each band's inner rows give exactly the whole image's values there. Only one band is ever in float64.
    Returns None when the image is too small for even a 3x3 window.
    """
    height, width, channels = target.shape
    win = _ssim_window(height, width)
    if win is None:
        return None
    from skimage.metrics import structural_similarity  # loads scipy: only when SSIM is asked for, not at start-up

    pad = (win - 1) // 2
    rows_per_band = max(1, SSIM_TILE_VALUES // max(1, width * channels) - 2 * pad)
    sums = np.zeros(channels)
    for start in range(pad, height - pad, rows_per_band):
        stop = min(start + rows_per_band, height - pad)
        pred = prediction[start - pad:stop + pad].clamp(0.0, 1.0).cpu().numpy().astype(np.float64)
        ref = _unit(target[start - pad:stop + pad], target_pm1).cpu().numpy().astype(np.float64)
        for channel in range(channels):
            _, ssim_map = structural_similarity(ref[..., channel], pred[..., channel], data_range=1.0, win_size=win,
                                                full=True)
            sums[channel] += ssim_map[pad:len(ssim_map) - pad, pad:width - pad].sum()
    return float((sums / ((height - 2 * pad) * (width - 2 * pad))).mean())


def snr(prediction: torch.Tensor, target: torch.Tensor, *, prediction_unit: bool = False) -> float:
    """Signal-to-noise ratio in dB, ``10 log10(sum x^2 / sum (x - x_hat)^2)``, on the signal's own values
    (``prediction_unit``: the prediction is in [0, 1], mapped to [-1, 1] as ``x * 2 - 1`` a piece at a time);
    summed in float64 a piece of float32 values at a time (no float64 copy of a whole clip)."""
    prediction, target = prediction.reshape(-1), target.reshape(-1)
    noise = power = 0.0
    for start in range(0, len(target), METRIC_CHUNK_VALUES):
        part = slice(start, start + METRIC_CHUNK_VALUES)
        reference, predicted = target[part].double(), prediction[part]
        if prediction_unit:
            predicted = predicted * 2.0 - 1.0
        noise += torch.sum((predicted.double() - reference) ** 2).item()
        power += torch.sum(reference ** 2).item()
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
