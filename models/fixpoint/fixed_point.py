"""Damped fixed-point iteration: ``z <- (1 - beta) z + beta f(z)``."""

from __future__ import annotations

from typing import Callable

import torch

from models.fixpoint.stats import BestIterate, ConvergenceMonitor, SolverStats, per_sample_residuals


@torch.no_grad()
def fixed_point(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, *, tol: float = 1e-3,
                max_iter: int = 100, stop_mode: str = "rel", damping: float = 1.0) -> tuple[torch.Tensor, SolverStats]:
    z = z0
    best = BestIterate(z0)
    monitor = ConvergenceMonitor(tol, z0.device)
    for _ in range(max_iter):
        fz = f(z)
        absolute, relative = per_sample_residuals(z, fz)
        best.update(z, absolute, relative, stop_mode)
        if monitor.record(best.worst(stop_mode)):
            break
        z = fz if damping == 1.0 else torch.lerp(z, fz, damping)
    trace = monitor.trace()
    return best.z, SolverStats("fixed-point", monitor.iterations, best.abs, best.rel, monitor.converged(trace), trace)
