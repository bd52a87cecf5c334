"""3D shapes (`inr fit sdf`): a mesh's signed distance or occupancy at scattered points in [-1, 1]^3; quality is
IoU on held-out points, and Chamfer distance and normal consistency of the surface extracted after the fit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inr_cli.files import atomic_write_with
from inr_cli.figures.captions import model_label, run_caption, source_name
from inr_cli.media.meshes import (DEFAULT_MAX_FACES, MESH_FORMATS, UP_CHOICES, LoadedMesh, read_mesh, resolve_up,
                                  to_input_coordinates, write_mesh, write_preview)
from inr_cli.modalities.base import (MAX_RESOLUTION, FittedNetwork, LoadedSignal, Modality, ModalityOptions, Outputs,
                                     SampleRequest, SampleTarget, register_modality)
from inr_cli.reports import number_text
from inr_core.errors import UserError, check
from training.fitting.devices import available_host_bytes, render_chunk_size
from training.fitting.fit import FitResult
from training.fitting.recipes import Recipe, frequency_for_cube, papers_learning_rate
from training.fitting.shapes import (EXTRACTION_BYTES_PER_VALUE, TARGETS, TRUNCATION, extract_surface, extraction_bytes,
                                     largest_extraction, shape_samples)
from training.fitting.signal import ScatteredSamples
from training.metrics import mse_from_psnr
from training.geometry import chamfer_and_normals

# The implicit-layer paper trains shapes on 50,000 random points per step.
POINTS_PER_STEP = 50000
METRIC_SAMPLES = 100_000
DEFAULT_SAMPLE_RESOLUTION = 128
PREVIEW = "preview.png"
PROGRESS = "training.png"
# Host memory the rendering network's chunked passes take beside the field (80 MiB for SIREN 3x256 on a CPU, in
# pieces of 8 MiB tensors; an implicit model's solver state about as much again).
NETWORK_ALLOWANCE = 256 << 20


@dataclass(frozen=True)
class ShapeOptions(ModalityOptions):
    target: str = "sdf"  # truncated signed distance (MSE), or occupancy (BCE)
    samples: int = 200_000  # training points: half uniform in the cube, half near the surface
    eval_points: int = 100_000  # held-out points for IoU, in each of the uniform and near-surface sets
    resolution: int = 128  # marching-cubes grid of the extracted mesh
    format: str = "ply"  # of the extracted mesh
    max_faces: int = DEFAULT_MAX_FACES  # most faces an input mesh may have, checked from its header where it has one
    up: str = "auto"  # the mesh's up axis for the preview: x, y, z, -x, -y, -z, or auto (detected)

    def validate(self) -> None:
        check(self.target in TARGETS, "target", f"must be one of: {', '.join(TARGETS)}; got {self.target!r}")
        check(self.format in MESH_FORMATS, "format", f"must be one of: {', '.join(MESH_FORMATS)}; got {self.format!r}")
        check(self.samples >= 2, "samples", f"must be at least 2, got {self.samples}")
        check(self.eval_points >= 1, "eval_points", f"must be at least 1, got {self.eval_points}")
        # As `inr sample` (MAX_RESOLUTION): a finer grid was refused only after training, out of memory.
        check(8 <= self.resolution <= MAX_RESOLUTION, "resolution",
              f"must be between 8 and {MAX_RESOLUTION}, got {self.resolution}")
        check(self.max_faces >= 1, "max_faces", f"must be at least 1, got {self.max_faces}")
        check(self.up in UP_CHOICES, "up", f"must be one of: {', '.join(UP_CHOICES)}; got {self.up!r}")


@dataclass
class LoadedShape(LoadedSignal):
    source: str
    mesh: LoadedMesh
    options: ShapeOptions
    rng: np.random.Generator  # continues after the training and held-out points: the Chamfer samples draw from it


class ShapeModality(Modality):
    summary_metrics = ("iou_surface", "iou_uniform", "chamfer", "normal_consistency")
    name = "shape"
    command = "sdf"
    options_type = ShapeOptions
    folder_suffixes = (".3mf", ".glb", ".gltf", ".obj", ".off", ".ply", ".stl")  # what trimesh reads
    psnr_plot = False  # a training plot of loss and IoU instead
    # The mesh extraction and the preview take minutes at a high --resolution: the trained network is saved before
    # them, and kept if they fail (inr_cli/fit_outputs.py).
    checkpoint_first = True
    sample_settings = ("resolution",)
    render_bytes_per_value = EXTRACTION_BYTES_PER_VALUE

    def load(self, source: str, options: ShapeOptions, seed: int) -> LoadedShape:
        # Before the mesh is read and any step trained: the extraction after the fit is the run's largest allocation.
        check_extraction_memory(options.resolution, source)
        mesh = read_mesh(source, max_faces=options.max_faces)
        rng = np.random.default_rng(seed)
        signal = shape_samples(mesh.vertices, mesh.faces, target=options.target, samples=options.samples,
                               eval_points=options.eval_points, rng=rng)
        values = signal.train.values
        if not bool((values > 0.5 if options.target == "occupancy" else values < 0).any()):
            # An open sheet encloses nothing: its target is "outside" everywhere, and no fit has a surface to find.
            raise UserError(f"{source}: the surface encloses no volume (none of its {len(values):,} training points "
                            "is inside it: an open sheet?); a shape fit needs a solid: close the mesh")
        up = resolve_up(options.up, mesh.vertices, mesh.faces, source)
        info = {**mesh.info(), "target": options.target, "truncation": TRUNCATION if options.target == "sdf" else None,
                "up": up.axis, "up_chosen_by": up.reason}
        return LoadedShape(signal, info, mesh.notes, source, mesh, options, rng)

    def recipe(self, model: str, signal: ScatteredSamples) -> Recipe:
        return Recipe(papers_learning_rate(model), frequency_for_cube(model), POINTS_PER_STEP)

    def metrics(self, loaded: LoadedShape, result: FitResult) -> dict:
        scores, options = result.final.iou, loaded.options
        return {"psnr": None, "ssim": None, "psnr_holdout": None, "ssim_holdout": None,
                "iou_uniform": scores.get("uniform"), "iou_surface": scores.get("surface"),
                "metric_notes": f"chamfer: mean of both directions over {METRIC_SAMPLES} surface samples each, "
                                f"relative to the bounding-box diagonal; IoU on {options.eval_points} uniform and "
                                f"{options.eval_points} near-surface points; extraction at {options.resolution}^3"}

    def render_outputs(self, loaded: LoadedShape, result: FitResult) -> tuple:
        """The surface the fitted network's field encloses: ``(vertices, faces)`` in the normalised cube."""
        config = result.config
        device = torch.device(config.device)
        chunk = render_chunk_size(config.hidden, config.layers, device, config.solver_tensors())
        return extract_surface(result.model, loaded.options.resolution, device, chunk, loaded.options.target)

    def write_outputs(self, loaded: LoadedShape, result: FitResult, out_dir: Path, rendered: object = None
                      ) -> Outputs:
        """The extracted mesh (in the input's coordinates), its preview and the training plot; the metrics of the
        extracted surface against the input's."""
        config, mesh, options = result.config, loaded.mesh, loaded.options
        vertices, faces = rendered if rendered is not None else self.render_outputs(loaded, result)
        reconstruction = f"reconstruction.{options.format}"
        write_mesh(out_dir / reconstruction, mesh.to_input(vertices), faces)
        measured = chamfer_and_normals(vertices, faces, mesh.vertices, mesh.faces, METRIC_SAMPLES, loaded.rng)
        # Distances were measured in the normalised cube: report them relative to the bounding-box diagonal.
        diagonal = float(np.linalg.norm(np.ptp(mesh.vertices, axis=0)))
        for key in ("chamfer", "chamfer_pred_to_true", "chamfer_true_to_pred"):
            if measured[key] is not None:
                measured[key] /= diagonal
        caption = run_caption(loaded.source, config, [*shape_quality({**self.metrics(loaded, result), **measured}),
                                                      f"{loaded.info['up']} up ({loaded.info['up_chosen_by']})"],
                              result.kept_step)
        write_preview(out_dir / PREVIEW, mesh, vertices, faces, loaded.info["up"], caption)
        write_progress(out_dir / PROGRESS, result, f"{source_name(loaded.source)}: "
                       f"{model_label(config.model, config.layers, config.hidden)}")
        return Outputs({"reconstruction": reconstruction, "preview": PREVIEW, "training_plot": PROGRESS},
                       {**measured, "mesh_faces": int(len(faces))},
                       [] if len(faces) else [empty_surface_note(options.target, options.resolution, reconstruction)])

    def summary_line(self, report: dict) -> str:
        return (f"  IoU uniform {number_text(report['iou_uniform'])}  near-surface {number_text(report['iou_surface'])}"
                f"  Chamfer {number_text(report.get('chamfer'))} (x bbox diagonal)  "
                f"normal consistency {number_text(report.get('normal_consistency'))}")

    def sample_target(self, info: dict, request: SampleRequest) -> SampleTarget:
        # The mesh goes back to the input's coordinates when written: a record without them fails here, before
        # the render (the caller names the missing key in one line).
        for key in ("scale", "center"):
            if key not in info:
                raise KeyError(key)
        resolution = request.resolution or DEFAULT_SAMPLE_RESOLUTION
        return SampleTarget((resolution,) * 3, f"sample-{resolution}.ply", tuple(f".{f}" for f in MESH_FORMATS))

    def write_sample(self, network: FittedNetwork, target: SampleTarget, path: Path) -> None:
        info = network.info
        vertices, faces = extract_surface(network.model, target.grid[0], network.device, network.chunk,
                                          info.get("target", "sdf"))
        write_mesh(path, to_input_coordinates(vertices, info["scale"], info["center"]), faces)


