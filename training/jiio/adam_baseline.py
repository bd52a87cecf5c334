"""The baseline JIIO is measured against: Adam on the input, with a full DEQ solve and an implicit backward per step.

Each step solves z* = f(z*, x) from the last step's fixpoint (to ``tol``), evaluates the cost at z*, and
backpropagates through the exact implicit gradient (the adjoint solved to ``tol`` by vector-Jacobian products).
Evaluations of f and vector-Jacobian products through it (solver steps, the final application, one product per
adjoint iteration) are counted, as JIIO counts its own (one of each per iteration), so the two methods can be
compared at equal work.

Both solves go through the DEQ core: :func:`models.fixpoint.solve` for the forward equilibrium and
:func:`models.fixpoint.attach_backward` (exact mode) for the adjoint; the counts come from the statistics they
return. The defaults live in :class:`training.jiio.settings.AdamSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from models.fixpoint import attach_backward, solve
from training.adam import Adam
from training.jiio.settings import AdamSettings


@dataclass
class AdamInversionResult:
    x: torch.Tensor  # best input per sample
    cost: torch.Tensor  # (B,) its cost at the solved fixpoint
    steps: int
    evaluations: int
    cost_trace: list[float] = field(default_factory=list)
    evaluation_trace: list[int] = field(default_factory=list)  # cumulative f evaluations after each step


def adam_inversion(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   cost: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, x0: torch.Tensor,
                   settings: AdamSettings = AdamSettings(), *, max_evaluations: int | None = None,
                   target_cost: float | None = None) -> AdamInversionResult:
    """Stops after ``settings.steps``, or once ``max_evaluations`` are spent, or once the mean best cost reaches
    ``target_cost`` (to time the baseline "until it reaches JIIO's loss")."""
    solver = settings.solver_settings()
    x = x0.detach().clone().requires_grad_()
    optimizer = Adam([x], lr=settings.lr)
    z = z0.detach()
    best_x, best_cost = x0.detach().clone(), torch.full((len(z0),), float("inf"), dtype=z0.dtype, device=z0.device)
    evaluations, trace, evaluation_trace = 0, [], []
    for step in range(settings.steps):
        z, stats = solve(lambda state: f(state, x), z, solver)
        z_in = z.detach().requires_grad_()
        z_out = f(z_in, x)
        backward = attach_backward(z_out, z_in, solver)
        costs = cost(z_out)
        optimizer.zero_grad()
        costs.sum().backward(inputs=[x])
        evaluations += stats.steps + 1 + backward.steps
        with torch.no_grad():
            better = costs.detach() < best_cost
            best_cost = torch.where(better, costs.detach(), best_cost)
            best_x = torch.where(better.reshape(-1, *([1] * (x.dim() - 1))), x.detach(), best_x)
        trace.append(float(best_cost.mean()))
        evaluation_trace.append(evaluations)
        optimizer.step()
        z = z_out.detach()
        if max_evaluations is not None and evaluations >= max_evaluations:
            break
        if target_cost is not None and trace[-1] <= target_cost:
            break
    return AdamInversionResult(best_x, best_cost, len(trace), evaluations, trace, evaluation_trace)
