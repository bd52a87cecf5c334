"""`inr fit image|audio|video|sdf`: each command declares its inputs and its modality's options and builds the
run's config from them; the options every fit shares are declared once here, and :func:`fit_command` adds them to
each command and builds them into one :class:`FitConfig`."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from inr_cli.fit_options import OutputOptions
from inr_core.errors import check
from models import model_names
from models.fixpoint.settings import BACKWARD_MODES, SOLVER_NAMES, SolverSettings
from training.fitting.config import DEFAULT_EVALUATIONS, EVALUATION_SPACING, FitConfig
from training.fitting.precision import PRECISIONS
from training.schedule import COSINE_FLOOR

fit_app = typer.Typer(help="Fit a network to a signal.", no_args_is_help=True,
                      epilog="[bold]Example[/bold]\n\n  inr fit image photo.png --model siren --steps 2000")


def _option(name: str, kind, default, *flags: str, **info):
    """A keyword parameter declaring one shared Typer option."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[kind, typer.Option(*flags, **info)])


def _log_folder(folder: Optional[Path]) -> Optional[Path]:
    """--tensorboard's folder, refused before any work where no log can be written: a file in its place or in
    the way of creating it, or a folder that cannot be written to."""
    if folder is not None:
        nearest = next(path for path in (folder, *folder.parents) if path.exists())
        check(nearest.is_dir(), "tensorboard", f"needs a folder, and {nearest} is a file")
        check(os.access(nearest, os.W_OK | os.X_OK), "tensorboard", f"cannot write in {nearest}")
    return folder


# The options every `inr fit` command takes, with FitConfig's own defaults. A command that declares one of these
# names itself (e.g. a --batch-size with its own help) keeps its declaration.
SHARED_OPTIONS = [
    _option("model", str, FitConfig.model, "--model", help=f"Network: {', '.join(model_names())}."),
    _option("hidden", int, FitConfig.hidden, "--hidden", help="Width of each hidden layer."),
    _option("layers", int, FitConfig.layers, "--layers", help="Hidden-to-hidden layers (SIREN: after the first "
            "sine layer; MFN and implicit: linear maps, with one more filter)."),
    _option("steps", int, FitConfig.steps, "--steps", help="Optimisation steps."),
    _option("lr", Optional[float], None, "--lr", help="Adam learning rate. Default: by model (for images, by size "
            "too: docs/recipes.md).", show_default=False),
    _option("lr_schedule", str, FitConfig.lr_schedule, "--lr-schedule", help="The rate over the run: constant (both "
            f"papers' recipe) or cosine (down to {COSINE_FLOOR:.0%} of --lr by the last step: a steady end, worth it "
            "with a higher --lr; at the default rate a fit still climbing ends lower)."),
    _option("frequency", Optional[float], None, "--frequency", help="Frequency scale: SIREN first-layer w0, or MFN "
            "input scale. Default: by signal size.", show_default=False),
    _option("batch_size", Optional[int], None, "--batch-size", help="Points per step. Default: all of them when "
            "they fit in memory.", show_default=False),
    _option("device", str, FitConfig.device, "--device", help="auto (CUDA when available), cpu or cuda."),
    _option("precision", Optional[str], None, "--precision", help=f"Arithmetic: {', '.join(PRECISIONS)}. Sine "
            "phases of the coordinates stay fp32 in every mode. Default: tf32 on CUDA, fp32 on the CPU.",
            show_default=False),
    _option("compile", Optional[bool], None, "--compile/--no-compile", help="Compile the training step with "
            "torch.compile (falls back to eager, with a note, where it fails). Default: for fits of at least 1e8 "
            "point-steps (400 steps at 512x512), where it earns its compile time back: on CUDA, and on the CPU "
            "when a step has at least 65,536 points.",
            show_default=False),
    _option("seed", int, FitConfig.seed, "--seed", help="Seed for initialisation and batch order."),
    _option("eval_every", Optional[int], None, "--eval-every", help="Steps between full evaluations for the plot. "
            f"Default: {DEFAULT_EVALUATIONS} over the run, or fewer where they would cost over a tenth of the "
            f"training (at most every {EVALUATION_SPACING}th step at full batch); 0: only at the end.",
            show_default=False),
    _option("keep", str, FitConfig.keep, "--keep", help="The network a fit keeps (reconstruction, checkpoint, "
            "report): best, that of its best evaluation along the run (PSNR on the training points; a late spike "
            "of the loss then costs nothing), or last, the last step's. Shapes, measured along the run by held-out "
            "IoU only, keep their last."),
    _option("out", Optional[Path], None, "--out", help="Output folder (one sub-folder per input when there are "
            "several). Default: runs/NAME-MODEL-TIME.", show_default=False),
    _option("explicit", bool, FitConfig.explicit, "--explicit", help="Implicit models: one pass of f from z = 0 (the "
            "explicit counterpart, same parameters)."),
    _option("solver", str, SolverSettings.solver, "--solver",
            help=f"Implicit models: fixpoint solver ({', '.join(SOLVER_NAMES)})."),
    _option("tol", float, SolverSettings.tol, "--tol", help="Implicit models: relative residual per point to stop at."),
    _option("max_iter", int, SolverSettings.max_iter, "--max-iter", help="Implicit models: most solver iterations."),
    _option("backward", str, SolverSettings.backward, "--backward",
            help=f"Implicit models: {' (truncated series) or '.join(BACKWARD_MODES)}."),
    _option("neumann_steps", int, SolverSettings.neumann_steps, "--neumann-steps",
            help="Implicit models: Neumann order T (0 = Jacobian-free)."),
    _option("no_amortize", bool, not FitConfig.amortize, "--no-amortize", help="Implicit models: solve to tolerance "
            "every step instead of reusing the last step's fixpoint."),
    _option("group_size", Optional[int], None, "--group-size", help="With several inputs: fit up to this many "
            "same-shaped inputs together as one stacked network, each with its own parameters and report (every "
            "model). Default: as many as fit in memory, at most 64 (on the CPU, at most 16 MiB per stacked "
            "activation); 1: one at a time.", show_default=False),
    _option("checkpoint_every", Optional[int], None, "--checkpoint-every", help="Save the fit's whole state "
            "(training-state.pt in its folder) every this many steps, for --resume; 0: never. Default: every 5 "
            "minutes of training, and always on Ctrl-C or SIGTERM. Inputs fitted together as a group save none: an "
            "interrupted group starts again.", show_default=False),
    _option("resume", bool, False, "--resume", help="Continue the run in --out: finished inputs are kept, the others "
            "go on from their saved state (bit-identical to an uninterrupted run on the CPU)."),
    _option("overwrite", bool, False, "--overwrite", help="Replace the run already in --out (its old outputs are "
            "set aside, deleted once the new run writes, and put back if it writes nothing)."),
    _option("tensorboard", Optional[Path], None, "--tensorboard", help="Log each fit to TensorBoard under this "
            "folder (one run per input, named like its run folder): loss, PSNR, learning rate, evaluations, solver "
            "statistics, the reconstruction. Needs pip install 'inr\\[tensorboard]'. Watch with: tensorboard "
            "--logdir DIR", show_default=False, callback=_log_folder),
    _option("as_json", bool, False, "--json", help="Print one JSON report per input on stdout, nothing else."),
    _option("quiet", bool, False, "--quiet", "-q", help="No progress bar."),
]


