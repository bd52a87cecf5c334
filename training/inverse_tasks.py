"""Inverse problems solved with JIIO on a trained decoder: reconstruct, inpaint (a random square hidden),
denoise (Gaussian noise). Images are (N, C, S, S) in [-1, 1]; PSNR is reported on [0, 1]."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from models.mdeq import MDEQDecoder
from training.jiio import JIIOResult, JIIOSettings, jiio

TASKS = ("reconstruct", "inpaint", "denoise")


@dataclass
class Corruption:
    observed: torch.Tensor  # what the method sees
    mask: torch.Tensor  # 1 where a pixel is observed (same shape as the images)


def corrupt(images: torch.Tensor, task: str, *, mask_size: int = 20, sigma: float = 0.4,
            generator: torch.Generator | None = None) -> Corruption:
    """``inpaint``: a random ``mask_size`` square per image is hidden (set to 0, mid-gray); ``denoise``: Gaussian
    noise of ``sigma`` (in [-1, 1] units) is added and clipped; ``reconstruct``: the images as they are."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    mask = torch.ones_like(images)
    if task == "inpaint":
        side = images.shape[-1]
        size = min(mask_size, side)
        for i in range(len(images)):
            top, left = (int(v) for v in torch.randint(0, side - size + 1, (2,), generator=generator))
            mask[i, :, top:top + size, left:left + size] = 0
        return Corruption(images * mask, mask)
    if task == "denoise":
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype) * sigma
        return Corruption((images + noise).clamp(-1, 1), mask)
    return Corruption(images.clone(), mask)


def restore(decoder: MDEQDecoder, corruption: Corruption, settings: JIIOSettings,
            latents: torch.Tensor | None = None) -> tuple[torch.Tensor, JIIOResult]:
    """Find latents whose decoded image matches the observed pixels; return the decoded images."""
    observed, mask = corruption.observed, corruption.mask
    batch = len(observed)

    def f(z, x):
        return decoder.f(z, decoder.injections(x))

    def cost(z):
        return ((decoder.decode(z) - observed) * mask).pow(2).flatten(1).sum(1)

    x0 = latents if latents is not None else torch.zeros(batch, decoder.preset.latent_dim, dtype=observed.dtype)
    result = jiio(f, cost, decoder.zeros(batch, dtype=observed.dtype), x0, settings)
    with torch.no_grad():
        restored = decoder.decode(result.z)
    return restored, result


def psnr01(prediction: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None) -> float:
    """PSNR on [0, 1] of images stored in [-1, 1], over all pixels or where ``region`` is 1."""
    error = (((prediction.clamp(-1, 1) + 1) / 2 - (target + 1) / 2) ** 2)
    mse = float(error.sum() / region.sum()) if region is not None else float(error.mean())
    return math.inf if mse == 0 else -10 * math.log10(mse)
