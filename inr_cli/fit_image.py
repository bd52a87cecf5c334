"""`inr fit image`: fit one network per input image, then write reconstruction, comparison, plot, report, checkpoint."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from inr_cli.figures import write_comparison, write_psnr_plot
from inr_cli.files import (atomic_write_bytes, atomic_write_text, missing_ancestors, prepare_output_dir,
                           remove_if_empty)
from inr_cli.images import DEFAULT_IMAGE, read_image, resize_longest_side, write_png
from inr_cli.progress import fit_progress, stderr_console
from inr_cli.reports import REPORT_VERSION, human_summary, to_json, versions
from training.checkpoint import checkpoint_payload, serialize
from training.errors import UserError
from training.fit import FitConfig, fit, resolve_config, validate_config
from training.signal import image_signal

RECONSTRUCTION = "reconstruction.png"
COMPARISON = "comparison.png"
PSNR_PLOT = "psnr.png"
REPORT = "report.json"
CHECKPOINT = "checkpoint.pt"


def expand_inputs(paths: list[str]) -> list[str]:
    """``-`` stands for one path per line on stdin; no paths at all means the bundled default photo."""
    expanded: list[str] = []
    for path in paths:
        if path == "-":
            expanded += [line.strip() for line in sys.stdin if line.strip()]
        else:
            expanded.append(path)
    if not paths:
        expanded = [DEFAULT_IMAGE]
    elif not expanded:
        raise UserError("no input paths on stdin")
    return expanded


def input_stem(source: str) -> str:
    return source.split(":", 1)[1] if source.startswith("skimage:") else (Path(source).stem or "image")


def output_dirs(sources: list[str], out: Path | None, model: str) -> list[Path]:
    """One folder for one input; with several inputs, one sub-folder per input (names made unique)."""
    if out is None:
        out = Path("runs") / (f"{input_stem(sources[0])}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"
                              if len(sources) == 1 else f"{model}-{time.strftime('%Y%m%d-%H%M%S')}")
    if len(sources) == 1:
        return [out]
    seen: dict[str, int] = {}
    dirs = []
    for source in sources:
        stem = input_stem(source)
        seen[stem] = seen.get(stem, 0) + 1
        dirs.append(out / (stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"))
    return dirs


def fit_one_image(source: str, out_dir: Path, config: FitConfig, *, alpha: str, resize: int | None,
                  show_progress: bool) -> dict:
    """Read, fit, write. Raises UserError for bad input before anything is written."""
    image = read_image(source, alpha=alpha)
    if resize is not None:
        image = resize_longest_side(image, resize)
    try:
        signal = image_signal(image.pixels, holdout=config.holdout)
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None

    config = resolve_config(config, signal)  # a missing CUDA device fails here, before any folder exists
    created = missing_ancestors(out_dir)
    prepare_output_dir(out_dir)
    try:
        with fit_progress(input_stem(source), config.steps, enabled=show_progress) as on_progress:
            result = fit(signal, config, on_progress)
    except BaseException:
        remove_if_empty(created)  # leave no empty folders behind for a fit that never finished
        raise

    final = result.final
    write_png(out_dir / RECONSTRUCTION, final.reconstruction, image.bit_depth)
    write_comparison(out_dir / COMPARISON, image.pixels, final.reconstruction)
    write_psnr_plot(out_dir / PSNR_PLOT, result.batch_psnr, result.evaluations,
                    f"{input_stem(source)}: {config.model} {config.layers}L-{config.hidden}D")
    payload = checkpoint_payload(result, image.info(), in_features=signal.dims, out_features=signal.channels)
    atomic_write_bytes(out_dir / CHECKPOINT, serialize(payload))

    report = {
        "report_version": REPORT_VERSION,
        "input": source,
        "output_dir": str(out_dir),
        "model": result.config.model,
        "params": result.params,
        "steps": result.config.steps,
        "seconds": result.train_seconds,
        "steps_per_second": result.config.steps / result.train_seconds if result.train_seconds > 0 else None,
        "eval_seconds": result.eval_seconds,
        "device": result.config.device,
        "value_range": [0.0, 1.0],
        "psnr": final.psnr,
        "ssim": final.ssim,
        "psnr_holdout": final.psnr_holdout,
        "ssim_holdout": final.ssim_holdout,
        "image": image.info(),
        "notes": image.notes,
        "history": result.evaluations,
        "solver": result.solver,
        "files": {"reconstruction": RECONSTRUCTION, "comparison": COMPARISON, "psnr_plot": PSNR_PLOT,
                  "checkpoint": CHECKPOINT, "report": REPORT},
        "config": {**result.config.to_dict(), "alpha": alpha, "resize": resize},
        "versions": versions(),
    }
    if result.solver and result.solver["evaluation"] and not result.solver["evaluation"]["converged"]:
        evaluation = result.solver["evaluation"]
        warning = (f"evaluation solve did not converge: max relative residual {evaluation['max_rel_residual']:.2e} "
                   f"> tol {config.tol:g} after up to {evaluation['iterations_max']} iterations "
                   f"(raise --max-iter or try --solver anderson)")
        report["notes"] = report["notes"] + [f"warning: {warning}"]
        stderr_console.print(f"inr: warning: {source}: {warning}", markup=False, highlight=False, soft_wrap=True)
    # The report goes last: its presence means every other file of the run is complete.
    atomic_write_text(out_dir / REPORT, to_json(report) + "\n")
    return report


def run_fit_image(paths: list[str], config: FitConfig, *, out: Path | None, alpha: str, resize: int | None,
                  show_progress: bool, as_json: bool) -> int:
    """Fit every input; report each failure on one stderr line and carry on. Returns the exit code."""
    validate_config(config)
    if resize is not None and resize < 1:
        raise UserError(f"--resize must be at least 1, got {resize}")
    sources = expand_inputs(paths)
    failures = 0
    for source, out_dir in zip(sources, output_dirs(sources, out, config.model)):
        try:
            report = fit_one_image(source, out_dir, config, alpha=alpha, resize=resize,
                                   show_progress=show_progress)
        except UserError as error:
            failures += 1
            stderr_console.print(f"inr: error: {error}", markup=False, highlight=False, soft_wrap=True)
            continue
        if as_json:
            sys.stdout.write(to_json(report, indent=None) + "\n")
            sys.stdout.flush()
        else:
            print(human_summary(report), flush=True)
    return 1 if failures else 0
