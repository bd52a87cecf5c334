"""3D shapes as signals: scattered samples of a mesh's signed distance or occupancy, and the surface back out of a
fitted network.

Meshes are arrays (vertices (V, 3), faces (F, 3)) already moved into the normalised cube [-1, 1]^3.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from inr_core.errors import check
from training.fitting.render import render_grid
from training.fitting.signal import Samples, ScatteredSamples
from training.geometry import DistanceField, extract_mesh, near_surface_points, uniform_points

TARGETS = ("sdf", "occupancy")
TRUNCATION = 0.1  # signed distances are clamped to +-0.1 (normalised units) and scaled to [-1, 1]


def target_values(field: DistanceField, points: np.ndarray, target: str) -> torch.Tensor:
    """What the network fits at ``points``: 1 inside / 0 outside, or the signed distance truncated to
    +-TRUNCATION and scaled to [-1, 1]."""
    if target == "occupancy":
        return torch.from_numpy(field.inside(points).astype(np.float32))[:, None]
    return torch.from_numpy((field.truncated(points, TRUNCATION) / TRUNCATION).astype(np.float32))[:, None]


def shape_samples(vertices: np.ndarray, faces: np.ndarray, *, target: str, samples: int, eval_points: int,
                  rng: np.random.Generator) -> ScatteredSamples:
    """``samples`` training points, half uniform in the cube and half near the surface, and ``eval_points`` held
    out of each kind (groups ``uniform`` and ``surface``), with their targets; trained with MSE on signed
    distances or BCE on occupancies. The points are drawn from ``rng`` in that order."""
    check(target in TARGETS, "target", f"must be one of: {', '.join(TARGETS)}; got {target!r}")
    half = samples // 2
    train = np.concatenate([uniform_points(samples - half, rng), near_surface_points(vertices, faces, half, rng)])
    groups = {"uniform": uniform_points(eval_points, rng),
              "surface": near_surface_points(vertices, faces, eval_points, rng)}

    field = DistanceField(vertices, faces)

    def sampled(points: np.ndarray) -> Samples:
        return Samples(torch.from_numpy(points).float(), target_values(field, points, target))

    return ScatteredSamples(sampled(train), {name: sampled(points) for name, points in groups.items()},
                            loss="bce" if target == "occupancy" else "mse")


# Host bytes per grid value at the peak of extracting a surface: the float32 field (4), and 1 for the surface that
# marching cubes builds (about 180 bytes per vertex in its float32, float64 and index arrays: room for R^3 / 180
# vertices, 6 million at 1024^3, where a sphere filling the cube has 2.6 million). Measured on such a sphere at
# 512^3: 4.9 bytes per value above the process's start (12.9 while the field was copied to float64).
EXTRACTION_BYTES_PER_VALUE = 5


def extraction_bytes(resolution: int) -> int:
    """Host memory that :func:`extract_surface` needs on a ``resolution``^3 grid (the network's own working set
    aside)."""
    return resolution ** 3 * EXTRACTION_BYTES_PER_VALUE


def largest_extraction(available: int, smallest: int = 8) -> int | None:
    """The finest grid whose extraction fits in ``available`` bytes, rounded down to a multiple of 8 (None when not
    even ``smallest`` does)."""
    resolution = int(round((max(0, available) / EXTRACTION_BYTES_PER_VALUE) ** (1 / 3))) + 1
    while resolution >= smallest and extraction_bytes(resolution) > available:
        resolution -= 1
    resolution -= resolution % 8
    return resolution if resolution >= smallest else None


def extract_surface(model: nn.Module, resolution: int, device: torch.device, chunk: int, target: str):
    """Marching cubes on the network's field over a ``resolution``^3 grid: (vertices, faces) in the cube.

    The field stays the float32 it is rendered in: scikit-image's marching cubes works in float32 and converted
    the float64 copy this used to make straight back (a 1024^3 grid: 8.6 GB for nothing, and as much again for the
    negated occupancy), so the vertices are the same. Occupancy is negated in place."""
    field = render_grid(model, (resolution,) * 3, 1, device, chunk)[..., 0].numpy()
    if target == "occupancy":
        np.negative(field, out=field)  # negative inside, for level 0
    return extract_mesh(field)
