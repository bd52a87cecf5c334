"""Fixpoint machinery shared by every implicit model: solvers (one signature, one statistics record),
backward modes and shrink-only spectral normalisation."""

from models.fixpoint.anderson import anderson
from models.fixpoint.broyden import broyden
from models.fixpoint.fixed_point import fixed_point
from models.fixpoint.stats import SolverStats, per_sample_residuals

SOLVERS = {"fixed-point": fixed_point, "anderson": anderson, "broyden": broyden}


def get_solver(name: str):
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; choose one of: {', '.join(SOLVERS)}") from None


__all__ = ["SOLVERS", "SolverStats", "anderson", "broyden", "fixed_point", "get_solver", "per_sample_residuals"]
