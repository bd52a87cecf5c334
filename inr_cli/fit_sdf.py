"""`inr fit sdf`: sample a mesh into signed distances or occupancies, fit, extract and measure the surface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inr_cli.files import atomic_write_with
from inr_cli.fitting import LoadedSignal, run_fits
from inr_cli.media.meshes import MESH_FORMATS, read_mesh, write_mesh, write_preview
from training.fitting.devices import render_chunk_size
from inr_core.errors import UserError
from training.fitting.fit import FitConfig, FitResult, solver_tensors
from training.geometry import (chamfer_and_normals, extract_mesh, near_surface_points, signed_distance,
                               uniform_points)
from training.fitting.render import render_grid
from training.fitting.signal import shape_signal

TARGETS = ("sdf", "occupancy")
TRUNCATION = 0.1  # signed distances are clamped to +-0.1 (normalised units) and scaled to [-1, 1]
PREVIEW = "preview.png"
PROGRESS = "training.png"
METRIC_SAMPLES = 100_000


def target_values(distances: np.ndarray, target: str) -> torch.Tensor:
    if target == "occupancy":
        return torch.from_numpy((distances < 0).astype(np.float32))[:, None]  # 1 inside
    return torch.from_numpy((np.clip(distances, -TRUNCATION, TRUNCATION) / TRUNCATION).astype(np.float32))[:, None]


def inside_field(values: torch.Tensor, target: str) -> np.ndarray:
    """A field that is negative inside, for marching cubes at level 0."""
    array = values.numpy().astype(np.float64)
    return -array if target == "occupancy" else array


def extract(model, info: dict, resolution: int, device: torch.device, chunk: int, target: str):
    field = render_grid(model, (resolution,) * 3, 1, device, chunk)[..., 0]
    return extract_mesh(inside_field(field, target))


def load_shape(source: str, *, target: str, samples: int, eval_points: int, resolution: int, mesh_format: str,
               seed: int) -> LoadedSignal:
    mesh = read_mesh(source)
    rng = np.random.default_rng(seed)
    half = samples // 2
    train = np.concatenate([uniform_points(samples - half, rng),
                            near_surface_points(mesh.vertices, mesh.faces, half, rng)])
    groups = {"uniform": uniform_points(eval_points, rng),
              "surface": near_surface_points(mesh.vertices, mesh.faces, eval_points, rng)}
    distance = lambda points: signed_distance(points, mesh.vertices, mesh.faces)  # noqa: E731
    signal = shape_signal(
        torch.from_numpy(train), target_values(distance(train), target),
        {name: (torch.from_numpy(points), target_values(distance(points), target)) for name, points in groups.items()},
        loss="bce" if target == "occupancy" else "mse")
    info = {**mesh.info(), "target": target, "truncation": TRUNCATION if target == "sdf" else None}
    measured: dict = {}
    reconstruction = f"reconstruction.{mesh_format}"

    def write_outputs(out_dir: Path, result: FitResult) -> dict[str, str]:
        config = result.config
        device = torch.device(config.device)
        chunk = render_chunk_size(config.hidden, config.layers, device, solver_tensors(config))
        vertices, faces = extract(result.model, info, resolution, device, chunk, target)
        write_mesh(out_dir / reconstruction, mesh.to_input(vertices), faces)
        write_preview(out_dir / PREVIEW, mesh, vertices, faces)
        metrics = chamfer_and_normals(vertices, faces, mesh.vertices, mesh.faces, METRIC_SAMPLES, rng)
        # Distances were measured in the normalised cube: report them relative to the bounding-box diagonal.
        diagonal = float(np.linalg.norm(np.ptp(mesh.vertices, axis=0)))
        for key in ("chamfer", "chamfer_pred_to_true", "chamfer_true_to_pred"):
            if metrics[key] is not None:
                metrics[key] /= diagonal
        measured.update(metrics)
        measured["mesh_faces"] = int(len(faces))
        write_progress(out_dir / PROGRESS, result)
        return {"reconstruction": reconstruction, "preview": PREVIEW, "training_plot": PROGRESS}

    def metrics(result: FitResult) -> dict:
        scores = result.final.iou or {}
        return {"iou_uniform": scores.get("uniform"), "iou_surface": scores.get("surface"), **measured,
                "metric_notes": f"chamfer: mean of both directions over {METRIC_SAMPLES} surface samples each, "
                                f"relative to the bounding-box diagonal; IoU on {eval_points} uniform and "
                                f"{eval_points} near-surface points; extraction at {resolution}^3"}

    return LoadedSignal(signal, info, write_outputs, metrics, psnr_plot=False, notes=mesh.notes)


def write_progress(path: Path, result: FitResult) -> None:
    from inr_cli.figures import plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    losses = [10 ** (-p / 10) * 4 for p in result.batch_psnr]  # batch_psnr came from the loss: undo it
    ax.semilogy(range(1, len(losses) + 1), losses, lw=0.8, label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    twin = ax.twinx()
    for group in ("uniform", "surface"):
        points = [(e["step"], e["iou"][group]) for e in result.evaluations if e.get("iou", {}).get(group) is not None]
        if points:
            twin.plot(*zip(*points), "o-", ms=3, label=f"IoU {group}")
    twin.set_ylabel("IoU")
    twin.set_ylim(0, 1)
    fig.legend(loc="lower right")
    fig.tight_layout()
    atomic_write_with(path, lambda buf: fig.savefig(buf, format="png"))
    plt.close(fig)


def run_fit_sdf(paths: list[str], config: FitConfig, *, target: str, samples: int, eval_points: int,
                resolution: int, mesh_format: str, out: Path | None, show_progress: bool, as_json: bool) -> int:
    if target not in TARGETS:
        raise UserError(f"unknown --target {target!r}; choose one of: {', '.join(TARGETS)}")
    if mesh_format not in MESH_FORMATS:
        raise UserError(f"unknown --format {mesh_format!r}; choose one of: {', '.join(MESH_FORMATS)}")
    for name, value, least in (("--samples", samples, 2), ("--eval-points", eval_points, 1),
                               ("--resolution", resolution, 8)):
        if value < least:
            raise UserError(f"{name} must be at least {least}, got {value}")

    def load(source: str) -> LoadedSignal:
        return load_shape(source, target=target, samples=samples, eval_points=eval_points, resolution=resolution,
                          mesh_format=mesh_format, seed=config.seed)

    return run_fits(paths, config, load, default=None, out=out, show_progress=show_progress, as_json=as_json,
                    extra_config={"target": target, "samples": samples, "eval_points": eval_points,
                                  "resolution": resolution, "format": mesh_format})
