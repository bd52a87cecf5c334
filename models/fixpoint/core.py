"""The one DEQ core: solve ``z = f(z)`` with a named solver, and attach an implicit backward to one evaluation.

Every equilibrium model goes through these two functions: the implicit coordinate networks (training, amortized
cache warm-up and evaluation), the MDEQ decoder, the Adam inversion baseline, and the final equilibrium solve of
JIIO's restorations. Statistics are returned to the caller — a :class:`SolverStats` from :func:`solve`, a
:class:`BackwardStats` from :func:`attach_backward` (filled in when the backward runs) — never stored on a module.

    z_star, stats = solve(lambda z: f(z, x), z0, settings)          # no graph
    f_out = f(z_star.detach().requires_grad_(), x)                   # one evaluation with the graph
    backward_stats = attach_backward(f_out, z_in, settings)          # gradients through f_out are implicit
"""

from __future__ import annotations

from typing import Callable

import torch

from models.fixpoint.anderson import anderson
from models.fixpoint.backward import BackwardStats, attach_implicit_backward
from models.fixpoint.broyden import broyden
from models.fixpoint.fixed_point import fixed_point
from models.fixpoint.settings import SolverSettings
from models.fixpoint.stats import SolverStats

# One solver for each of settings.SOLVER_NAMES, in that order.
SOLVERS: dict[str, Callable[..., tuple[torch.Tensor, SolverStats]]] = {
    "fixed-point": fixed_point, "anderson": anderson, "broyden": broyden}


def get_solver(name: str):
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; choose one of: {', '.join(SOLVERS)}") from None


def solve(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, settings: SolverSettings | None = None,
          **solver_options) -> tuple[torch.Tensor, SolverStats]:
    """The equilibrium of ``f`` from ``z0`` (a (B, D) tensor), without a graph: ``(z, stats)``.

    ``settings`` names the solver and its stopping rule; ``solver_options`` are that solver's own keywords
    (``memory``, ``damping``, ...): a keyword it does not take is an error, not silently ignored.
    """
    settings = settings or SolverSettings()
    return get_solver(settings.solver)(f, z0, tol=settings.tol, max_iter=settings.max_iter, **solver_options)


def attach_backward(f_out: torch.Tensor, z_in: torch.Tensor, settings: SolverSettings | None = None
                    ) -> BackwardStats:
    """Make gradients flowing into ``f_out = f(z_in)`` the implicit ones chosen by ``settings.backward``.

    Returns the backward's statistics record (steps and final residual of an exact backward), filled in when
    autograd runs the backward.
    """
    settings = settings or SolverSettings()
    return attach_implicit_backward(f_out, z_in, settings.backward, settings.neumann_steps,
                                    tol=settings.backward_tol, max_iter=settings.backward_max_iter)


def summarize_solves(solves: list[SolverStats]) -> dict | None:
    """One record for many solves (e.g. one per render chunk): iterations and the worst residuals."""
    if not solves:
        return None
    steps = [s.steps for s in solves]
    return {"solves": len(solves), "iterations_mean": sum(steps) / len(steps), "iterations_max": max(steps),
            "max_rel_residual": max(s.max_rel_residual for s in solves),
            "max_abs_residual": max(s.max_abs_residual for s in solves),
            "converged": all(s.converged for s in solves)}
