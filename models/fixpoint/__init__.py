"""Fixpoint machinery shared by every equilibrium model: the DEQ core (:mod:`models.fixpoint.core`: one
``solve`` returning its statistics, one ``attach_backward``), the solvers it dispatches to (one signature, one
statistics record), backward modes, and shrink-only spectral normalisation.

The names below are loaded on first use: the settings (:mod:`models.fixpoint.settings`) need no torch, so a
command can list its options before the solvers are imported.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "BACKWARD_MODES": "settings", "SOLVER_NAMES": "settings", "SolverSettings": "settings",
    "SOLVERS": "core", "attach_backward": "core", "get_solver": "core", "solve": "core", "summarize_solves": "core",
    "anderson": "anderson", "anderson_mix": "anderson", "BackwardStats": "backward", "broyden": "broyden",
    "fixed_point": "fixed_point", "SolverStats": "stats", "per_sample_residuals": "stats",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