def _shared_config(values: dict) -> tuple[FitConfig, OutputOptions]:
    """The FitConfig and output options from the shared options (taken out of ``values``)."""
    solver = SolverSettings(solver=values.pop("solver"), tol=values.pop("tol"), max_iter=values.pop("max_iter"),
                            backward=values.pop("backward"), neumann_steps=values.pop("neumann_steps"))
    fit = FitConfig(model=values.pop("model"), hidden=values.pop("hidden"), layers=values.pop("layers"),
                    frequency=values.pop("frequency"), explicit=values.pop("explicit"), steps=values.pop("steps"),
                    lr=values.pop("lr"), lr_schedule=values.pop("lr_schedule"), batch_size=values.pop("batch_size"),
                    eval_every=values.pop("eval_every"),
                    keep=values.pop("keep"), seed=values.pop("seed"), device=values.pop("device"),
                    precision=values.pop("precision"), compile=values.pop("compile"),
                    amortize=not values.pop("no_amortize"), solver=solver)
    output = OutputOptions(out=values.pop("out"), as_json=values.pop("as_json"), show_progress=not values.pop("quiet"),
                           group_size=values.pop("group_size"), checkpoint_every=values.pop("checkpoint_every"),
                           resume=values.pop("resume"), overwrite=values.pop("overwrite"),
                           tensorboard=values.pop("tensorboard"))
    return fit, output


def _run_fit(modality: str, fit: FitConfig, options, paths: list[str], output: OutputOptions) -> int:
    """Run `inr fit MODALITY`: the fitting machinery (and torch with it) is imported only now, so building the
    commands and showing their help stays quick."""
    from inr_cli.fitting import run_fit_command
    from inr_cli.modalities.base import FitCommandConfig

    return run_fit_command(FitCommandConfig(modality, fit, options), paths, output)


