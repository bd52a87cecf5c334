"""The `inr jiio-invert` run: get the decoder (:mod:`inr_cli.jiio.decoder_runs`), restore the test images with
JIIO and/or the Adam baseline (the JIIO-vs-Adam protocol is :mod:`training.jiio.comparison`), and write the
restored images, a grid (corrupted | restored | original) and report.json. The command's options and their
validation are in :mod:`inr_cli.commands.jiio_invert`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from inr_cli.figures import write_image_grid
from inr_cli.files import atomic_write_text, missing_ancestors, prepare_output_dir, remove_if_empty
from inr_cli.jiio.decoder_runs import obtain_decoder, test_images
from inr_cli.jiio.fid_model import fid_report, load_fid_model
from inr_cli.media.images import write_png
from inr_cli.progress import counter_progress
from inr_cli.reports import REPORT_VERSION, db_text, to_json, versions
from models.mdeq import MDEQDecoder
from training.fitting.devices import resolve_device
from training.jiio.comparison import BatchComparison, compare_on_batch, summarize_comparisons
from training.jiio.inverse_tasks import SIGNED_RANGE, Corruption, Restoration, corrupt, restore, restore_adam
from training.jiio.invert_config import InvertConfig
from training.jiio.settings import RestorationSettings
from training.metrics import psnr

REPORT = "report.json"
GRID = "grid.png"


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
