"""What every coordinate network in the registry offers beyond ``forward``: its output with solver statistics.

Evaluation and rendering call :meth:`CoordinateNetwork.forward_with_stats` on every chunk and summarise the
statistics they get back; explicit networks have none to give (``None``). Statistics travel as return values,
never as state left on a module.
"""

from __future__ import annotations

import torch
from torch import nn

from models.fixpoint.stats import SolverStats


class CoordinateNetwork(nn.Module):
    def forward_with_stats(self, coords: torch.Tensor) -> tuple[torch.Tensor, SolverStats | None]:
        """The output at ``coords`` and how its fixpoint solve went (``None``: no solve, an explicit network)."""
        return self(coords), None
