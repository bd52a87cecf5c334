"""Joint inference and input optimisation (JIIO, Gurumurthy et al. 2021): one fixpoint over (z, mu, x).

Instead of an optimiser wrapped around a full DEQ solve, iterate

    z  <- f(z, x)                          the equilibrium state
    mu <- J_z^T mu + d cost / d z          its adjoint (the multiplier), same shape as z
    x  <- x - alpha J_x^T mu               the input (e.g. a latent code), a gradient step

with damping on z and mu. At the joint fixpoint z = f(z, x), mu solves the adjoint equation, and J_x^T mu = 0:
the gradient of cost(h(z*(x))) with respect to x vanishes. One iteration costs one evaluation of f and of the
cost, plus one vector-Jacobian product through f (for J_z^T mu and J_x^T mu together).

The cost is summed per sample (not averaged over the batch), so every sample's step size is independent of the
batch size, and each sample keeps the iterate with its lowest cost. The step size drops once, late in the run.
With ``anderson_memory`` > 0 the damped update is accelerated by Anderson mixing over the whole augmented state
(the same regularised least-squares step as the forward solver); its history restarts when alpha drops.

Relation to the DEQ core (:mod:`models.fixpoint.core`): this loop is not a :func:`~models.fixpoint.solve` call.
Its map changes when alpha drops, each iteration also needs the vector-Jacobian product, and each sample keeps
its best iterate by cost, not by residual. It shares the core's pieces instead — :func:`anderson_mix` for the
acceleration and :func:`per_sample_residuals` for every residual it reports — and a restoration's final
equilibrium solve goes through the core (:meth:`models.mdeq.MDEQDecoder.solve`). The defaults live in
:class:`training.jiio.settings.JIIOSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from models.fixpoint import anderson_mix, per_sample_residuals
from training.jiio.settings import JIIOSettings

__all__ = ["JIIOResult", "JIIOSettings", "jiio", "l2_ball"]


@dataclass
class JIIOResult:
    x: torch.Tensor  # best input per sample
    z: torch.Tensor  # its state
    cost: torch.Tensor  # (B,) its cost
    evaluations: int  # f evaluations plus vector-Jacobian products (2 per iteration), as the Adam baseline counts
    cost_trace: list[float] = field(default_factory=list)  # mean best cost per iteration
    state_residual: torch.Tensor | None = None  # (B,) ||f(z, x) - z|| / ||f(z, x)|| at the last iterate
    adjoint_residual: torch.Tensor | None = None  # (B,) of mu = J^T mu + dcost/dz at the last iterate
    input_gradient: torch.Tensor | None = None  # (B,) ||J_x^T mu|| at the last iterate: ~0 at a stationary x
    last_x: torch.Tensor | None = None  # the final iterate (the returned x is the lowest-cost one)
    last_z: torch.Tensor | None = None
    last_mu: torch.Tensor | None = None  # the adjoint at the final iterate: warm-starts the decoder's backward


def l2_ball(center: torch.Tensor, radius: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Projection onto the per-sample L2 ball of ``radius`` around ``center``."""
    def project(x: torch.Tensor) -> torch.Tensor:
        delta = x - center
        norms = torch.linalg.vector_norm(delta.reshape(len(x), -1), dim=1).clamp_min(1e-12)
        scale = torch.clamp(radius / norms, max=1.0).reshape(-1, *([1] * (x.dim() - 1)))
        return center + delta * scale
    return project


