"""The one statistics record every fixpoint solver returns, and the per-sample residuals it is built from."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

EPS = 1e-9


def per_sample_residuals(z: torch.Tensor, fz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute ``||f(z) - z||`` and relative ``||f(z) - z|| / ||f(z)||`` for each sample (row of a (B, D) tensor).

    Per sample, never batch-global: one unconverged pixel must not hide behind a million converged ones.
    """
    absolute = torch.linalg.vector_norm(fz - z, dim=-1)
    relative = absolute / (torch.linalg.vector_norm(fz, dim=-1) + EPS)
    return absolute, relative


@dataclass
class SolverStats:
    """What a solve did. Residuals are those of the returned (best) iterate, per sample."""

    solver: str
    steps: int  # evaluations of f
    abs_residual: torch.Tensor  # (B,)
    rel_residual: torch.Tensor  # (B,)
    converged: bool  # every sample within tolerance
    trace: list[float] = field(default_factory=list)  # worst per-sample residual (the stop criterion) per step

    @property
    def max_rel_residual(self) -> float:
        return float(self.rel_residual.max()) if self.rel_residual.numel() else 0.0

    @property
    def max_abs_residual(self) -> float:
        return float(self.abs_residual.max()) if self.abs_residual.numel() else 0.0

    def summary(self) -> dict:
        return {"solver": self.solver, "steps": self.steps, "converged": self.converged,
                "max_rel_residual": self.max_rel_residual, "max_abs_residual": self.max_abs_residual,
                "mean_rel_residual": float(self.rel_residual.mean()) if self.rel_residual.numel() else 0.0}


class BestIterate:
    """Keeps, per sample, the iterate with the lowest residual seen so far (not simply the last one)."""

    def __init__(self, z: torch.Tensor):
        self.z = z.clone()
        self.abs = torch.full(z.shape[:1], float("inf"), device=z.device, dtype=z.dtype)
        self.rel = torch.full_like(self.abs, float("inf"))

    def update(self, z: torch.Tensor, absolute: torch.Tensor, relative: torch.Tensor, stop_mode: str) -> None:
        better = (relative < self.rel) if stop_mode == "rel" else (absolute < self.abs)
        self.z = torch.where(better[:, None], z, self.z)
        self.abs = torch.where(better, absolute, self.abs)
        self.rel = torch.where(better, relative, self.rel)

    def worst(self, stop_mode: str) -> float:
        return float((self.rel if stop_mode == "rel" else self.abs).max())