def fit_command(command: str, epilog: str, batch_size_help: str | None = None):
    """Register a function as `inr fit COMMAND`. It declares the input paths and its modality's options, and
    receives the shared options already built: ``fit`` (a FitConfig) and ``output`` (where and how to report)."""

    def register(function: Callable[..., int]):
        own = [p for p in inspect.signature(function, eval_str=True).parameters.values()
               if p.name not in ("fit", "output")]
        shared = [_option("batch_size", Optional[int], None, "--batch-size", help=batch_size_help, show_default=False)
                  if p.name == "batch_size" and batch_size_help else p for p in SHARED_OPTIONS]

        def run(**values):
            fit, output = _shared_config(values)
            raise typer.Exit(function(**values, fit=fit, output=output))

        run.__name__, run.__doc__ = function.__name__, function.__doc__
        run.__signature__ = inspect.Signature([*own, *shared])
        # The list in `inr fit --help` would keep the docstring's line breaks; its one-line form reads as a sentence.
        fit_app.command(command, epilog=epilog, short_help=" ".join((function.__doc__ or "").split()))(run)
        return function

    return register


@fit_command("image", epilog="""
[bold]Examples[/bold]

  inr fit image                        [dim]# skimage:camera, SIREN 3x256[/dim]
  inr fit image photo.png --model gabor-mfn --hidden 512
  inr fit image skimage:astronaut --resize 128 --steps 500
  inr fit image photo.png --holdout grid   [dim]# generalization[/dim]
  inr fit image photo.png --model gabor-imfn --solver anderson
  inr fit image photo.png --precision bf16 --compile   [dim]# bf16 matmuls, compiled step[/dim]
  ls *.png | inr fit image - --json --out runs/batch
  ls photos/*.jpg | inr fit image - --crop 128 --out runs/set   [dim]# one shape: fitted together[/dim]
  inr fit image big.png --steps 20000 --out runs/big --resume   [dim]# continue after Ctrl-C or a crash[/dim]
  inr fit image photo.png --tensorboard tb   [dim]# then: tensorboard --logdir tb[/dim]
""")
def fit_image(
    paths: Annotated[Optional[list[str]], typer.Argument(
        help="Images (PNG/JPEG/TIFF/BMP/WebP), folders of them (each image in it, in name order), skimage:NAME "
             "for a scikit-image sample, or - to read paths from stdin. Default: skimage:camera.",
        show_default=False)] = None,
    holdout: Annotated[str, typer.Option(help="none, or grid: train on [::2, ::2], evaluate on [1::2, 1::2].")]
        = "none",
    alpha: Annotated[str, typer.Option(help="keep: fit a non-opaque alpha channel as one more channel; drop it.")]
        = "keep",
    resize: Annotated[Optional[int], typer.Option(help="Downscale so the longest side is this many pixels.",
                                                  show_default=False)] = None,
    crop: Annotated[Optional[str], typer.Option(
        help="WIDTHxHEIGHT or SIZE: scale down just enough to cover it, then keep the centre (--resize, if given, "
             "shrinks no further than still covers the crop). "
             "Brings a folder of mixed sizes to one shape, so its images fit together.", show_default=False)] = None,
    max_pixels: Annotated[int, typer.Option(
        help="Refuse images that decode to more pixels than this (width x height, read from the file's header "
             "before decoding). With --resize a large JPEG is decoded at a reduced scale and counts at that size; "
             "other formats count at full size.")] = 40_000_000,
    *, fit: FitConfig, output: OutputOptions,
) -> int:
    """Fit an image: write the reconstruction, a comparison, a PSNR plot, report.json and a checkpoint."""
    from inr_cli.modalities.image import ImageOptions

    options = ImageOptions(holdout=holdout, alpha=alpha, resize=resize, crop=crop, max_pixels=max_pixels)
    return _run_fit("image", fit, options, paths or [], output)


@fit_command("audio", epilog="""
[bold]Examples[/bold]

  inr fit audio clip.wav                          [dim]# SIREN 3x256[/dim]
  inr fit audio song.flac --model fourier-mfn --steps 3000
  inr fit audio speech.mp3 --model fourier-imfn --json
  inr fit audio concert.flac --seconds 90:100     [dim]# ten seconds of a long recording[/dim]
""")
def fit_audio(
    paths: Annotated[list[str], typer.Argument(
        help="Audio clips (WAV/FLAC/OGG/MP3, any rate, mono or multichannel), folders of them, or - to read paths "
             "from stdin.",
        show_default=False)],
    max_seconds: Annotated[float, typer.Option(
        help="Refuse clips longer than this many seconds (read from the file's header before decoding; with "
             "--seconds, the part kept).")] = 600.0,
    seconds: Annotated[str | None, typer.Option(
        help="START:STOP: fit only this part of each clip, in seconds (either end may be left out, e.g. 90:); "
             "WAV and FLAC are decoded only there.", show_default=False)] = None,
    *, fit: FitConfig, output: OutputOptions,
) -> int:
    """Fit an audio clip: write the reconstruction (same rate and channels), a waveform and spectrogram
    comparison, a PSNR plot, report.json (PSNR and SNR) and a checkpoint."""
    from inr_cli.modalities.audio import AudioOptions

    return _run_fit("audio", fit, AudioOptions(max_seconds=max_seconds, seconds=seconds), paths, output)