def jiio(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], cost: Callable[[torch.Tensor], torch.Tensor],
         z0: torch.Tensor, x0: torch.Tensor, settings: JIIOSettings | None = None,
         input_cost: Callable[[torch.Tensor], torch.Tensor] | None = None) -> JIIOResult:
    """Minimise ``cost(z*(x)) + input_cost(x)`` over x, where ``z* = f(z*, x)``. Both costs map a batch to (B,)
    per-sample costs; ``input_cost`` (e.g. a prior on latent codes) enters the x step directly."""
    settings = settings or JIIOSettings()
    batch, dim = z0.shape
    x_shape = x0.shape[1:]

    def split(u: torch.Tensor):
        return u[:, :dim], u[:, dim:2 * dim], u[:, 2 * dim:].reshape(batch, *x_shape)

    def join(z, mu, x):
        return torch.cat([z, mu, x.reshape(batch, -1)], dim=1)

    u = join(z0.detach(), torch.zeros_like(z0), x0.detach())
    best_x, best_z = x0.detach().clone(), z0.detach().clone()
    best_cost = torch.full((batch,), float("inf"), device=z0.device, dtype=z0.dtype)
    memory = settings.anderson_memory
    xs = torch.zeros(batch, max(1, memory), u.shape[1], dtype=u.dtype, device=u.device)
    fs = torch.zeros_like(xs)
    stored = 0
    # Per-iteration mean best costs stay on the device until the end: a float() per iteration would make the
    # host wait for the device every iteration (one sync per run instead).
    trace: list[torch.Tensor] = []
    late_start = int(settings.late_fraction * settings.iterations)
    for step in range(settings.iterations):
        if step == late_start:
            stored = 0  # the map changes with alpha: old history no longer describes it
        alpha = settings.step_size * (settings.late_step_factor if step >= late_start else 1.0)
        z, mu, x = split(u)
        with torch.enable_grad():
            z_in = z.detach().requires_grad_()
            x_in = x.detach().requires_grad_()
            f_out = f(z_in, x_in)
            costs = cost(z_in)
            # One backward pass for both: d cost/d z + J_z^T mu (the adjoint's target), and J_x^T mu.
            mu_target, jx_mu = torch.autograd.grad((costs.sum(), f_out), (z_in, x_in), (None, mu))
            if input_cost is not None:
                prior = input_cost(x_in)
                jx_mu = jx_mu + torch.autograd.grad(prior.sum(), x_in)[0]
                costs = costs + prior
        with torch.no_grad():
            costs = costs.detach()
            _, state_residual = per_sample_residuals(z, f_out.detach())
            better = (costs < best_cost) & (state_residual <= settings.best_residual)
            best_cost = torch.where(better, costs, best_cost)
            best_x = torch.where(better.reshape(-1, *([1] * len(x_shape))), x, best_x)
            best_z = torch.where(better[:, None], z, best_z)
            trace.append(torch.where(torch.isinf(best_cost), costs, best_cost).mean())
            _, adjoint_residual = per_sample_residuals(mu, mu_target)
            input_gradient = torch.linalg.vector_norm(jx_mu.reshape(batch, -1), dim=1)
            step = jx_mu / input_gradient.clamp_min(1e-12).reshape(-1, *([1] * len(x_shape))) \
                if settings.normalize_step else jx_mu
            x_next = x - alpha * step
            if settings.project is not None:
                x_next = settings.project(x_next)
            update = join(torch.lerp(z, f_out.detach(), settings.damping_z),
                          torch.lerp(mu, mu_target, settings.damping_mu), x_next)
            if memory < 1:
                u = update
                continue
            slot = stored % memory
            xs[:, slot], fs[:, slot] = u, update
            stored += 1
            n = min(stored, memory)
            u = update if n < 2 else anderson_mix(xs[:, :n], fs[:, :n], slot)
            if settings.project is not None:
                z, mu, x = split(u)
                u = join(z, mu, settings.project(x))
    # A sample whose iterates never came within best_residual of equilibrium keeps its last evaluated iterate.
    never = torch.isinf(best_cost)
    if bool(never.any()):
        best_cost = torch.where(never, costs, best_cost)
        best_x = torch.where(never.reshape(-1, *([1] * len(x_shape))), x, best_x)
        best_z = torch.where(never[:, None], z, best_z)
    last_z, last_mu, last_x = split(u)
    cost_trace = torch.stack(trace).tolist() if trace else []
    return JIIOResult(best_x, best_z, best_cost, 2 * settings.iterations, cost_trace, state_residual,
                      adjoint_residual, input_gradient, last_x, last_z, last_mu)
