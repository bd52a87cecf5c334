"""Inverse problems on a trained decoder: reconstruct, inpaint (a random square hidden), denoise (Gaussian noise),
solved by JIIO or by the Adam baseline. Images are (N, C, S, S) in [-1, 1]; PSNR is reported on [0, 1].

Both methods end the same way: the equilibrium of the latents they chose is solved to tolerance and decoded, and
the cost reported is that equilibrium's (JIIO's own iterates need not sit exactly at z = f(z, x)). That final
solve is part of each method's time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from models.mdeq import MDEQDecoder
from training.jiio.adam_baseline import adam_inversion
from training.jiio.inference import JIIOSettings, jiio

TASKS = ("reconstruct", "inpaint", "denoise")
FINAL_SOLVE_TOL = 1e-4
FINAL_SOLVE_MAX_ITER = 60


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


def corrupt(images: torch.Tensor, task: str, *, mask_size: int = 20, sigma: float = 0.4,
            generator: torch.Generator | None = None) -> Corruption:
    """``inpaint``: a random ``mask_size`` square per image is hidden (set to 0, mid-gray); ``denoise``: Gaussian
    noise of ``sigma`` (in [-1, 1] units) is added and clipped; ``reconstruct``: the images as they are.
    Random draws happen on the CPU, so a seed gives the same corruption on every device."""
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
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device) * sigma
        return Corruption((images + noise).clamp(-1, 1), mask)
    return Corruption(images.clone(), mask)


def _problem(decoder: MDEQDecoder, corruption: Corruption):
    observed, mask = corruption.observed, corruption.mask

    def f(z, x):
        return decoder.f(z, decoder.injections(x))

    def cost(z):
        return ((decoder.decode(z) - observed) * mask).pow(2).flatten(1).sum(1)

    return f, cost


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _finish(decoder: MDEQDecoder, corruption: Corruption, x: torch.Tensor, z_start: torch.Tensor):
    """Solve the equilibrium of ``x`` to tolerance and decode it: (images, costs, residuals, evaluations)."""
    _, cost = _problem(decoder, corruption)
    z, stats = decoder.solve(x, z_start, tol=FINAL_SOLVE_TOL, max_iter=FINAL_SOLVE_MAX_ITER)
    with torch.no_grad():
        return decoder.decode(z), cost(z), stats.rel_residual, stats.steps


def _start(decoder: MDEQDecoder, corruption: Corruption, latents: torch.Tensor | None):
    observed = corruption.observed
    x0 = latents if latents is not None else torch.zeros(len(observed), decoder.preset.latent_dim,
                                                         dtype=observed.dtype, device=observed.device)
    return decoder.zeros(len(observed), device=observed.device, dtype=observed.dtype), x0


def restore(decoder: MDEQDecoder, corruption: Corruption, settings: JIIOSettings,
            latents: torch.Tensor | None = None) -> Restoration:
    """JIIO: find latents whose decoded image matches the observed pixels (one augmented fixpoint)."""
    f, cost = _problem(decoder, corruption)
    z0, x0 = _start(decoder, corruption, latents)
    device = corruption.observed.device
    _synchronize(device)
    started = time.perf_counter()
    result = jiio(f, cost, z0, x0, settings)
    images, costs, residuals, solve_steps = _finish(decoder, corruption, result.x, result.z)
    _synchronize(device)
    seconds = time.perf_counter() - started
    return Restoration("jiio", images, result.x, costs, settings.iterations, result.evaluations + solve_steps,
                       seconds, residuals, result.cost_trace,
                       {"adjoint_residual": result.adjoint_residual, "input_gradient": result.input_gradient,
                        "iterate_state_residual": result.state_residual})


def restore_adam(decoder: MDEQDecoder, corruption: Corruption, *, steps: int = 40, lr: float = 0.05,
                 target_cost: float | None = None, max_evaluations: int | None = None,
                 latents: torch.Tensor | None = None, tol: float = 1e-4, max_iter: int = 50) -> Restoration:
    """The baseline: Adam on the latents, a full equilibrium solve and exact implicit backward per step; stops
    after ``steps``, once the mean cost reaches ``target_cost``, or once ``max_evaluations`` are spent."""
    f, cost = _problem(decoder, corruption)
    z0, x0 = _start(decoder, corruption, latents)
    device = corruption.observed.device
    _synchronize(device)
    started = time.perf_counter()
    result = adam_inversion(f, cost, z0, x0, steps=steps, lr=lr, tol=tol, max_iter=max_iter,
                            target_cost=target_cost, max_evaluations=max_evaluations)
    images, costs, residuals, solve_steps = _finish(decoder, corruption, result.x, z0)
    _synchronize(device)
    seconds = time.perf_counter() - started
    return Restoration("adam", images, result.x, costs, result.steps, result.evaluations + solve_steps, seconds,
                       residuals, result.cost_trace)


def psnr01(prediction: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None) -> float:
    """PSNR on [0, 1] of images stored in [-1, 1], over all pixels or where ``region`` is 1."""
    error = (((prediction.clamp(-1, 1) + 1) / 2 - (target + 1) / 2) ** 2)
    if region is not None:
        region = region.expand_as(error)
        mse = float((error * region).sum() / region.sum())
    else:
        mse = float(error.mean())
    return math.inf if mse == 0 else -10 * math.log10(mse)
