"""Render a fitted network over its signal's grid and measure it on the training and held-out points."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.metrics import psnr, ssim, to_unit_range
from training.fitting.render import render_grid
from training.fitting.signal import Signal


@dataclass
class Evaluation:
    reconstruction: torch.Tensor | None  # (*grid_shape, C) in [0, 1], on the CPU (None for shapes)
    psnr: float | None  # on the training points (None for shapes: see ``iou``)
    ssim: float | None
    psnr_holdout: float | None = None  # on the held-out points, when there are any
    ssim_holdout: float | None = None
    solver: dict | None = None  # implicit models: how the evaluation solves went (re-solved from zero)
    iou: dict | None = None  # shapes: IoU of inside/outside on each held-out group


@torch.no_grad()
def _predict(model: nn.Module, points: torch.Tensor, device: torch.device, chunk_points: int) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model(piece.to(device)).cpu() for piece in points.split(chunk_points)])
    model.train(was_training)
    return out


def evaluate_shape(model: nn.Module, signal: Signal, device: torch.device, chunk_points: int) -> Evaluation:
    """IoU of the predicted inside (negative distance, or positive occupancy logit) on each held-out group."""
    from training.geometry import iou

    scores = {}
    for name, index in (signal.holdout_groups or {}).items():
        predicted = _predict(model, signal.points[index], device, chunk_points)[:, 0]
        truth = signal.values[index][:, 0]
        if signal.loss == "bce":
            scores[name] = iou((predicted > 0).numpy(), (truth > 0.5).numpy())
        else:
            scores[name] = iou((predicted < 0).numpy(), (truth < 0).numpy())
    return Evaluation(reconstruction=None, psnr=None, ssim=None, iou=scores)


def _subgrid_ssim(prediction: torch.Tensor, target: torch.Tensor, shape: tuple[int, ...] | None) -> float | None:
    if shape is None or len(shape) != 2:
        return None
    return ssim(prediction.reshape(*shape, -1), target.reshape(*shape, -1))


def summarize_solves(log: list) -> dict | None:
    """Aggregate the SolverStats of every chunk's solve into one record."""
    if not log:
        return None
    steps = [s.steps for s in log]
    return {"solves": len(log), "iterations_mean": sum(steps) / len(steps), "iterations_max": max(steps),
            "max_rel_residual": max(s.max_rel_residual for s in log),
            "max_abs_residual": max(s.max_abs_residual for s in log),
            "converged": all(s.converged for s in log)}


def evaluate(model: nn.Module, signal: Signal, device: torch.device, chunk_points: int) -> Evaluation:
    if signal.kind == "shape":
        logging = hasattr(model, "solve_log")
        if logging:
            model.solve_log = []
        result = evaluate_shape(model, signal, device, chunk_points)
        if logging:
            result.solver, model.solve_log = summarize_solves(model.solve_log), None
        return result
    logging = hasattr(model, "solve_log")
    if logging:
        model.solve_log = []
    rendered = render_grid(model, signal.grid_shape, signal.channels, device, chunk_points)
    reconstruction = to_unit_range(rendered)
    flat = reconstruction.reshape(-1, signal.channels)
    target = (signal.values + 1.0) * 0.5
    train_pred, train_target = flat[signal.train_index], target[signal.train_index]
    result = Evaluation(
        reconstruction=reconstruction,
        psnr=psnr(train_pred, train_target),
        ssim=_subgrid_ssim(train_pred, train_target, signal.train_grid_shape),
        solver=summarize_solves(model.solve_log) if logging else None,
    )
    if logging:
        model.solve_log = None
    if len(signal.holdout_index):
        held_pred, held_target = flat[signal.holdout_index], target[signal.holdout_index]
        result.psnr_holdout = psnr(held_pred, held_target)
        result.ssim_holdout = _subgrid_ssim(held_pred, held_target, signal.holdout_grid_shape)
    return result