def check_extraction_memory(resolution: int, source: str) -> None:
    """Refuse, in one line naming a resolution that fits, a ``--resolution`` whose mesh extraction (after the
    fit) needs more memory than is available now: a 1024^3 grid trained and was then killed extracting, losing
    the run. Budgeted as `inr sample` budgets a render: bytes per grid value (the float32 field and the surface)
    and the network's working set, against MemAvailable."""
    needed = extraction_bytes(resolution) + NETWORK_ALLOWANCE
    available = available_host_bytes()
    if needed <= available:
        return
    fits = largest_extraction(available - NETWORK_ALLOWANCE)
    advice = f"--resolution {fits} fits" if fits else "free some memory"
    raise UserError(f"{source}: extracting the mesh at --resolution {resolution} ({resolution}^3 grid points) needs "
                    f"about {needed / 1e9:.1f} GB of memory, {available / 1e9:.1f} GB is available; {advice}")


def empty_surface_note(target: str, resolution: int, written: str) -> str:
    """Why a fit's extracted mesh is empty, and its surface metrics null: the field never changes sign on the grid
    marching cubes looks at (a fit of a few steps, or a surface thinner than the grid's spacing)."""
    field = "signed distance" if target == "sdf" else "occupancy logit"
    return (f"no surface extracted: the network's zero level set does not cross the {resolution}^3 grid (its {field} "
            f"has one sign at every grid point), so {written} is empty and chamfer and normal_consistency are null; "
            "fit longer or raise --resolution")


