"""`inr compare image`: the papers' grid — models x sizes, implicit beside explicit — over a set of images."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from inr_cli.files import (atomic_write_text, expand_inputs, refuse_empty_folder, remove_if_empty,
                           remove_written_on_failure)
from inr_cli.modalities.image import IMAGE, ImageOptions
from inr_cli.pages import PAGE, write_compare_page
from inr_cli.peak_memory import measure_peak_memory
from inr_cli.progress import fit_progress, stderr_console
from inr_cli.reports import clean, versions
from inr_cli.run_folder import SET_ASIDE, RunFolder, refuse_foreign_files
from inr_core.errors import InvalidSetting, UserError, check
from models import get_spec, model_names
from training.fitting.amortized import FixpointCache
from training.fitting.config import MAX_HIDDEN, MAX_LAYERS, FitConfig, resolve_config
from training.fitting.devices import resolve_device
from training.fitting.fit import FitResult, fit
from training.fitting.signal import GridSignal
from training.fitting.step_memory import training_step_bytes

SIZE_PATTERN = re.compile(r"^(\d+)L(\d+)D$", re.IGNORECASE)
SUMMARY_FILE = "compare.json"  # written only by a comparison: it marks the folder as one
TABLE_FILE = "compare.md"
PICTURES = "pictures"  # as write_compare_page names it


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'1L256D,4L256D' -> [(1, 256), (4, 256)]: layers and width, as the papers name them."""
    sizes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = SIZE_PATTERN.match(item)
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            raise InvalidSetting("--sizes", f"{item!r} is not of the form nLcD, e.g. 1L256D")  # usage: exit 2
        sizes.append((int(match.group(1)), int(match.group(2))))
    if not sizes:
        raise InvalidSetting("--sizes", "is empty; e.g. --sizes 1L256D,4L256D")
    return list(dict.fromkeys(sizes))  # a size named twice is one row (in the order first named), not two


def parse_models(text: str) -> list[str]:
    """'gabor-imfn, siren' -> ['gabor-imfn', 'siren']."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise InvalidSetting("--models", "is empty; e.g. --models gabor-imfn,fourier-imfn")
    return list(dict.fromkeys(names))  # a model named twice is fitted once


def variants(models: list[str]) -> list[tuple[str, bool]]:
    """(model, explicit) pairs: an implicit model is run both ways, side by side."""
    rows = []
    for name in models:
        rows.append((name, False))
        if get_spec(name).implicit:
            rows.append((name, True))
    return rows


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    # The population standard deviation, as the dataset summary of `inr fit` and a video's per-frame spread give
    # it; none for one image, whose table shows the value alone.
    return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else None)


def _fmt(mean, std, digits=2) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def markdown_table(rows: list[dict], holdout: bool) -> str:
    header = ["model", "size", "variant", "PSNR (dB)"] + (["holdout PSNR (dB)"] if holdout else []) + \
             ["ms/step", "params", "step MB", "peak MB", "eval iters"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["model"], row["size"], row["variant"], _fmt(row["psnr_mean"], row["psnr_std"])]
        if holdout:
            cells.append(_fmt(row["psnr_holdout_mean"], row["psnr_holdout_std"]))
        cells += [f"{row['ms_per_step']:.1f}", f"{row['params']:,}", f"{row['step_mb']:.1f}",
                  "–" if row["peak_mb"] is None else f"{row['peak_mb']:.0f}",
                  "–" if row["eval_iterations"] is None else f"{row['eval_iterations']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# Above this many points "step MB" is measured on two smaller batches and carried over to the whole image.
MEASURED_POINTS = 8192


def step_megabytes(result: FitResult, signal: GridSignal, device: torch.device) -> float:
    """Memory one full-batch training step of the fitted model keeps for backward (plus an implicit cache).

    Measured as a step on the whole image would hold it, without taking that step: every point keeps the same
    tensors (its activations, its cached state) and the rest (weights saved for the products) does not grow with
    the points, so the bytes are ``a + b * points`` exactly, and two steps of ``MEASURED_POINTS`` and twice as many
    give ``a`` and ``b``. (A whole-image step of a 3 MP photo with SIREN 1L-256D held over 6 GB just to be
    counted.)"""
    coords, target = signal.train_coordinates(), signal.train_targets()
    points = len(coords)
    if points <= 2 * MEASURED_POINTS:
        return _step_bytes(result, coords, target, device) / 2**20
    small = _step_bytes(result, coords[:MEASURED_POINTS], target[:MEASURED_POINTS], device)
    large = _step_bytes(result, coords[:2 * MEASURED_POINTS], target[:2 * MEASURED_POINTS], device)
    per_point = (large - small) / MEASURED_POINTS
    return (small + per_point * (points - MEASURED_POINTS)) / 2**20


def _step_bytes(result: FitResult, coords: torch.Tensor, target: torch.Tensor, device: torch.device) -> int:
    config = result.config
    cache = FixpointCache(len(coords), config.hidden, device) if config.is_implicit() and config.amortize else None
    return training_step_bytes(result.model, coords.to(device), target.to(device), cache)["total_bytes"]


@dataclass(frozen=True)
class CompareConfig:
    """`inr compare image`: every model (implicit ones both ways) at every size, with the shared fit settings
    (steps, seed, device, solver) and image options; ``fit``'s model and size are set per run."""

    fit: FitConfig
    image: ImageOptions
    models: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]  # (layers, hidden)

    def validate(self) -> None:
        self.fit.validate()
        self.image.validate()
        unknown = [name for name in self.models if name not in model_names()]
        check(not unknown, "models", f"must be among: {', '.join(model_names())}; got {', '.join(unknown)}")
        for layers, hidden in self.sizes:  # as --hidden and --layers are bounded for `inr fit`
            check(1 <= hidden <= MAX_HIDDEN and layers <= MAX_LAYERS, "sizes",
                  f"must have widths from 1 to {MAX_HIDDEN:,} and at most {MAX_LAYERS} layers; got {layers}L{hidden}D")