@fit_command("video", batch_size_help="Random points per step. Default: 65,536, fewer if memory is short.",
             epilog="""
[bold]Examples[/bold]

  inr fit video clip.mp4 --frames 0:60 --resize 128 --model gabor-mfn --layers 4
  inr fit video frames_folder/ --model fourier-imfn --hidden 512
  inr fit video anim.gif --steps 5000 --json
""")
def fit_video(
    paths: Annotated[list[str], typer.Argument(
        help="Videos (MP4/WebM/MKV/GIF) or folders of frames, or - to read paths from stdin.", show_default=False)],
    frames: Annotated[Optional[str], typer.Option(help="Frame range START:STOP (0-based, STOP excluded).",
                                                  show_default=False)] = None,
    resize: Annotated[Optional[int], typer.Option(help="Downscale frames so the longest side is this many pixels.",
                                                  show_default=False)] = None,
    max_pixels: Annotated[int, typer.Option(
        help="Refuse a clip whose kept frames hold more pixels than this (frames x width x height after --frames "
             "and --resize; checked from the file's header before decoding).")] = 100_000_000,
    *, fit: FitConfig, output: OutputOptions,
) -> int:
    """Fit a video: write the reconstruction (MP4 to watch, lossless MKV to measure) at the input fps, a strip of
    frames (original over reconstruction), per-frame PSNR (mean ± std) and its plot, report.json and a checkpoint."""
    from inr_cli.modalities.video import VideoOptions

    options = VideoOptions(frames=frames, resize=resize, max_pixels=max_pixels)
    return _run_fit("video", fit, options, paths, output)


@fit_command("sdf", batch_size_help="Random points per step. Default: 50,000, fewer if memory is short.",
             epilog="""
[bold]Examples[/bold]

  inr fit sdf bunny.ply                               [dim]# signed distance, SIREN 3x256[/dim]
  inr fit sdf dragon.obj --target occupancy --model gabor-imfn --layers 1
  inr fit sdf part.stl --resolution 256 --format glb
  inr fit sdf scan.obj --up z                         [dim]# the preview stands the mesh on z[/dim]
""")
def fit_sdf(
    paths: Annotated[list[str], typer.Argument(help="Meshes (OBJ/PLY/STL/OFF/GLB/glTF/3MF), folders "
                                                    "of them, or - to read paths from stdin.", show_default=False)],
    target: Annotated[str, typer.Option(help="sdf: truncated signed distance (MSE); occupancy: inside/outside "
                                        "(BCE), as the implicit-layer paper did.")] = "sdf",
    samples: Annotated[int, typer.Option(help="Training points: half uniform in the cube, half near the surface.")]
        = 200_000,
    eval_points: Annotated[int, typer.Option(help="Held-out points for IoU, in each of the uniform and near-surface "
                                             "sets.")] = 100_000,
    resolution: Annotated[int, typer.Option(help="Marching-cubes grid for the extracted mesh.")] = 128,
    mesh_format: Annotated[str, typer.Option("--format", help="Extracted mesh: ply, obj or glb.")] = "ply",
    max_faces: Annotated[int, typer.Option(help="Refuse meshes with more faces than this (read from the PLY/OFF/STL "
                                           "header before loading, where there is one).")] = 5_000_000,
    up: Annotated[str, typer.Option(help="The mesh's up axis, for the preview: x, y, z, -x, -y, -z, or auto (the "
                                    "axis it stands on a flat base along, else z for STL/3MF and y for other "
                                    "formats). E.g. --up z for a CAD part shown lying down.")] = "auto",
    *, fit: FitConfig, output: OutputOptions,
) -> int:
    """Fit a 3D shape: write the extracted mesh (in the input's coordinates), a shaded preview, a training plot,
    report.json (IoU, Chamfer distance, normal consistency) and a checkpoint."""
    from inr_cli.modalities.shape import ShapeOptions

    options = ShapeOptions(target=target, samples=samples, eval_points=eval_points, resolution=resolution,
                           format=mesh_format, max_faces=max_faces, up=up)
    return _run_fit("shape", fit, options, paths, output)