def shape_quality(metrics: dict) -> list[str]:
    """The caption's quality entries of a shape fit, from its report entries."""
    return [f"IoU near-surface {number_text(metrics['iou_surface'])}",
            f"IoU uniform {number_text(metrics['iou_uniform'])}",
            f"Chamfer {number_text(metrics.get('chamfer'))} of the bbox diagonal",
            f"normal consistency {number_text(metrics.get('normal_consistency'))}"]


def write_progress(path: Path, result: FitResult, title: str = "") -> None:
    """The training loss every step (log scale) and the IoU of each held-out group along the run, under ``title``,
    the legend in a row beneath the axes (never over the lines, never past the edge); its caption is stored as the
    PNG's ``Description``, as every picture's is. Tick labels are plain numbers (``0.02``), not matplotlib's
    mathtext (``2×10⁻²``), whose fonts a machine may lack: it would warn of each on stderr."""
    from inr_cli.figures import new_figure, plain_log_ticks
    from inr_cli.figures.captions import caption_text
    from inr_cli.figures.layout import CAPTION_KEY

    fig = new_figure(figsize=(7, 4), dpi=100)
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    losses = [mse_from_psnr(p) for p in result.batch_psnr]  # batch_psnr came from the loss: undo it
    ax.semilogy(range(1, len(losses) + 1), losses, lw=0.8, label="training loss")
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    twin = ax.twinx()
    for group in ("uniform", "surface"):
        points = [(e["step"], e["iou"][group]) for e in result.evaluations if e.get("iou", {}).get(group) is not None]
        if points:
            twin.plot(*zip(*points), "o-", ms=3, color=f"C{1 if group == 'uniform' else 2}", label=f"IoU {group}")
    twin.set_ylabel("IoU")
    twin.set_ylim(0, 1)
    lines = ax.get_lines() + twin.get_lines()
    fig.legend(lines, [line.get_label() for line in lines], loc="outside lower center", ncol=len(lines),
               frameon=False)
    if title:
        ax.set_title(title, fontsize=11)
    caption = caption_text(["loss and IoU during training", *([title] if title else [])])
    atomic_write_with(path, lambda buf: fig.savefig(buf, format="png", metadata={CAPTION_KEY: caption}))


SHAPE = register_modality(ShapeModality())
