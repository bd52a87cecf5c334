"""`inr jiio-invert`: get a JIIO-trained MDEQ decoder (load one, or train one on a collection and save it every
epoch), then restore test images with JIIO and/or the Adam baseline, and write the restored images, a grid
(corrupted | restored | original), and report.json.

The decoder part lives in :mod:`inr_cli.decoder_runs`; this module is the restoration and its report.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from inr_cli.decoder_runs import DecoderSource, obtain_decoder, test_images
from inr_cli.fid_model import fid_report, load_fid_model
from inr_cli.figures import write_image_grid
from inr_cli.files import atomic_write_text, missing_ancestors, prepare_output_dir, remove_if_empty
from inr_cli.media.images import write_png
from inr_cli.progress import counter_progress
from inr_cli.reports import REPORT_VERSION, db_text, to_json, versions
from training.fitting.devices import resolve_device
from inr_core.errors import UserError
from training.jiio.inverse_tasks import TASKS, Corruption, Restoration, corrupt, psnr01, restore, restore_adam
from training.jiio.inference import JIIOSettings

METHODS = ("jiio", "adam", "both")
REPORT = "report.json"
GRID = "grid.png"
# The reference masks a 20 x 20 square of 64 x 64 images; other sizes keep that proportion.
MASK_FRACTION = 20 / 64


@dataclass
class InvertOptions:
    task: str = "reconstruct"
    method: str = "jiio"
    images: list[str] | None = None
    count: int = 16  # test images
    iters: int = 40
    step_size: float = 0.05  # JIIO's alpha (the cost is summed per image)
    anderson_memory: int = 0  # see README: Anderson on the augmented state decoded worse on our decoders
    adam_lr: float = 0.05
    adam_max_steps: int | None = None  # to equal loss; default 10 x iters
    mask_size: int | None = None
    sigma: float = 0.4
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    fid: bool = True
    fid_model: Path | None = None

    def validate(self) -> None:
        if self.task not in TASKS:
            raise UserError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.method not in METHODS:
            raise UserError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name, value in (("--count", self.count), ("--iters", self.iters), ("--batch-size", self.batch_size)):
            if value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        if self.mask_size is not None and self.mask_size < 1:
            raise UserError(f"--mask-size must be at least 1, got {self.mask_size}")
        if not self.sigma > 0:
            raise UserError(f"--sigma must be positive, got {self.sigma}")
        if not self.step_size > 0 or not self.adam_lr > 0:
            raise UserError("--step-size and --adam-lr must be positive")
        if self.anderson_memory < 0:
            raise UserError(f"--anderson-memory must be 0 or more, got {self.anderson_memory}")


def _summary(restorations: list[Restoration], psnrs: list[float], masked: list[float] | None, count: int) -> dict:
    seconds = sum(r.seconds for r in restorations)
    cost = torch.cat([r.cost for r in restorations])
    residual = torch.cat([r.state_residual for r in restorations])
    psnr = torch.tensor(psnrs, dtype=torch.float64)
    summary = {
        "psnr": float(psnr.mean()), "psnr_std": float(psnr.std()) if len(psnr) > 1 else 0.0,
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


def _per_image(restorations: list[Restoration], target: torch.Tensor, hole: torch.Tensor | None):
    images = torch.cat([r.images for r in restorations]).cpu()
    psnrs = [psnr01(images[i], target[i]) for i in range(len(target))]
    masked = None if hole is None else [psnr01(images[i], target[i], hole[i]) for i in range(len(target))]
    return images, psnrs, masked


def run_jiio_invert(source: DecoderSource, options: InvertOptions, *, out: Path | None, show_progress: bool,
                    as_json: bool) -> int:
    options.validate()
    device = resolve_device(options.device)
    if out is None:
        out = Path("runs") / f"jiio-{options.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    created = missing_ancestors(out)
    prepare_output_dir(out)
    try:
        return _run(source, options, out, device, show_progress, as_json)
    except BaseException:
        remove_if_empty(created)
        raise


def _run(source: DecoderSource, options: InvertOptions, out: Path, device: torch.device, show_progress: bool,
         as_json: bool) -> int:
    fid_model, fid_reason = (None, "not computed (--no-fid)")
    if options.fid and options.task == "reconstruct":
        fid_model, fid_reason = load_fid_model(options.fid_model)  # an explicit bad path fails before training
    run = obtain_decoder(source, out, device, show_progress=show_progress)
    decoder = run.decoder.requires_grad_(False)  # restoration differentiates through the latents only
    size = decoder.preset.image_size
    target, images_info, notes = test_images(options.images, run, options.count, decoder.out_channels)
    mask_size = options.mask_size or max(1, round(MASK_FRACTION * size))
    corruption = corrupt(target, options.task, mask_size=mask_size, sigma=options.sigma,
                         generator=torch.Generator().manual_seed(options.seed))
    hole = 1 - corruption.mask if options.task == "inpaint" else None

    settings = JIIOSettings(iterations=options.iters, step_size=options.step_size,
                            anderson_memory=options.anderson_memory)
    methods = ("jiio", "adam") if options.method == "both" else (options.method,)
    adam_max_steps = options.adam_max_steps or 10 * options.iters
    results: dict[str, list[Restoration]] = {m: [] for m in methods}
    to_equal_loss: list[tuple[Restoration, float]] = []
    batches = list(range(0, len(target), options.batch_size))
    with counter_progress(f"restore ({options.task})", len(target), show_progress) as update:
        for start in batches:
            part = Corruption(corruption.observed[start:start + options.batch_size].to(device),
                              corruption.mask[start:start + options.batch_size].to(device))
            if "jiio" in methods:
                results["jiio"].append(restore(decoder, part, settings))
            if "adam" in methods:
                results["adam"].append(restore_adam(decoder, part, steps=options.iters, lr=options.adam_lr))
            if options.method == "both":
                goal = float(results["jiio"][-1].cost.mean())
                to_equal_loss.append((restore_adam(decoder, part, steps=adam_max_steps, lr=options.adam_lr,
                                                   target_cost=goal), goal))
            if update:
                update(min(start + options.batch_size, len(target)))

    corrupted_psnr = [psnr01(corruption.observed[i], target[i]) for i in range(len(target))]
    corrupted_masked = None if hole is None else [psnr01(corruption.observed[i], target[i], hole[i])
                                                  for i in range(len(target))]
    summaries, restored_images, per_image = {}, {}, [
        {"index": i, "corrupted_psnr": corrupted_psnr[i],
         **({} if hole is None else {"corrupted_psnr_masked": corrupted_masked[i]})} for i in range(len(target))]
    files = {"grid": GRID, "report": REPORT}
    for method in methods:
        images, psnrs, masked = _per_image(results[method], target, hole)
        restored_images[method] = images
        summaries[method] = _summary(results[method], psnrs, masked, len(target))
        folder = out / "restored" / method
        folder.mkdir(parents=True, exist_ok=True)
        costs = torch.cat([r.cost for r in results[method]]).cpu()
        residuals = torch.cat([r.state_residual for r in results[method]]).cpu()
        # Images are restored batch by batch: each image's time is its share of its batch's.
        seconds = [r.seconds / len(r.cost) for r in results[method] for _ in range(len(r.cost))]
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
        "task": options.task,
        "output_dir": str(out),
        "device": str(device),
        "value_range": [0.0, 1.0],
        "decoder": run.describe(),
        "images": {**images_info, "count": len(target), "size": size, "channels": decoder.out_channels},
        "corruption": ({"mask_size": mask_size} if options.task == "inpaint" else
                       {"sigma": options.sigma} if options.task == "denoise" else {}),
        "corrupted_psnr": sum(corrupted_psnr) / len(target),
        "corrupted_psnr_masked": None if hole is None else sum(corrupted_masked) / len(target),
        "methods": summaries,
        "comparison": _comparison(results, to_equal_loss, adam_max_steps) if options.method == "both" else None,
        "fid": _reconstruction_fid(options, fid_model, fid_reason, target, restored_images, device),
        "per_image": per_image,
        "notes": notes + run.notes,
        "files": files,
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
                   "mask_size": mask_size, "adam_max_steps": adam_max_steps},
        "versions": versions(),
    }
    atomic_write_text(out / REPORT, to_json(report) + "\n")  # last: its presence means the run is complete
    if as_json:
        sys.stdout.write(to_json(report, indent=None) + "\n")
    else:
        print(summary_text(report))
    sys.stdout.flush()
    return 0


def _comparison(results: dict[str, list[Restoration]], to_equal_loss: list[tuple[Restoration, float]],
                adam_max_steps: int) -> dict:
    jiio_seconds = sum(r.seconds for r in results["jiio"])
    adam_seconds = sum(r.seconds for r in results["adam"])
    chase_seconds = sum(r.seconds for r, _ in to_equal_loss)
    reached = all(float(r.cost.mean()) <= goal * (1 + 1e-6) or r.cost_trace[-1] <= goal for r, goal in to_equal_loss)
    return {
        "equal_iterations": {
            "iterations": results["jiio"][0].iterations,
            "jiio_seconds": jiio_seconds, "adam_seconds": adam_seconds,
            "time_ratio": adam_seconds / jiio_seconds,
            "jiio_cost": float(torch.cat([r.cost for r in results["jiio"]]).mean()),
            "adam_cost": float(torch.cat([r.cost for r in results["adam"]]).mean()),
        },
        "equal_loss": {
            "target_cost": sum(goal for _, goal in to_equal_loss) / len(to_equal_loss),
            "adam_steps": [r.iterations for r, _ in to_equal_loss],
            "adam_seconds": chase_seconds, "jiio_seconds": jiio_seconds,
            "time_ratio": chase_seconds / jiio_seconds,
            "reached": reached,
            "note": None if reached else f"Adam did not reach JIIO's loss within {adam_max_steps} steps: "
                                         "the ratio is a lower bound",
        },
    }


def _reconstruction_fid(options: InvertOptions, model, reason: str | None, target: torch.Tensor,
                        restored: dict[str, torch.Tensor], device: torch.device) -> dict | None:
    """FID of decoded JIIO latents against the real test images (the paper's reconstruction FID)."""
    if options.task != "reconstruct":
        return None
    return {method: fid_report(model, reason, target, images, device, model_path=options.fid_model)
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

