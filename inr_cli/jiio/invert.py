"""The `inr jiio-invert` run: get the decoder (:mod:`inr_cli.jiio.decoder_runs`), restore the test images with
JIIO and/or the Adam baseline (the JIIO-vs-Adam protocol is :mod:`training.jiio.comparison`), and write the
restored images, a labelled grid and report.json. The command's options and their validation are in
:mod:`inr_cli.commands.jiio_invert`.

An inpainted image is written composited (what was observed kept exactly, the decoding only in the hole), the
raw decoding beside it, and both are scored against the corrupted input's own PSNR: a decoder blurrier than the
observed pixels can no longer make the restoration worse than what the user started from.

Every PSNR (and the reconstruction FID) is of the images as written: rounded to the 8-bit levels their PNGs hold
(:func:`_written`, the rounding of :func:`inr_cli.media.images.write_png`), so recomputing it from
``restored/METHOD/NNNN.png`` gives the report's number. The corrupted input is scored as the grid shows it.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from inr_cli.cluster import Cluster
from inr_cli.figures import write_image_grid
from inr_cli.files import atomic_write_text, remove_if_empty
from inr_cli.interrupts import EXIT_CODES, CtrlC
from inr_cli.jiio.decoder_runs import (DECODER_FILE, check_inputs, check_masks, obtain_decoder, observed_mask,
                                       observed_masks, sizes_of_test_images, test_images)
from inr_cli.jiio.fid_model import distances_text, fid_reports, load_fid_model
from inr_cli.media.datasets import image_sizes
from inr_cli.media.images import quantize, write_png
from inr_cli.pages import PAGE, write_invert_page
from inr_cli.progress import counter_progress
from inr_cli.reports import REPORT_VERSION, db_text, to_json, versions
from inr_cli.run_folder import RunFolder, refuse_setting_aside_an_input
from inr_cli.sample import saved_epoch
from inr_core.errors import UserError, check
from models.mdeq import MDEQDecoder
from training.fitting.devices import resolve_device
from training.jiio.comparison import BatchComparison, compare_on_batch, summarize_comparisons
from training.jiio.inverse_tasks import Corruption, Restoration, composite, corrupt, restore, restore_adam
from training.jiio.decoder_training import Ranks
from training.jiio.fid import from_eight_bit_levels
from training.jiio.invert_config import InvertConfig
from training.jiio.settings import RestorationSettings
from training.metrics import psnr

REPORT = "report.json"
GRID = "grid.png"
# grid.png shows the first this-many test images: all 10,000 of Fashion-MNIST's made one 1502 x 182,511 px picture
# (274 MP, 3.6 GB to draw) that viewers refuse to open. Every image is still written in restored/ and reported.
GRID_IMAGES = 64
# What the method was given, as the first grid row and the summary name it.
GRID_INPUT_LABELS = {"inpaint": "corrupted", "denoise": "noisy", "reconstruct": "input"}
INPUT_NAMES = {"inpaint": "corrupted input", "denoise": "noisy input", "reconstruct": "input"}
# The pictures a run writes into OUT/KIND/METHOD/ (restored/jiio/0000.png...).
NUMBERED_PNG = "[0-9][0-9][0-9][0-9].png"
# Iterations (or Adam steps) of the untimed warm-up run of each method before the timed restorations.
WARM_UP_STEPS = 2


def run_jiio_invert(config: InvertConfig, *, out: Path | None, show_progress: bool, as_json: bool,
                    overwrite: bool = False) -> int:
    """Run a validated config; the report goes to OUT/report.json (and stdout). Returns the exit code.
    ``overwrite`` (not with --resume): the run already in ``out``, its restored PNGs included, is set aside until
    this one has finished, and put back if it fails, even after training (its new decoder.pt is removed then; one
    stopped by Ctrl-C keeps it for --resume) (:class:`inr_cli.run_folder.RunFolder`).

    Launched by torchrun, every rank trains its share of each batch of the decoder (its own GPU, or the CPU;
    :class:`training.jiio.decoder_training.Ranks`) and rank 0 alone writes the checkpoint, restores the test
    images and reports."""
    # Without either, it would continue a decoder.pt in a new, generated folder: one that cannot hold one yet.
    check(out is not None or config.decoder.checkpoint is not None or not config.decoder.resume, "--resume",
          "needs --out (the run folder whose decoder.pt it continues) or --decoder")
    cluster = Cluster.from_environment()
    failed = True
    try:
        device = resolve_device(cluster.device_for(config.device))
        out = cluster.from_leader(lambda: out or Path("runs") / f"jiio-{config.restoration.task}-"
                                                               f"{time.strftime('%Y%m%d-%H%M%S')}")
        trains_nothing = "a --decoder run trains nothing, so it has nothing to --resume"
        folder = RunFolder(out, own_files=(DECODER_FILE,), listed_pictures=NUMBERED_PNG,
                           cannot_resume=trains_nothing if config.decoder.data is None else None)

        def claim() -> None:
            """Rank 0 holds the folder (no other inr run may write there, nor this one into someone else's
            files); the other ranks only wait for its checkpoint, and learn only whether the claim failed."""
            refuse_setting_aside_an_input(config.decoder.checkpoint, out, overwrite,
                                          "the --decoder this run restores with")
            folder.claim(overwrite=overwrite, resume=config.decoder.resume)

        cluster.from_leader(claim)
        written: list[Path] = []
        try:
            code = _run(config, out, device, show_progress and cluster.is_leader, as_json, cluster, written)
        except BaseException as error:
            # A run that fails before its report leaves none of its pictures: an earlier run it replaced or
            # resumed is not mixed with them (--overwrite puts the replaced one back as it was).
            for path in written:
                path.unlink(missing_ok=True)
            if overwrite and cluster.is_leader and isinstance(error, Exception):
                # A replacement that failed (not one stopped by Ctrl-C, whose last epoch --resume continues) takes
                # the decoder it trained with it, so the run it replaced comes back whole; its set-aside decoder
                # stays in .inr-replaced otherwise, beside a folder that is neither run.
                (out / DECODER_FILE).unlink(missing_ok=True)
                error.__notes__ = [f"the run that was in {out} is back as it was"]  # not this run's kept decoder
            for pictures in {path.parent for path in written} - {out}:  # OUT/KIND/METHOD/
                remove_if_empty([pictures, pictures.parent])
            if isinstance(error, (CtrlC, KeyboardInterrupt)) and config.decoder.data is not None:
                if cluster.is_leader:  # (every rank gets the signal; rank 0 says what was kept)
                    print(_interrupted_training(out), file=sys.stderr)
                raise SystemExit(EXIT_CODES[signal.SIGINT]) from None
            raise
        finally:
            folder.release()  # (a no-op on the ranks that did not claim it)
        failed = False
        return code
    finally:
        cluster.close(wait=not failed)  # a rank that failed does not wait for the others


def _interrupted_training(out: Path) -> str:
    """The line for Ctrl-C in a run that trains: the decoder is saved after every epoch, and --resume goes on
    from the last one saved (or, when training had finished, restores with it)."""
    epoch = saved_epoch(out / DECODER_FILE)
    if not epoch:
        return "inr: interrupted in the first epoch (nothing saved yet)"
    return f"inr: interrupted ({out / DECODER_FILE} holds epoch {epoch}); resume with --resume"


def _restore_all(decoder: MDEQDecoder, corruption: Corruption, settings: RestorationSettings, device: torch.device,
                 show_progress: bool) -> tuple[dict[str, list[Restoration]], list[BatchComparison]]:
    """Every method's restorations, batch by batch, and with --method both the protocol's comparisons."""
    results: dict[str, list[Restoration]] = {m: [] for m in settings.methods()}
    comparisons: list[BatchComparison] = []
    total, size = len(corruption.observed), settings.batch_size
    _warm_up(decoder, Corruption(corruption.observed[:size].to(device), corruption.mask[:size].to(device)), settings)
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


def _warm_up(decoder: MDEQDecoder, first_batch: Corruption, settings: RestorationSettings) -> None:
    """A short untimed run of every method on the first batch: the first call in a process pays one-time costs
    (kernel selection, allocator growth, lazy initialisation) that the timed runs must not. Without it, JIIO, which
    runs first, carried them and --method both understated its speed-up (measured: 5x on a first call, 7.6x
    later, on the same batch)."""
    steps = min(WARM_UP_STEPS, settings.iters)
    for method in settings.methods():
        if method == "jiio":
            restore(decoder, first_batch, replace(settings.jiio(), iterations=steps))
        else:
            restore_adam(decoder, first_batch, replace(settings.adam(), steps=steps))


def _written(images: torch.Tensor) -> torch.Tensor:
    """Images (N, C, S, S) in [-1, 1] as the uint8 levels :func:`_write_pngs` stores (write_png's rounding)."""
    return torch.from_numpy(quantize((images.detach().cpu() + 1) / 2, 8))


def _psnr(images: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None) -> list[float]:
    """Per-image PSNR on [0, 1] of images kept in [-1, 1] as they are written (8-bit levels) against the float
    ``target`` (also in [-1, 1]), over the ``region`` where given."""
    levels, reference = _written(images).double() / 255, (target.detach().cpu().double() + 1) / 2
    return [psnr(levels[i], reference[i], None if region is None else region[i]) for i in range(len(target))]


def _clear_earlier_restorations(out: Path) -> None:
    """Remove what an earlier run in ``out`` restored (a --resume continues its decoder's training in the same
    folder), so none of its images, of another count or task, is left among the new ones: its report first (a
    half-cleared folder never looks finished), then the numbered PNGs of the folders it lists. (A run that
    --overwrite replaced had its PNGs set aside with its report when the folder was claimed.)"""
    report = out / REPORT
    try:
        files = json.loads(report.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return
    report.unlink(missing_ok=True)
    for name in files.values() if isinstance(files, dict) else []:
        folder = (out / str(name)).resolve()
        if folder.parent.parent != out.resolve() or not folder.is_dir():  # only OUT/KIND/METHOD/ folders
            continue
        for png in folder.glob(NUMBERED_PNG):
            png.unlink()
        remove_if_empty([folder, folder.parent])


def _write_pngs(out: Path, folder: str, images: torch.Tensor, written: list[Path]) -> str:
    """Images (N, C, S, S) in [-1, 1] as OUT/FOLDER/NNNN.png, 8-bit, each added to ``written``; returns
    ``folder`` for the report."""
    (out / folder).mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        written.append(out / folder / f"{i:04d}.png")
        write_png(written[-1], ((image + 1) / 2).permute(1, 2, 0), 8)
    return folder


def _scores(images: torch.Tensor, target: torch.Tensor, hole: torch.Tensor | None) -> dict[str, list[float]]:
    """Per-image PSNR of the images as written over the whole image, and with a ``hole`` over the hidden pixels
    alone (``psnr_masked``)."""
    return {"psnr": _psnr(images, target), **({} if hole is None else {"psnr_masked": _psnr(images, target, hole)})}


def _mean(values: list[float]) -> float:
    return float(torch.tensor(values, dtype=torch.float64).mean())


def _run(config: InvertConfig, out: Path, device: torch.device, show_progress: bool, as_json: bool,
         cluster: Cluster, written: list[Path]) -> int:
    """The run; every picture it writes is added to ``written``."""
    restoration = config.restoration
    # What the restoration reads is checked before the decoder trains: a wrong path should not cost the training.
    check_inputs([*(config.test_images or []), *(config.masks or [])])
    source = config.decoder
    if source.data is not None and not source.resume:  # the side trained at is known already
        _refuse_whole_image_mask(config, source.training.image_size)
        for path in config.masks or []:
            observed_mask(path, source.training.image_size)
    if config.masks and (config.test_images or source.data is not None):
        # The mask count, and each mask's size against its image's, from headers and array shapes: before training.
        count = restoration.count
        if config.test_images:
            sizes = sizes_of_test_images(config.test_images, count)
        else:  # the held-out end of --data
            sizes = image_sizes(source.data)
            sizes = sizes[-count:] if len(sizes) > count else None  # too few: training's split says so
        check_masks(config.masks, len(sizes) if sizes else count, sizes)
    fid_model, fid_reason = (None, "not computed (--no-fid)")
    if config.fid.enabled and restoration.task == "reconstruct":
        fid_model, fid_reason = load_fid_model(config.fid.model)  # an explicit bad path fails before training
    run = obtain_decoder(config.decoder, config.held_out(), out, device, show_progress=show_progress,
                         ranks=Ranks(cluster.rank, cluster.world_size))
    if not cluster.is_leader:
        return 0  # the decoder is trained and saved; restoring and reporting are rank 0's
    if source.resume and "seed" not in source.given:
        # A resumed run keeps its seed (training took it from the checkpoint): its test images are corrupted as
        # the first run's were, so the two runs' PSNRs compare like for like.
        config = replace(config, seed=run.config.seed)
    decoder = run.decoder.requires_grad_(False)  # restoration differentiates through the latents only
    size = decoder.preset.image_size
    _refuse_whole_image_mask(config, size)
    target, images_info, notes = test_images(config.test_images, run, restoration.count, decoder.out_channels)
    given = None
    if config.masks:
        held_out = images_info["held_out_from_training"]
        sizes = sizes_of_test_images(images_info["source"], len(target), images_info.get("first_index", 0)) \
            if held_out or config.test_images else None
        given = observed_masks(config.masks, size, len(target), sizes)
    if given is not None:
        notes.append("PSNRs compare with the given images: where a mask covers real damage rather than intact "
                     "pixels, the hidden-region PSNR measures the distance from that damage, not a quality")
    corruption = corrupt(target, restoration.task, config.corruption,
                         generator=torch.Generator().manual_seed(config.seed), observed=given)
    hole = 1 - corruption.mask if restoration.task == "inpaint" else None
    results, comparisons = _restore_all(decoder, corruption, restoration, device, show_progress)

    keep_observed = config.composites()
    corrupted = None if restoration.task == "reconstruct" else _scores(corruption.observed, target, hole)
    per_image = [{"index": i, **{f"corrupted_{k}": v[i] for k, v in (corrupted or {}).items()}}
                 for i in range(len(target))]
    _clear_earlier_restorations(out)
    summaries, restored_images, grid = {}, {}, [(GRID_INPUT_LABELS[restoration.task], corruption.observed)]
    # The decoder this run trained is in its folder, the first thing it produced.
    files = {**({"decoder": DECODER_FILE} if run.trained_here else {}), "grid": GRID, "report": REPORT, "page": PAGE}
    for method, restorations in results.items():
        decoded = torch.cat([r.images for r in restorations]).cpu()
        restored = composite(decoded, corruption) if keep_observed else decoded
        restored_images[method] = restored
        scores, kinds = _scores(restored, target, hole), {"restored": restored}
        if keep_observed:  # the raw decoding too: how well the decoder itself filled the hole, and the rest
            scores |= {f"decoded_{k}": v for k, v in _scores(decoded, target, hole).items()}
            kinds["decoded"] = decoded
            grid.append((f"{method}, decoded", decoded))
        grid.append((f"{method}, {'composited' if keep_observed else 'restored'}", restored))
        summaries[method] = _summary(restorations, scores, corrupted, len(target))
        costs = torch.cat([r.cost for r in restorations]).cpu()
        residuals = torch.cat([r.state_residual for r in restorations]).cpu()
        # Images are restored batch by batch: each image's time is its share of its batch's.
        seconds = [r.seconds / len(r.cost) for r in restorations for _ in range(len(r.cost))]
        for i in range(len(target)):
            per_image[i][method] = {**{k: v[i] for k, v in scores.items()}, "cost": float(costs[i]),
                                    "seconds": seconds[i], "final_state_residual": float(residuals[i])}
        for kind, images in kinds.items():
            files[f"{kind}_{method}"] = _write_pngs(out, f"{kind}/{method}/", images, written)
    grid.append(("original", target))
    # Under each image its PSNR against the original, measured as the report's per-image entries are (as written).
    rows = [label for label, _ in grid]
    written.append(out / GRID)
    shown = min(len(target), GRID_IMAGES)
    write_image_grid(out / GRID, [images[:shown] for _, images in grid], labels=rows,
                     psnrs=[None if torch.equal(images, target) else _psnr(images[:shown], target[:shown])
                            for _, images in grid],
                     caption=_grid_caption(restoration.task, len(target), size, rows, corrupted, summaries,
                                           keep_observed, shown))

    report = {
        "report_version": REPORT_VERSION,
        "command": "jiio-invert",
        "task": restoration.task,
        "output_dir": str(out),
        "device": str(device),
        "value_range": [0.0, 1.0],
        "decoder": run.describe(),
        "images": {**images_info, "count": len(target), "size": size, "channels": decoder.out_channels},
        "corruption": _corruption_report(config, size, corruption),
        "corrupted_psnr": None if corrupted is None else _mean(corrupted["psnr"]),
        "corrupted_psnr_masked": None if hole is None else _mean(corrupted["psnr_masked"]),
        "composited": keep_observed,
        "grid_rows": [label for label, _ in grid],
        "methods": summaries,
        "comparison": summarize_comparisons(comparisons, restoration.chase_steps()) if comparisons else None,
        "fid": _reconstruction_fid(config, fid_model, fid_reason, target, restored_images, device, show_progress),
        "per_image": per_image,
        "notes": notes + run.notes,
        "files": files,
        "config": config.report(size),
        "versions": versions(),
    }
    written.append(out / PAGE)
    write_invert_page(out, report)
    atomic_write_text(out / REPORT, to_json(report) + "\n")  # last: its presence means the run is complete
    if as_json:
        sys.stdout.write(to_json(report, indent=None) + "\n")
    else:
        print(summary_text(report))
    sys.stdout.flush()
    return 0


def _summary(restorations: list[Restoration], scores: dict[str, list[float]],
             corrupted: dict[str, list[float]] | None, count: int) -> dict:
    """A method's means over the images: PSNRs (of the restoration written and, when composited, of the raw
    decoding: ``decoded_psnr``...), their gain over the corrupted input's own, cost, time and residuals."""
    seconds = sum(r.seconds for r in restorations)
    cost = torch.cat([r.cost for r in restorations])
    residual = torch.cat([r.state_residual for r in restorations])
    psnrs = torch.tensor(scores["psnr"], dtype=torch.float64)
    means = {key: _mean(values) for key, values in scores.items()}
    summary = {
        # The population std (over the images restored, not an estimate for others), as every spread inr reports.
        "psnr": means["psnr"], "psnr_std": float(psnrs.std(correction=0)),
        "psnr_masked": means.get("psnr_masked"),
        **{key: value for key, value in means.items() if key.startswith("decoded_")},
        **({} if corrupted is None else
           {f"{key}_gain": means[key] - _mean(values) for key, values in corrupted.items()}),
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
                        restored: dict[str, torch.Tensor], device: torch.device, show_progress: bool) -> dict | None:
    """FID of decoded JIIO latents against the real test images (the paper's reconstruction FID), on the
    restorations' 8-bit levels as written (FID's convention rounds to 8 bits too, but in float32, which differs
    from write_png's rounding in a few pixels)."""
    if config.restoration.task != "reconstruct":
        return None
    written = {method: from_eight_bit_levels(_written(images)) for method, images in restored.items()}
    return fid_reports(model, reason, target, written, device, model_path=config.fid.model,
                       show_progress=show_progress)


def _refuse_whole_image_mask(config: InvertConfig, side: int) -> None:
    """A --mask-size of the image's side or more hides every pixel: nothing is observed to infer the rest from
    (it was clamped to the side, and the run reported the size asked for)."""
    mask_size = config.corruption.mask_size
    if config.restoration.task == "inpaint" and mask_size is not None and mask_size >= side:
        raise UserError(f"--mask-size {mask_size} hides the whole {side} px image, leaving nothing observed to "
                        f"restore from; give a side below {side}")


def _corruption_report(config: InvertConfig, size: int, corruption: Corruption) -> dict:
    """What was hidden or added: the square's side, or the user's masks and the share of pixels they hide; the
    noise level."""
    if config.restoration.task == "inpaint":
        if config.masks:
            return {"masks": list(config.masks), "hidden_fraction": float(1.0 - corruption.mask.mean())}
        return {"mask_size": config.corruption.mask_side(size)}
    return {"sigma": config.corruption.sigma} if config.restoration.task == "denoise" else {}


def _psnr_text(whole: float, hidden: float | None) -> str:
    return db_text(whole) + ("" if hidden is None else f" (hidden region {db_text(hidden)})")


def _grid_caption(task: str, count: int, size: int, rows: list[str], corrupted: dict[str, list[float]] | None,
                  summaries: dict[str, dict], composited: bool, shown: int | None = None) -> list[str]:
    """grid.png's caption: the task, the test images (the first ``shown`` of them, where not all), the rows, and
    the mean PSNRs the report gives (of all the images)."""
    images = f"{count} test image{'' if count == 1 else 's'} of {size} px"
    if shown is not None and shown < count:
        images = f"the first {shown} of {count:,} test images of {size} px (all in restored/ and the report)"
    parts = [f"jiio-invert {task}", images, "rows: " + " / ".join(rows)]
    if corrupted is not None:
        hidden = _mean(corrupted["psnr_masked"]) if "psnr_masked" in corrupted else None
        parts.append(f"{INPUT_NAMES[task]} mean PSNR {_psnr_text(_mean(corrupted['psnr']), hidden)}")
    for method, summary in summaries.items():
        parts.append(f"{method} {'composited' if composited else 'restored'} mean PSNR "
                     f"{_psnr_text(summary['psnr'], summary['psnr_masked'])}")
    return parts


def summary_text(report: dict) -> str:
    given = INPUT_NAMES[report["task"]]
    count = report["images"]["count"]
    lines = [f"jiio-invert {report['task']}: {count} image{'' if count == 1 else 's'} {report['images']['size']}px"
             + ("" if report["corrupted_psnr"] is None else
                f", {given} PSNR {_psnr_text(report['corrupted_psnr'], report['corrupted_psnr_masked'])}")]
    for method, s in report["methods"].items():
        restored = "composited" if report["composited"] else "restored"
        gain = f", {s['psnr_gain']:+.2f} dB over the {given}" if "psnr_gain" in s else ""
        lines.append(f"  {method:5s} {restored} PSNR {_psnr_text(s['psnr'], s['psnr_masked'])}{gain}; "
                     f"cost {s['cost_mean']:.3g}, {1000 * s['seconds_per_image']:.1f} ms/image, "
                     f"{s['iterations']} iterations")
        if "decoded_psnr" in s:
            lines.append(f"        raw decoding PSNR {_psnr_text(s['decoded_psnr'], s.get('decoded_psnr_masked'))}")
    comparison = report.get("comparison")
    if comparison:
        loss = comparison["equal_loss"]
        lines.append(f"  JIIO vs Adam: {comparison['equal_iterations']['time_ratio']:.1f}x faster at equal "
                     f"iterations, {'>=' if not loss['reached'] else ''}{loss['time_ratio']:.1f}x to equal loss")
    for method, fid in (report.get("fid") or {}).items():
        lines.append(f"  {method:5s} reconstruction {distances_text(fid)}")
    lines.append(f"  wrote {report['output_dir']}")
    return "\n".join(lines)
