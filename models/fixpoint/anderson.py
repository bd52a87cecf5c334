"""Anderson acceleration, batched per sample, with a regularised least-squares step.

Each new iterate mixes the last ``memory`` iterates with weights ``alpha`` that minimise the norm of the
combined residual under ``sum(alpha) = 1``. The small bordered system is regularised (``lam``) so it stays
solvable when residuals become collinear; samples whose system still fails fall back to a plain step.
"""

from __future__ import annotations

from typing import Callable

import torch

from models.fixpoint.stats import BestIterate, ConvergenceMonitor, SolverStats, per_sample_residuals


@torch.no_grad()
def anderson_mix(xs: torch.Tensor, fs: torch.Tensor, latest: int, lam: float = 1e-4,
                 damping: float = 1.0) -> torch.Tensor:
    """The next iterate from histories ``xs`` and ``fs = f(xs)``, both (B, n, D), per sample.

    Solves the bordered system [[0, 1^T], [1, G G^T + lam I]] [nu; alpha] = [1; 0] with G = fs - xs (lam scaled
    to G's mean squared norm); samples whose system fails take a plain step from history slot ``latest``.
    """
    batch, n, _ = xs.shape
    residuals = fs - xs
    gram = residuals @ residuals.transpose(1, 2)
    scale = gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-20)[:, None, None]
    system = torch.zeros(batch, n + 1, n + 1, dtype=xs.dtype, device=xs.device)
    system[:, 0, 1:] = system[:, 1:, 0] = 1.0
    system[:, 1:, 1:] = gram + lam * scale * torch.eye(n, dtype=xs.dtype, device=xs.device)
    rhs = torch.zeros(batch, n + 1, 1, dtype=xs.dtype, device=xs.device)
    rhs[:, 0] = 1.0
    solution, info = torch.linalg.solve_ex(system, rhs)
    alpha = solution[:, 1:, 0]
    failed = (info != 0) | ~torch.isfinite(alpha).all(-1)
    # Unconditionally (asking ``failed.any()`` would cost a host-device synchronisation every iteration).
    plain = torch.zeros_like(alpha)
    plain[:, latest] = 1.0
    alpha = torch.where(failed[:, None], plain, alpha)
    mixed = torch.einsum("bn,bnd->bd", alpha, fs)
    if damping != 1.0:
        mixed = torch.lerp(torch.einsum("bn,bnd->bd", alpha, xs), mixed, damping)
    return mixed


@torch.no_grad()
def anderson(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, *, tol: float = 1e-3, max_iter: int = 100,
             stop_mode: str = "rel", memory: int = 5, lam: float = 1e-4, damping: float = 1.0
             ) -> tuple[torch.Tensor, SolverStats]:
    batch, dim = z0.shape
    memory = max(1, memory)
    xs = torch.zeros(batch, memory, dim, dtype=z0.dtype, device=z0.device)
    fs = torch.zeros_like(xs)
    best = BestIterate(z0)
    monitor = ConvergenceMonitor(tol, z0.device)

    def record(slot: int, z: torch.Tensor) -> bool:
        fz = f(z)
        xs[:, slot], fs[:, slot] = z, fz
        absolute, relative = per_sample_residuals(z, fz)
        best.update(z, absolute, relative, stop_mode)
        return monitor.record(best.worst(stop_mode))

    done = record(0, z0)
    if not done and max_iter > 1:
        done = record(1 % memory, fs[:, 0].clone())
    k = 2
    while not done and k < max_iter:
        n = min(k, memory)
        latest = (k - 1) % memory if n == memory else n - 1
        done = record(k % memory, anderson_mix(xs[:, :n], fs[:, :n], latest, lam, damping))
        k += 1
    trace = monitor.trace()
    return best.z, SolverStats("anderson", monitor.iterations, best.abs, best.rel, monitor.converged(trace), trace)
