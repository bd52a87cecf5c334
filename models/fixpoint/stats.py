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

    @classmethod
    def joined(cls, parts: list["SolverStats"]) -> "SolverStats":
        """One record for a batch solved piece by piece (each piece stopping when its own samples converge): the
        most evaluations any piece made, every sample's residuals (joined along the last axis, the samples': a
        group's are (signals, samples)), converged when every piece did, and per step the worst residual over the
        pieces (a piece that stopped keeps its last value)."""
        if len(parts) == 1:
            return parts[0]
        longest = max(len(part.trace) for part in parts)
        trace = [max(part.trace[min(i, len(part.trace) - 1)] for part in parts if part.trace) for i in range(longest)]
        return cls(parts[0].solver, max(part.steps for part in parts),
                   torch.cat([part.abs_residual for part in parts], dim=-1),
                   torch.cat([part.rel_residual for part in parts], dim=-1),
                   all(part.converged for part in parts), trace)

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

    def worst(self, stop_mode: str) -> torch.Tensor:
        """The stop criterion: the worst per-sample residual of the best iterates, a 0-d tensor on the device."""
        return (self.rel if stop_mode == "rel" else self.abs).max()


# How often a solver on a GPU reads its residual back to decide whether to stop. Each read is a host-device
# synchronisation that leaves the GPU idle until the host queues the next iteration; every 4th iteration keeps
# the queue full at the price of at most 3 extra iterations (which only improve the best iterate).
CUDA_CHECK_EVERY = 4
CPU_CHECK_EVERY = 1


class ConvergenceMonitor:
    """The per-iteration stop criterion, kept on the device and read back only every ``check_every`` iterations
    (every iteration on the CPU, where reading costs nothing). ``trace()`` reads the whole history at the end."""

    def __init__(self, tol: float, device: torch.device, check_every: int | None = None):
        self.tol = tol
        self.check_every = check_every or (CUDA_CHECK_EVERY if device.type == "cuda" else CPU_CHECK_EVERY)
        self._values: list[torch.Tensor] = []
        self._known_done = False

    def record(self, worst: torch.Tensor) -> bool:
        """Log this iteration's criterion; True once it is known to be within tolerance."""
        self._values.append(worst.detach().reshape(()))
        if len(self._values) % self.check_every == 0:
            self._known_done = float(worst) <= self.tol
        return self._known_done

    @property
    def iterations(self) -> int:
        return len(self._values)

    def trace(self) -> list[float]:
        return torch.stack(self._values).tolist() if self._values else []

    def converged(self, trace: list[float]) -> bool:
        return bool(trace) and trace[-1] <= self.tol
