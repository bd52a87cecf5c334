"""What every `inr fit <modality>` shares: inputs, output folders, the fit, the plot, checkpoint and report.

A modality supplies one function that turns a source into a :class:`LoadedSignal`: the Signal to fit, a
description of the source (saved in the checkpoint and the report), notes on what was done to it, and how to
write its own outputs (reconstruction, comparison picture) and extra metrics once the fit is done.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from inr_cli.figures import write_psnr_plot
from inr_cli.files import (atomic_write_bytes, atomic_write_text, missing_ancestors, prepare_output_dir,
                           remove_if_empty)
from inr_cli.progress import fit_progress, stderr_console
from inr_cli.reports import REPORT_VERSION, human_summary, to_json, versions
from training.fitting.checkpoint import checkpoint_payload, serialize
from inr_core.errors import UserError
from training.fitting.fit import FitConfig, FitResult, fit, resolve_config, validate_config
from training.fitting.signal import Signal

PSNR_PLOT = "psnr.png"
REPORT = "report.json"
CHECKPOINT = "checkpoint.pt"


@dataclass
class LoadedSignal:
    signal: Signal
    info: dict  # {"kind": "image" | "audio" | ..., size, channels, ...}
    write_outputs: Callable[[Path, FitResult], dict[str, str]]  # writes files, returns {role: file name}
    metrics: Callable[[FitResult], dict] = lambda result: {}  # extra report entries (e.g. SNR)
    psnr_plot: bool = True  # False where PSNR means nothing (3D shapes draw their own progress plot)
    notes: list[str] = field(default_factory=list)


def input_stem(source: str) -> str:
    return source.split(":", 1)[1] if source.startswith("skimage:") else (Path(source).stem or "input")


def expand_inputs(paths: list[str], default: str | None) -> list[str]:
    """``-`` stands for one path per line on stdin; no paths at all means the modality's default input."""
    expanded: list[str] = []
    for path in paths:
        if path == "-":
            expanded += [line.strip() for line in sys.stdin if line.strip()]
        else:
            expanded.append(path)
    if not paths:
        if default is None:
            raise UserError("no input given")
        expanded = [default]
    elif not expanded:
        raise UserError("no input paths on stdin")
    return expanded


def output_dirs(sources: list[str], out: Path | None, model: str) -> list[Path]:
    """One folder for one input; with several inputs, one sub-folder per input (names made unique)."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / (f"{input_stem(sources[0])}-{model}-{stamp}" if len(sources) == 1 else f"{model}-{stamp}")
    if len(sources) == 1:
        return [out]
    seen: dict[str, int] = {}
    dirs = []
    for source in sources:
        stem = input_stem(source)
        seen[stem] = seen.get(stem, 0) + 1
        dirs.append(out / (stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"))
    return dirs


def _solver_warning(result: FitResult) -> str | None:
    evaluation = result.solver["evaluation"] if result.solver else None
    if not evaluation or evaluation["converged"]:
        return None
    return (f"evaluation solve did not converge: max relative residual {evaluation['max_rel_residual']:.2e} "
            f"> tol {result.config.tol:g} after up to {evaluation['iterations_max']} iterations "
            f"(raise --max-iter or try --solver anderson)")


def fit_one(source: str, loaded: LoadedSignal, out_dir: Path, config: FitConfig, *, show_progress: bool,
            extra_config: dict) -> dict:
    """Fit, then write the modality's outputs, the plot, the checkpoint and (last) the report."""
    signal = loaded.signal
    config = resolve_config(config, signal)  # a missing CUDA device fails here, before any folder exists
    created = missing_ancestors(out_dir)
    prepare_output_dir(out_dir)
    try:
        with fit_progress(input_stem(source), config.steps, enabled=show_progress) as on_progress:
            result = fit(signal, config, on_progress)
    except BaseException:
        remove_if_empty(created)  # leave no empty folders behind for a fit that never finished
        raise

    files = loaded.write_outputs(out_dir, result)
    if loaded.psnr_plot:
        write_psnr_plot(out_dir / PSNR_PLOT, result.batch_psnr, result.evaluations,
                        f"{input_stem(source)}: {config.model} {config.layers}L-{config.hidden}D")
        files["psnr_plot"] = PSNR_PLOT
    payload = checkpoint_payload(result, loaded.info, in_features=signal.dims, out_features=signal.channels)
    atomic_write_bytes(out_dir / CHECKPOINT, serialize(payload))

    final = result.final
    notes = list(loaded.notes)
    warning = _solver_warning(result)
    if warning:
        notes.append(f"warning: {warning}")
        stderr_console.print(f"inr: warning: {source}: {warning}", markup=False, soft_wrap=True)
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
        **loaded.metrics(result),
        loaded.info["kind"]: loaded.info,
        "notes": notes,
        "history": result.evaluations,
        "solver": result.solver,
        "files": {**files, "checkpoint": CHECKPOINT, "report": REPORT},
        "config": {**result.config.to_dict(), **extra_config},
        "versions": versions(),
    }
    # The report goes last: its presence means every other file of the run is complete.
    atomic_write_text(out_dir / REPORT, to_json(report) + "\n")
    return report


def run_fits(paths: list[str], config: FitConfig, load: Callable[[str], LoadedSignal], *, default: str | None,
             out: Path | None, show_progress: bool, as_json: bool, extra_config: dict) -> int:
    """Fit every input; report each failure on one stderr line and carry on. Returns the exit code."""
    validate_config(config)
    sources = expand_inputs(paths, default)
    failures = 0
    for source, out_dir in zip(sources, output_dirs(sources, out, config.model)):
        try:
            report = fit_one(source, load(source), out_dir, config, show_progress=show_progress,
                             extra_config=extra_config)
        except UserError as error:
            failures += 1
            stderr_console.print(f"inr: error: {error}", markup=False, soft_wrap=True)
            continue
        if as_json:
            sys.stdout.write(to_json(report, indent=None) + "\n")
            sys.stdout.flush()
        else:
            print(human_summary(report), flush=True)
    return 1 if failures else 0
