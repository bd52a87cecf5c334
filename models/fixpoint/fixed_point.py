"""Damped fixed-point iteration: ``z <- (1 - beta) z + beta f(z)``."""

from __future__ import annotations

from typing import Callable

import torch

from models.fixpoint.stats import BestIterate, SolverStats, per_sample_residuals


@torch.no_grad()
def fixed_point(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, *, tol: float = 1e-3,
                max_iter: int = 100, stop_mode: str = "rel", damping: float = 1.0) -> tuple[torch.Tensor, SolverStats]:
    z = z0
    best = BestIterate(z0)
    trace: list[float] = []
    steps = 0
    for steps in range(1, max_iter + 1):
        fz = f(z)
        absolute, relative = per_sample_residuals(z, fz)
        best.update(z, absolute, relative, stop_mode)
        trace.append(best.worst(stop_mode))
        if trace[-1] <= tol:
            break
        z = fz if damping == 1.0 else torch.lerp(z, fz, damping)
    converged = trace[-1] <= tol if trace else False
    return best.z, SolverStats("fixed-point", steps, best.abs, best.rel, converged, trace)
