"""Amortized fixpoints: a cache of the state z for every training coordinate.

The first time a coordinate is seen, its fixpoint is solved from zero. On every later step the model makes a
single evaluation ``z_new = f(x, z_cache)`` with the graph (the implicit backward attached) and the cache takes
``z_new``: one f evaluation per step, no solver. Valid because the same coordinates recur (full batch, or
minibatches addressed by index into the cache).

The cache serves one network (states ``(N, D)``) or a stack of G networks fitted together (states ``(G, N, D)``,
:mod:`training.fitting.grouped`): points are always the second-to-last axis.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from models.fixpoint import SolverStats, per_sample_residuals
from models.implicit import ImplicitINR
from training.fitting.render import eval_mode


# A gap between the two measures of one network (below) that a note reports: solves stopping within the solver's
# tolerance leave far less; a gap this size means they stop short of their fixpoints.
SOLVED_FROM_ZERO_GAP_DB = 0.1


def solved_from_zero_note(step: int, along_the_run_psnr: float | None, final_psnr: float | None) -> str | None:
    """The report's note when the written network measures differently solved from the cache and from zero.

    An amortized fit measures PSNR along the run (its history, and ``--keep best``'s choice) solving the training
    points from the cached states, as training does; the reconstruction, the report's ``psnr`` and ``inr sample``
    solve from zero, as any later use of the checkpoint must. Solved to tolerance the two agree; when the solves
    stop short (a small ``--max-iter``), the cached states are far better starts, and the two measures part."""
    if along_the_run_psnr is None or final_psnr is None:
        return None
    if not abs(along_the_run_psnr - final_psnr) > SOLVED_FROM_ZERO_GAP_DB:
        return None
    return (f"the network written (step {step}) measured {along_the_run_psnr:.2f} dB along the run, solving from the "
            f"training's cached fixpoints, and {final_psnr:.2f} dB solving from zero, as the reconstruction and "
            "`inr sample` do: its solves stop short of their fixpoints (raise --max-iter)")


class FixpointCache:
    def __init__(self, n_points: int, hidden: int, device: torch.device, signals: int | None = None):
        leading = () if signals is None else (signals,)
        self.z = torch.zeros(*leading, n_points, hidden, device=device)
        self.valid = torch.zeros(n_points, dtype=torch.bool, device=device)
        self.all_valid = False  # a Python flag, so a warmed-up cache never forces a device sync
        self.solves: list[SolverStats] = []  # the initial solves, one per batch of first-seen points

    @property
    def initial_solves(self) -> list[dict]:
        return [stats.summary() for stats in self.solves]

    def invalidate(self) -> None:
        """Forget every state: each point is solved from zero again when next seen."""
        self.valid.fill_(False)
        self.all_valid = False

    def state(self) -> dict:
        """Everything the cache holds, on the CPU, as plain data (for a saved fit)."""
        return {"z": self.z.detach().cpu().clone(), "valid": self.valid.cpu().clone(), "all_valid": self.all_valid,
                "solves": [asdict(stats) for stats in self.solves]}

    def restore(self, state: dict) -> None:
        self.z = state["z"].to(self.z.device)
        self.valid = state["valid"].to(self.valid.device)
        self.all_valid = state["all_valid"]
        self.solves = [SolverStats(**stats) for stats in state["solves"]]

    def ensure_solved(self, model: ImplicitINR, coords: torch.Tensor, index: torch.Tensor | None,
                      pieces: list[tuple[int, int]] | None = None) -> None:
        """Solve the states of this batch (rows ``index``; None = all) from zero if any of its points is seen for
        the first time, as :meth:`predict` does first. With ``pieces`` (``(start, stop)`` of the batch, for a step
        in pieces, before its first piece), piece by piece: each stops when its own points converge, the
        spectral-norm estimates advance once, as the one solve of the whole batch advances them, and the pieces'
        records join into one."""
        if self.all_valid:
            return
        valid = self.valid if index is None else self.valid[index]
        if bool(valid.all()):
            return
        rows = slice(None) if index is None else index
        if pieces is None:
            with torch.no_grad():
                z, stats = model.solve(model.prepare(coords), model.zeros(coords))
            self.z[..., rows, :] = z
            self.solves.append(stats)
        else:
            parts = []
            with torch.no_grad(), model.one_estimate_per_step():
                for start, stop in pieces:
                    x = coords[..., start:stop, :]  # (points, d), or (signals, points, d) for a group's samples
                    z, stats = model.solve(model.prepare(x), model.zeros(x))
                    self.z[..., slice(start, stop) if index is None else index[start:stop], :] = z
                    parts.append(stats)
            self.solves.append(SolverStats.joined(parts))
        self.valid[rows] = True
        self.all_valid = bool(self.valid.all())

    def predict_piece(self, model: ImplicitINR, coords: torch.Tensor, index: torch.Tensor | None, start: int,
                      stop: int) -> torch.Tensor:
        """:meth:`predict` for the points ``start:stop`` of a batch (``coords`` holds just those), whose states
        :meth:`ensure_solved` has solved: one f evaluation from their cached states, which it updates in place."""
        rows = slice(start, stop) if index is None else index[start:stop]
        prediction, z_new = model.amortized_step(coords, self.z[..., rows, :])
        self.z[..., rows, :] = z_new
        return prediction

    def predict(self, model: ImplicitINR, coords: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """The training prediction for ``coords`` (rows ``index`` of the cache; None = all), updating the cache."""
        self.ensure_solved(model, coords, index)
        z_in = self.z if index is None else self.z[..., index, :]
        prediction, z_new = model.amortized_step(coords, z_in)
        if index is None:
            self.z = z_new
        else:
            self.z[..., index, :] = z_new
        return prediction

    @torch.no_grad()
    def residuals(self, model: ImplicitINR, coords: torch.Tensor, chunk: int) -> dict:
        """How far the cached states are from fixpoints now: per-sample ``||f(z) - z|| / ||f(z)||``. In eval mode:
        a training-mode ``prepare`` would advance the spectral norm's power iteration, and the network saved after
        this measurement would no longer be the one the report's PSNR was measured on."""
        worst, total = 0.0, 0.0
        with eval_mode(model):
            for start in range(0, len(coords), chunk):
                x = coords[start:start + chunk]
                z = self.z[..., start:start + chunk, :]
                _, relative = per_sample_residuals(z, model.f(z, model.prepare(x)))
                worst = max(worst, float(relative.max()))
                total += float(relative.sum())
        return {"max_rel_residual": worst, "mean_rel_residual": total / max(1, len(coords))}
