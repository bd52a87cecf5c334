"""Fixpoint machinery shared by every equilibrium model: the DEQ core (:mod:`models.fixpoint.core`: one
``solve`` returning its statistics, one ``attach_backward``), the solvers it dispatches to (one signature, one
statistics record), backward modes, and shrink-only spectral normalisation."""

from models.fixpoint.anderson import anderson, anderson_mix
from models.fixpoint.backward import BACKWARD_MODES, BackwardStats
from models.fixpoint.broyden import broyden
from models.fixpoint.core import (SOLVERS, SolverSettings, attach_backward, get_solver, solve,
                                  summarize_solves)
from models.fixpoint.fixed_point import fixed_point
from models.fixpoint.stats import SolverStats, per_sample_residuals

__all__ = ["BACKWARD_MODES", "BackwardStats", "SOLVERS", "SolverSettings", "SolverStats", "anderson",
           "anderson_mix", "attach_backward", "broyden", "fixed_point", "get_solver", "per_sample_residuals",
           "solve", "summarize_solves"]
