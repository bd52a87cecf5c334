"""`inr compare image`: its options become one CompareConfig; inr_cli.compare runs the grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from models.fixpoint import SolverSettings
from training.fitting.config import FitConfig
from training.fitting.precision import PRECISIONS

COMPARE_EXAMPLES = """
[bold]Examples[/bold]

  inr compare image skimage:camera --resize 64 --steps 300
  inr compare image a.png b.png --models gabor-imfn,gabor-mfn --holdout grid
"""

compare_app = typer.Typer(help="Run the papers' model-size grid, implicit beside explicit.", no_args_is_help=True,
                          epilog=COMPARE_EXAMPLES)


@compare_app.command("image", epilog=COMPARE_EXAMPLES)
def compare_image(
    paths: Annotated[Optional[list[str]], typer.Argument(help="Images, folders of images, skimage:NAME, or - to "
                                                         "read paths from stdin. Default: skimage:camera.",
                                                         show_default=False)] = None,
    models: Annotated[str, typer.Option(help="Comma-separated models; implicit ones also run explicitly.")] =
        "fourier-imfn,gabor-imfn,isiren",
    sizes: Annotated[str, typer.Option(help="Comma-separated sizes nLcD (layers, width).")] = "1L256D,1L512D,4L256D",
    steps: Annotated[int, typer.Option(help="Steps per fit.")] = FitConfig.steps,
    holdout: Annotated[str, typer.Option(help="none, or grid (generalization).")] = "none",
    resize: Annotated[Optional[int], typer.Option(help="Downscale so the longest side is this many pixels.",
                                                  show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = FitConfig.device,
    precision: Annotated[Optional[str], typer.Option(help=f"Arithmetic: {', '.join(PRECISIONS)}. Default: tf32 on "
                                                     "CUDA, fp32 on the CPU.", show_default=False)] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="Compile training steps with "
                                                    "torch.compile. Default: for fits of at least 1e8 point-steps, "
                                                    "on CUDA, and on the CPU when a step has at least 65,536 "
                                                    "points.", show_default=False)]
        = None,
    seed: Annotated[int, typer.Option(help="Seed for every fit.")] = FitConfig.seed,
    solver: Annotated[str, typer.Option(help="Fixpoint solver for the implicit variants.")] = SolverSettings.solver,
    out: Annotated[Optional[Path], typer.Option(help="Folder for compare.md, compare.json, the page and its "
                                                "pictures. Default: runs/compare-TIME.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the comparison already in --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON summary instead of the table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line on stderr as each fit starts.")] = False,
):
    """Fit every model and size to every image; write a Markdown and a JSON table (PSNR mean ± std, ms/step,
    parameters, peak memory)."""
    from inr_cli.compare import CompareConfig, parse_models, parse_sizes, run_compare
    from inr_cli.media.images import DEFAULT_IMAGE
    from inr_cli.modalities.image import ImageOptions

    fit = FitConfig(steps=steps, device=device, seed=seed, precision=precision, compile=compile,
                    solver=SolverSettings(solver=solver))
    config = CompareConfig(fit=fit,
                           image=ImageOptions(holdout=holdout, resize=resize),
                           models=tuple(parse_models(models)), sizes=tuple(parse_sizes(sizes)))
    raise typer.Exit(run_compare(paths or [DEFAULT_IMAGE], config, out=out, as_json=as_json, quiet=quiet,
                                  overwrite=overwrite))
