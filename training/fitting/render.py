"""Evaluate a fitted network on a whole grid, a chunk of rows at a time."""

from __future__ import annotations

import math

import torch
from torch import nn

from training.fitting.signal import grid_axes


@torch.no_grad()
def render_grid(model: nn.Module, grid_shape: tuple[int, ...], out_channels: int, device: torch.device,
                chunk_points: int) -> torch.Tensor:
    """Values of ``model`` at every point of a ``grid_shape`` grid, as a CPU float32 ``(*grid_shape, C)`` tensor.

    Coordinates are generated per chunk along the first axis, so neither the coordinate grid nor the
    activations of the whole signal ever exist at once on the device.
    """
    was_training = model.training
    model.eval()
    axes = grid_axes(grid_shape, device)
    first, rest = axes[0], axes[1:]
    points_per_row = math.prod(grid_shape[1:])
    rows_per_chunk = max(1, chunk_points // max(1, points_per_row))
    rest_mesh = torch.meshgrid(*rest, indexing="ij") if rest else ()
    rest_flat = torch.stack([m.reshape(-1) for m in rest_mesh], dim=-1) if rest else torch.zeros(1, 0, device=device)
    output = torch.empty(grid_shape[0], points_per_row, out_channels)
    for start in range(0, grid_shape[0], rows_per_chunk):
        rows = first[start:start + rows_per_chunk]
        coords = torch.cat(
            [rows.repeat_interleave(points_per_row)[:, None], rest_flat.repeat(len(rows), 1)], dim=-1
        )
        # A single row can still be too long (a very wide image): split it further.
        pieces = [model(piece) for piece in coords.split(chunk_points)]
        output[start:start + len(rows)] = torch.cat(pieces).reshape(len(rows), points_per_row, out_channels).cpu()
    model.train(was_training)
    return output.reshape(*grid_shape, out_channels)
