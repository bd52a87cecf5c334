"""Limited-memory Broyden's method on ``g(z) = f(z) - z``, batched per sample.

The inverse Jacobian of g is kept as ``-I + sum_i u_i v_i^T`` (good Broyden update) over the last ``memory``
steps, with unit step length. Samples whose update denominator vanishes skip that update.
"""

from __future__ import annotations

from typing import Callable

import torch

from models.fixpoint.stats import BestIterate, ConvergenceMonitor, SolverStats, per_sample_residuals


def _apply(us: torch.Tensor, vs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(-I + sum u v^T) x, per sample; us, vs: (B, n, D), x: (B, D)."""
    return -x + torch.einsum("bnd,bn->bd", us, torch.einsum("bnd,bd->bn", vs, x))


@torch.no_grad()
def broyden(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, *, tol: float = 1e-3, max_iter: int = 100,
            stop_mode: str = "rel", memory: int = 30, eps: float = 1e-12) -> tuple[torch.Tensor, SolverStats]:
    batch, dim = z0.shape
    us = torch.zeros(batch, 0, dim, dtype=z0.dtype, device=z0.device)
    vs = torch.zeros_like(us)
    best = BestIterate(z0)
    monitor = ConvergenceMonitor(tol, z0.device)

    z = z0
    fz = f(z)
    gz = fz - z
    absolute, relative = per_sample_residuals(z, fz)
    best.update(z, absolute, relative, stop_mode)
    done = monitor.record(best.worst(stop_mode))
    while not done and monitor.iterations < max_iter:
        step = -_apply(us, vs, gz)
        z_new = z + step
        fz_new = f(z_new)
        g_new = fz_new - z_new
        absolute, relative = per_sample_residuals(z_new, fz_new)
        best.update(z_new, absolute, relative, stop_mode)
        done = monitor.record(best.worst(stop_mode))

        dg = g_new - gz
        b_dg = _apply(us, vs, dg)
        v = -step + torch.einsum("bnd,bn->bd", vs, torch.einsum("bnd,bd->bn", us, step))  # B^T dz
        denominator = (v * dg).sum(-1, keepdim=True)
        ok = denominator.abs() > eps
        u = torch.where(ok, (step - b_dg) / torch.where(ok, denominator, torch.ones_like(denominator)),
                        torch.zeros_like(step))
        us = torch.cat([us, u[:, None]], dim=1)[:, -memory:]
        vs = torch.cat([vs, v[:, None]], dim=1)[:, -memory:]
        z, gz = z_new, g_new
    trace = monitor.trace()
    return best.z, SolverStats("broyden", monitor.iterations, best.abs, best.rel, monitor.converged(trace), trace)
