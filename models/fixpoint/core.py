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

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from inr_core.errors import check
from models.fixpoint.anderson import anderson
from models.fixpoint.backward import BACKWARD_MODES, BackwardStats, attach_implicit_backward
from models.fixpoint.broyden import broyden
from models.fixpoint.fixed_point import fixed_point
from models.fixpoint.stats import SolverStats

SOLVERS: dict[str, Callable[..., tuple[torch.Tensor, SolverStats]]] = {
    "fixed-point": fixed_point, "anderson": anderson, "broyden": broyden}

# Width-hidden tensors per sample a solver keeps alive (iterates, f values, history): for sizing batches.
ANDERSON_MEMORY = 5
BROYDEN_MEMORY = 30
STATE_TENSORS = {"fixed-point": 3, "anderson": 2 * ANDERSON_MEMORY + 3, "broyden": 2 * BROYDEN_MEMORY + 4}


@dataclass(frozen=True)
class SolverSettings:
    """How an equilibrium is found and differentiated: the forward solver and its stopping rule, the backward.

    ``tol`` is a relative residual ``||f(z) - z|| / ||f(z)||`` per sample. ``backward`` is ``neumann`` (the
    truncated series of order ``neumann_steps``: 0 is the Jacobian-free gradient, 1 the implicit-layer paper's
    default) or ``exact`` (the adjoint solved to ``backward_tol`` within ``backward_max_iter`` products).
    """

    solver: str = "fixed-point"
    tol: float = 1e-3
    max_iter: int = 100
    backward: str = "neumann"
    neumann_steps: int = 1
    backward_tol: float = 1e-6
    backward_max_iter: int = 200

    def validate(self) -> None:
        """Raise :class:`inr_core.errors.InvalidSetting` naming the first field no solve can use."""
        check(self.solver in SOLVERS, "solver", f"must be one of: {', '.join(SOLVERS)}; got {self.solver!r}")
        check(self.tol > 0, "tol", f"must be positive, got {self.tol}")
        check(self.max_iter >= 1, "max_iter", f"must be at least 1, got {self.max_iter}")
        check(self.backward in BACKWARD_MODES, "backward",
              f"must be one of: {', '.join(BACKWARD_MODES)}; got {self.backward!r}")
        check(self.neumann_steps >= 0, "neumann_steps", f"must be 0 or more, got {self.neumann_steps}")
        check(self.backward_tol > 0, "backward_tol", f"must be positive, got {self.backward_tol}")
        check(self.backward_max_iter >= 1, "backward_max_iter", f"must be at least 1, got {self.backward_max_iter}")

    def state_tensors(self) -> int:
        """Width-sized tensors per sample the forward solver keeps alive (for memory planning)."""
        return STATE_TENSORS[self.solver]

    def to_dict(self) -> dict:
        return asdict(self)


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
