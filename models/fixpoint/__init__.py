"""Fixpoint machinery shared by every implicit model: solvers (one signature, one statistics record),
backward modes and shrink-only spectral normalisation."""

from models.fixpoint.anderson import anderson
from models.fixpoint.broyden import broyden
from models.fixpoint.fixed_point import fixed_point
from models.fixpoint.stats import SolverStats, per_sample_residuals

SOLVERS = {"fixed-point": fixed_point, "anderson": anderson, "broyden": broyden}


# Width-hidden tensors per sample a solver keeps alive (iterates, f values, history): for sizing batches.
ANDERSON_MEMORY = 5
BROYDEN_MEMORY = 30
STATE_TENSORS = {"fixed-point": 3, "anderson": 2 * ANDERSON_MEMORY + 3, "broyden": 2 * BROYDEN_MEMORY + 4}


def solver_state_tensors(name: str) -> int:
    return STATE_TENSORS[name]


def get_solver(name: str):
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; choose one of: {', '.join(SOLVERS)}") from None


__all__ = ["SOLVERS", "solver_state_tensors", "SolverStats", "anderson", "broyden", "fixed_point", "get_solver", "per_sample_residuals"]
