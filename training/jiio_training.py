"""Training an MDEQ decoder with JIIO (Gurumurthy et al. 2021, section 3).

For each batch: JIIO finds the latent codes x* (warm-started from the codes the images had last epoch), the
equilibrium z* and the adjoint mu*. Then, with x* held fixed, one application of f at (z*, x*) is recorded and
the decoder's gradient is the implicit one, (df/dtheta)^T mu* + d cost/d theta: mu* already solves the adjoint
equation, so the backward needs no solve of its own. A Hutchinson estimate of ||J_z||_F^2 at z* is added to keep
the map contractive.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.mdeq import MDEQDecoder
from training.jiio import JIIOSettings, jiio


@dataclass
class DecoderTrainingSettings:
    batch_size: int = 32
    lr: float = 1e-3
    jacobian_weight: float = 0.1
    jiio: JIIOSettings = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.jiio is None:
            self.jiio = JIIOSettings(iterations=20, step_size=0.05, anderson_memory=5)


def reconstruction_cost(decoder: MDEQDecoder, targets: torch.Tensor):
    """Squared error of the decoded image, summed per sample (so step sizes do not depend on the batch)."""
    return lambda z: (decoder.decode(z) - targets).pow(2).flatten(1).sum(1)


def jacobian_penalty(f_out: torch.Tensor, z_in: torch.Tensor) -> torch.Tensor:
    """Hutchinson estimate of ||J||_F^2 per sample, averaged: E ||J^T eps||^2 with eps ~ N(0, I)."""
    eps = torch.randn_like(f_out)
    vjp = torch.autograd.grad(f_out, z_in, eps, create_graph=True)[0]
    return vjp.pow(2).flatten(1).sum(1).mean() / eps[0].numel()


def train_epoch(decoder: MDEQDecoder, images: torch.Tensor, latents: torch.Tensor,
                optimizer: torch.optim.Optimizer, settings: DecoderTrainingSettings,
                generator: torch.Generator | None = None) -> dict:
    """One pass over ``images`` (N, C, S, S) in [-1, 1]; ``latents`` (N, latent_dim) are updated in place."""
    order = torch.randperm(len(images), generator=generator)
    total_cost, total_penalty = 0.0, 0.0
    for start in range(0, len(images), settings.batch_size):
        index = order[start:start + settings.batch_size]
        targets = images[index]
        cost = reconstruction_cost(decoder, targets)

        def f(z, x):
            return decoder.f(z, decoder.injections(x))

        result = jiio(f, cost, decoder.zeros(len(index), dtype=images.dtype), latents[index], settings.jiio)
        latents[index] = result.x.detach()

        z_star = result.last_z.detach().requires_grad_()
        x_star = result.last_x.detach()
        f_out = decoder.f(z_star, decoder.injections(x_star))
        costs = cost(z_star)
        penalty = jacobian_penalty(f_out, z_star)
        optimizer.zero_grad(set_to_none=True)
        # (df/dtheta)^T mu* through f_out, plus the cost's own dependence on theta (the output head).
        surrogate = (f_out * result.last_mu.detach()).sum() + costs.sum() + settings.jacobian_weight * penalty
        surrogate.backward(inputs=[p for p in decoder.parameters() if p.requires_grad])
        optimizer.step()
        total_cost += float(result.cost.sum())
        total_penalty += float(penalty.detach()) * len(index)
    return {"cost_per_image": total_cost / len(images), "jacobian_penalty": total_penalty / len(images)}
