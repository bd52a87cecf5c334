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
from training.geometry import extract_mesh, near_surface_points, signed_distance, uniform_points

TARGETS = ("sdf", "occupancy")
TRUNCATION = 0.1  # signed distances are clamped to +-0.1 (normalised units) and scaled to [-1, 1]


def target_values(distances: np.ndarray, target: str) -> torch.Tensor:
    """What the network fits at points with these signed distances: 1 inside / 0 outside, or the truncated
    distance scaled to [-1, 1]."""
    if target == "occupancy":
        return torch.from_numpy((distances < 0).astype(np.float32))[:, None]
    return torch.from_numpy((np.clip(distances, -TRUNCATION, TRUNCATION) / TRUNCATION).astype(np.float32))[:, None]


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

    def sampled(points: np.ndarray) -> Samples:
        distances = signed_distance(points, vertices, faces)
        return Samples(torch.from_numpy(points).float(), target_values(distances, target))

    return ScatteredSamples(sampled(train), {name: sampled(points) for name, points in groups.items()},
                            loss="bce" if target == "occupancy" else "mse")


def extract_surface(model: nn.Module, resolution: int, device: torch.device, chunk: int, target: str):
    """Marching cubes on the network's field over a ``resolution``^3 grid: (vertices, faces) in the cube."""
    field = render_grid(model, (resolution,) * 3, 1, device, chunk)[..., 0].numpy().astype(np.float64)
    return extract_mesh(-field if target == "occupancy" else field)  # negative inside, for level 0
