"""Learning-rate schedules shared by every training loop (coordinate-network fits and JIIO decoder training).

A schedule is a pure function of the run's progress (a fraction in [0, 1]), so a run stopped and resumed at the
same step continues on exactly the same rates; nothing about it needs saving but the step.

- ``constant``: the base rate throughout (both papers' coordinate-network recipes).
- ``cosine``: from the base rate down to :data:`COSINE_FLOOR` times it along half a cosine (SGDR's annealing,
  Loshchilov & Hutter 2017, without restarts), which settles the late oscillation of a fit at a constant rate.

Importable without torch: the commands list the choices in ``--help`` before anything loads.
"""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine")
COSINE_FLOOR = 0.05  # the cosine schedule's last rate, as a fraction of the base rate


def rate_factor(schedule: str, progress: float) -> float:
    """The fraction of the base rate that ``schedule`` gives at ``progress`` (clamped to [0, 1]) through a run."""
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")
    fraction = min(max(progress, 0.0), 1.0)
    return COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * fraction))