def run_compare(paths: list[str], config: CompareConfig, *, out: Path | None = None, as_json: bool = False,
                quiet: bool = False, overwrite: bool = False) -> int:
    """Validate ``config`` once, fit the grid to every image, write compare.md, compare.json and a page
    (index.html: the table, sortable, with every reconstruction under pictures/). Each fit announces itself on
    stderr unless ``quiet``."""
    config.validate()
    base, holdout = replace(config.fit, eval_every=0), config.image.holdout
    paths = expand_inputs(paths, IMAGE.default_input, IMAGE.folder_suffixes)  # a folder: the images in it
    for path in paths:
        refuse_empty_folder(path, IMAGE.folder_suffixes)
    images = [(path, IMAGE.load(path, config.image, base.seed)) for path in paths]
    out = out if out is not None else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    refuse_foreign_files(out, own_files=(SUMMARY_FILE,))
    # One process writes a comparison at a time: a second one aimed at the same folder (even a new one that both
    # found empty) is refused at once, not left to mix its table and pictures with the first one's.
    folder = RunFolder(out).lock()
    try:
        if (out / SUMMARY_FILE).is_file() and not overwrite:
            raise UserError(f"{out} already holds a comparison; add --overwrite to replace it, or choose another "
                            "--out")
        return _compare(images, config, base, holdout, out, as_json, quiet)
    finally:
        folder.release()  # a comparison that failed leaves no empty folder of its own making


