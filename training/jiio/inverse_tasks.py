"""Inverse problems on a trained decoder: reconstruct, inpaint (a random square hidden), denoise (Gaussian noise),
solved by JIIO or by the Adam baseline. Images are (N, C, S, S) in [-1, 1]; PSNR is reported on [0, 1]
(:func:`training.metrics.psnr` with ``value_range=SIGNED_RANGE``).

Both methods end the same way: the equilibrium of the latents they chose is solved to tolerance by the DEQ core
(:meth:`models.mdeq.MDEQDecoder.solve`) and decoded, and the cost reported is that equilibrium's (JIIO's own
iterates need not sit exactly at z = f(z, x)). That final solve is part of each method's time, measured by the
one stopwatch both share (:func:`timed`). What a method decodes replaces every pixel; :func:`composite` puts the
observed ones back, so an inpainted image keeps everything that was seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import torch

from models.mdeq import MDEQDecoder
from training.jiio.adam_baseline import adam_inversion
from training.jiio.decoder_training import reconstruction_cost
from training.jiio.inference import jiio
from training.jiio.settings import TASKS, AdamSettings, CorruptionSettings, JIIOSettings

SIGNED_RANGE = (-1.0, 1.0)  # the decoder's image range, for training.metrics.psnr

Result = TypeVar("Result")


@dataclass
class Corruption:
    observed: torch.Tensor  # what the method sees
    mask: torch.Tensor  # 1 where a pixel is observed (same shape as the images)


@dataclass
class Restoration:
    method: str
    images: torch.Tensor  # decoded at the equilibrium of the chosen latents
    latents: torch.Tensor
    cost: torch.Tensor  # (B,) observed-pixel squared error, summed per image, at that equilibrium
    iterations: int  # JIIO iterations or Adam steps
    evaluations: int  # f evaluations plus vector-Jacobian products, final solve included
    seconds: float  # wall time for the batch, final solve included
    state_residual: torch.Tensor  # (B,) relative residual of the final equilibrium solve
    cost_trace: list[float] = field(default_factory=list)  # mean best cost per iteration (at the iterates)
    diagnostics: dict = field(default_factory=dict)  # method-specific per-sample residuals


@dataclass
class _Search:
    """What a method found before the final solve common to both."""
    latents: torch.Tensor
    z_start: torch.Tensor  # where the final equilibrium solve starts
    iterations: int
    evaluations: int
    cost_trace: list[float]
    diagnostics: dict = field(default_factory=dict)


def corrupt(images: torch.Tensor, task: str, settings: CorruptionSettings = CorruptionSettings(),
            generator: torch.Generator | None = None, observed: torch.Tensor | None = None) -> Corruption:
    """``inpaint``: a random square per image (``settings.mask_side`` of the image side) is hidden (set to 0,
    mid-gray), or, given ``observed`` ((N or 1, 1, S, S), 1 where a pixel is seen: a user's masks), the pixels it
    marks 0; ``denoise``: Gaussian noise of ``settings.sigma`` (in [-1, 1] units) is added and clipped;
    ``reconstruct``: the images as they are. Random draws happen on the CPU, so a seed gives the same corruption
    on every device."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if observed is not None:
        if task != "inpaint":
            raise ValueError("masks of observed pixels are for inpainting")
        mask = observed.to(images.dtype).expand_as(images).clone()
        return Corruption(images * mask, mask)
    mask = torch.ones_like(images)
    if task == "inpaint":
        side = images.shape[-1]
        size = min(settings.mask_side(side), side)
        for i in range(len(images)):
            top, left = (int(v) for v in torch.randint(0, side - size + 1, (2,), generator=generator))
            mask[i, :, top:top + size, left:left + size] = 0
        return Corruption(images * mask, mask)
    if task == "denoise":
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device) * settings.sigma
        return Corruption((images + noise).clamp(-1, 1), mask)
    return Corruption(images.clone(), mask)


def composite(decoded: torch.Tensor, corruption: Corruption) -> torch.Tensor:
    """The restoration a user keeps: every observed pixel exactly as observed (mask 1), the decoding only where
    nothing was observed (mask 0). ``mask * observed + (1 - mask) * decoded`` as a selection, so observed values
    come through bit for bit whatever the decoding holds there."""
    observed = corruption.observed.to(decoded.device)
    return torch.where(corruption.mask.to(decoded.device).bool(), observed, decoded)


def timed(device: torch.device, run: Callable[[], Result]) -> tuple[Result, float]:
    """``(run(), seconds)``, with the device's queued work finished before the clock starts and before it stops."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - started


def _restore(method: str, decoder: MDEQDecoder, corruption: Corruption, latents: torch.Tensor | None,
             search: Callable[..., _Search]) -> Restoration:
    """Run ``search(f, cost, z0, x0)``, then solve and decode the equilibrium of the latents it chose; the
    whole is timed."""
    observed = corruption.observed
    cost = reconstruction_cost(decoder, observed, corruption.mask)
    z0 = decoder.zeros(len(observed), device=observed.device, dtype=observed.dtype)
    x0 = latents if latents is not None else torch.zeros(len(observed), decoder.preset.latent_dim,
                                                         dtype=observed.dtype, device=observed.device)

    def run():
        with decoder.fixed_weights():
            found = search(decoder.f_from_latent, cost, z0, x0)
            z, stats = decoder.solve(found.latents, found.z_start)
            with torch.no_grad():
                return found, decoder.decode(z), cost(z), stats

    (found, images, costs, stats), seconds = timed(observed.device, run)
    return Restoration(method, images, found.latents, costs, found.iterations, found.evaluations + stats.steps,
                       seconds, stats.rel_residual, found.cost_trace, found.diagnostics)


def restore(decoder: MDEQDecoder, corruption: Corruption, settings: JIIOSettings = JIIOSettings(),
            latents: torch.Tensor | None = None) -> Restoration:
    """JIIO: find latents whose decoded image matches the observed pixels (one augmented fixpoint)."""
    def search(f, cost, z0, x0):
        result = jiio(f, cost, z0, x0, settings)
        return _Search(result.x, result.z, settings.iterations, result.evaluations, result.cost_trace,
                       {"adjoint_residual": result.adjoint_residual, "input_gradient": result.input_gradient,
                        "iterate_state_residual": result.state_residual})

    return _restore("jiio", decoder, corruption, latents, search)


def restore_adam(decoder: MDEQDecoder, corruption: Corruption, settings: AdamSettings = AdamSettings(), *,
                 target_cost: float | None = None, max_evaluations: int | None = None,
                 latents: torch.Tensor | None = None) -> Restoration:
    """The baseline: Adam on the latents, a full equilibrium solve and exact implicit backward per step; stops
    after ``settings.steps``, once the mean cost reaches ``target_cost``, or once ``max_evaluations`` are spent."""
    def search(f, cost, z0, x0):
        result = adam_inversion(f, cost, z0, x0, settings, target_cost=target_cost, max_evaluations=max_evaluations)
        return _Search(result.x, z0, result.steps, result.evaluations, result.cost_trace)

    return _restore("adam", decoder, corruption, latents, search)
