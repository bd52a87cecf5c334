"""Where a fitted network is evaluated: on a regular grid over [-1, 1]^d, or at given points, a chunk at a time.

Chunking bounds the memory of a pass (a 4096^2 image never goes through the network at once). Each chunk is a
separate solve for an implicit network; the ``*_with_stats`` forms return those solves' statistics beside the
values (explicit networks have none), for the caller to summarise.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import torch
from torch import nn

from models.fixpoint import SolverStats


class GridAxes(list):
    """The axes of one grid on one device (a list of 1-D tensors), shared by whoever asks while any holds them."""


# An audio clip's grid has one axis as long as the clip: 4 bytes a sample (635 MB for an hour at 44.1 kHz), made
# by every batch-coordinate maker, progress measurement and render that asked for it (three at once at the end of
# a fit). They share one while any of them holds it; held by none, it is let go.
_axes_held: weakref.WeakValueDictionary[tuple, GridAxes] = weakref.WeakValueDictionary()


def grid_axes(shape: tuple[int, ...], device: torch.device | str = "cpu") -> GridAxes:
    """Per-axis coordinates of a regular grid: ``linspace(-1, 1, n)`` on each axis (a single sample sits at 0).
    The same tensors for the same grid and device while any caller holds them: read them, never write them."""
    device = torch.device(device)
    key = (tuple(shape), str(device))
    axes = _axes_held.get(key)
    if axes is None:
        axes = GridAxes(torch.linspace(-1.0, 1.0, n, device=device) if n > 1 else torch.zeros(1, device=device)
                        for n in shape)
        _axes_held[key] = axes
    return axes


def grid_coordinates(shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """All points of the grid, row-major, as an ``(prod(shape), len(shape))`` tensor."""
    mesh = torch.meshgrid(*grid_axes(shape, device), indexing="ij")
    return torch.stack(mesh, dim=-1).reshape(-1, len(shape))


# Who hears how far the grid renders in this context have come (a command's progress bar): called after each band
# with (rows done, rows in all) along the grid's first axis.
_band_listener: ContextVar[Callable[[int, int], None] | None] = ContextVar("render_progress", default=None)


@contextmanager
def reporting_render_progress(listener: Callable[[int, int], None] | None):
    """Within the block, every grid render calls ``listener(rows done, rows in all)`` (along the grid's first axis:
    an image's rows, a video's frames, a clip's samples, a shape's slices) after each band it has handed on."""
    token = _band_listener.set(listener)
    try:
        yield
    finally:
        _band_listener.reset(token)


@contextmanager
def eval_mode(model: nn.Module):
    """Run a block with the model in eval mode, then restore the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _forward(model: nn.Module, coords: torch.Tensor, solves: list[SolverStats]) -> torch.Tensor:
    values, stats = model.forward_with_stats(coords)
    if stats is not None:
        solves.append(stats)
    return values


def _grid_bands(model: nn.Module, grid_shape: tuple[int, ...], out_channels: int, device: torch.device,
                chunk_points: int, solves: list[SolverStats]):
    """``(start, values)`` for each band of rows along the grid's first axis, in order: ``values`` is the model's
    ``(rows, prod(grid_shape[1:]), C)`` output on ``device``. Coordinates are generated per band."""
    axes = grid_axes(grid_shape, device)
    first, rest = axes[0], axes[1:]
    points_per_row = math.prod(grid_shape[1:])
    rows_per_chunk = max(1, chunk_points // max(1, points_per_row))
    rest_mesh = torch.meshgrid(*rest, indexing="ij") if rest else ()
    rest_flat = torch.stack([m.reshape(-1) for m in rest_mesh], dim=-1) if rest else torch.zeros(1, 0, device=device)
    with eval_mode(model):
        for start in range(0, grid_shape[0], rows_per_chunk):
            rows = first[start:start + rows_per_chunk]
            coords = torch.cat(
                [rows.repeat_interleave(points_per_row)[:, None], rest_flat.repeat(len(rows), 1)], dim=-1
            )
            # A single row can still be too long (a very wide image): split it further.
            pieces = [_forward(model, piece, solves) for piece in coords.split(chunk_points)]
            yield start, torch.cat(pieces).reshape(len(rows), points_per_row, out_channels)
            listener = _band_listener.get()
            if listener is not None:
                listener(start + len(rows), grid_shape[0])


@torch.no_grad()
def render_grid_with_stats(model: nn.Module, grid_shape: tuple[int, ...], out_channels: int, device: torch.device,
                           chunk_points: int, on_device: bool = False) -> tuple[torch.Tensor, list[SolverStats]]:
    """Values of ``model`` at every point of a ``grid_shape`` grid, as a float32 ``(*grid_shape, C)`` tensor on the
    CPU (or left on ``device`` with ``on_device``: no copy, no synchronisation), and the statistics of every
    chunk's solve.

    Coordinates are generated per chunk along the first axis, so neither the coordinate grid nor the
    activations of the whole signal ever exist at once on the device.
    """
    solves: list[SolverStats] = []
    output = torch.empty(grid_shape[0], math.prod(grid_shape[1:]), out_channels,
                         device=device if on_device else "cpu")
    for start, values in _grid_bands(model, grid_shape, out_channels, device, chunk_points, solves):
        output[start:start + len(values)] = values if on_device else values.cpu()
    return output.reshape(*grid_shape, out_channels), solves


@torch.no_grad()
def render_grid_as(model: nn.Module, grid_shape: tuple[int, ...], out_channels: int, device: torch.device,
                   chunk_points: int, convert: Callable[[torch.Tensor], np.ndarray], dtype: np.dtype) -> np.ndarray:
    """:func:`render_grid`, each band of the float32 values converted by ``convert`` (on the CPU, element by element:
    a mapping to [0, 1], a rounding to a file's integers) as it comes, into one ``(*grid_shape, C)`` array of
    ``dtype``. The whole render never exists in float32 (4 bytes per value) beside what it becomes (1 or 2 for a
    PNG's levels), nor do the conversion's temporaries; the values are those of converting the whole render."""
    output = np.empty((grid_shape[0], math.prod(grid_shape[1:]), out_channels), dtype)
    for start, values in _grid_bands(model, grid_shape, out_channels, device, chunk_points, []):
        output[start:start + len(values)] = convert(values.cpu())
    return output.reshape(*grid_shape, out_channels)


def render_grid(model: nn.Module, grid_shape: tuple[int, ...], out_channels: int, device: torch.device,
                chunk_points: int) -> torch.Tensor:
    """:func:`render_grid_with_stats` without the statistics."""
    return render_grid_with_stats(model, grid_shape, out_channels, device, chunk_points)[0]


@torch.no_grad()
def predict_points_with_stats(model: nn.Module, points: torch.Tensor, device: torch.device, chunk_points: int
                              ) -> tuple[torch.Tensor, list[SolverStats]]:
    """Values of ``model`` at ``points`` (N, D), on the CPU, and the statistics of every chunk's solve."""
    solves: list[SolverStats] = []
    with eval_mode(model):
        values = torch.cat([_forward(model, piece.to(device), solves).cpu() for piece in points.split(chunk_points)])
    return values, solves