def _compare(images: list, config: CompareConfig, base: FitConfig, holdout, out: Path, as_json: bool,
             quiet: bool) -> int:
    """Fit every model, size and variant to each loaded image; write the table, the JSON and the page."""
    rows, pictures = [], []  # pictures: each row's reconstruction of every image, for the page
    runs = [(name, explicit, layers, hidden) for layers, hidden in config.sizes
            for name, explicit in variants(list(config.models))]
    for index, (name, explicit, layers, hidden) in enumerate(runs, 1):
        variant = "explicit" if explicit or not get_spec(name).implicit else "implicit"
        label = f"[{index}/{len(runs)}] {name} {layers}L-{hidden}D {variant}"
        per_image = []
        for path, loaded in images:
            signal = loaded.signal
            run_config = replace(base, model=name, layers=layers, hidden=hidden, explicit=explicit)
            run_config = resolve_config(run_config, signal, IMAGE.recipe)
            if not quiet:
                stderr_console.print(f"{label}: {path}", markup=False)
            device = torch.device(run_config.device)
            # Below each line, in a terminal, the fit's own bar (a grid of sizes fits for many minutes on a CPU).
            # Where stderr is a file or a pipe the lines alone say what is fitting, as they always did.
            bar = not quiet and stderr_console.is_terminal
            with fit_progress(name, run_config.steps, enabled=bar) as on_progress, \
                    measure_peak_memory(device) as peak:
                result = fit(signal, run_config, on_progress=on_progress)
            per_image.append((result, peak.megabytes, step_megabytes(result, signal, device)))
        pictures.append([r.final.reconstruction for r, _, _ in per_image])
        psnr_mean, psnr_std = _mean_std([r.final.psnr for r, _, _ in per_image])
        hold_mean, hold_std = _mean_std([r.final.psnr_holdout for r, _, _ in per_image])
        evaluation_iters = [r.solver["evaluation"]["iterations_mean"] for r, _, _ in per_image
                            if r.solver and r.solver["evaluation"]]
        peaks = [p for _, p, _ in per_image if p is not None]
        rows.append({
            "model": name, "size": f"{layers}L-{hidden}D", "layers": layers, "hidden": hidden, "variant": variant,
            "psnr_mean": psnr_mean, "psnr_std": psnr_std, "psnr_holdout_mean": hold_mean, "psnr_holdout_std": hold_std,
            "ms_per_step": 1e3 * statistics.fmean(r.train_seconds / max(1, r.timed_steps) for r, _, _ in per_image),
            "params": per_image[0][0].params, "peak_mb": max(peaks) if peaks else None,
            "step_mb": max(m for _, _, m in per_image),
            "eval_iterations": statistics.fmean(evaluation_iters) if evaluation_iters else None,
            "per_image": [{"input": path, "psnr": r.final.psnr, "psnr_holdout": r.final.psnr_holdout}
                          for (path, _), (r, _, _) in zip(images, per_image)],
        })
    device = str(resolve_device(base.device))
    resolved = per_image[0][0].config  # precision and compile as the last fits resolved them (same for all)
    summary = {"images": [p for p, _ in images], "steps": base.steps, "holdout": holdout, "device": device,
               "precision": resolved.precision, "compile": resolved.compile,
               "memory": {"step_mb": "tensors one full-batch training step keeps for backward, plus the implicit cache",
                          "peak_mb": "CUDA allocator peak over the fit (GPU only)"},
               "value_range": [0.0, 1.0], "rows": rows, "versions": versions()}
    table = markdown_table(rows, holdout != "none")
    spread = ", mean ± std (population) over the images" if len(images) > 1 else ""
    title = (f"# inr compare: {len(images)} image{'s' if len(images) > 1 else ''}, {base.steps} steps, device "
             f"{device}, {resolved.precision}{', compiled' if resolved.compile else ''}"
             f"{', holdout grid' if holdout != 'none' else ''}\n\nPSNR on [0, 1]{spread}. "
             f"step MB: what one full-batch training step keeps for backward (plus the implicit model's fixpoint "
             f"cache); peak MB: CUDA allocator peak over the fit (GPU only).\n\n")
    with _replacing_comparison(out):
        atomic_write_text(out / TABLE_FILE, title + table + "\n")
        atomic_write_text(out / SUMMARY_FILE, json.dumps(clean(summary), indent=2) + "\n")
        write_compare_page(out, summary, [loaded.signal.unit_grid() for _, loaded in images], pictures,
                           {"table": TABLE_FILE, "summary": SUMMARY_FILE})
    print(json.dumps(clean(summary)) if as_json else table, flush=True)
    return 0


@contextlib.contextmanager
def _replacing_comparison(out: Path) -> Iterator[None]:
    """Write a comparison's files in the block, whole or not at all. An earlier comparison's files (--overwrite;
    its pictures may be of other images, models or sizes) are set aside first, deleted once the block is done, and
    put back if it fails (a full disk): a failed comparison leaves the folder as it found it, never a compare.md
    without its compare.json, which every later run would refuse as someone else's file."""
    aside = out / SET_ASIDE
    shutil.rmtree(aside, ignore_errors=True)  # one left by a comparison that was killed: replaced now
    pictures = out / PICTURES
    earlier = [out / name for name in (TABLE_FILE, SUMMARY_FILE, PAGE) if (out / name).is_file()]
    earlier += sorted(pictures.glob("*.png"))
    made_pictures = not pictures.exists()
    for path in earlier:
        kept = aside / path.relative_to(out)
        kept.parent.mkdir(parents=True, exist_ok=True)
        path.rename(kept)
    try:
        with remove_written_on_failure():
            yield
    except BaseException:
        if made_pictures:
            remove_if_empty([pictures])
        for path in earlier:
            path.parent.mkdir(exist_ok=True)
            (aside / path.relative_to(out)).rename(path)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
