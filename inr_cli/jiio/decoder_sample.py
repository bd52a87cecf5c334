"""`inr sample DECODER_CKPT -n 64`: draw latents from the Gaussian mixture fitted to a JIIO-trained decoder's
training latents, decode them at their equilibria, write a grid and its JSON report (with --fid, FID against real
images; with --individual, one PNG per sample too).

``--out`` names either the grid (``draws.png``: the report is ``draws.json``, the single samples go in ``draws/``)
or a folder (``grid.png``, ``report.json`` and ``samples/`` inside it), the way `inr jiio-invert` lays out a run.
A folder is claimed as a run's is (:class:`inr_cli.run_folder.RunFolder`'s lock), so no other inr run writes it
meanwhile, and what it holds is checked again before the draws are written. An earlier draw's files, as its
report lists them, are replaced; nothing else is: not a file that no earlier draw wrote (the grid's name unless
--overwrite; a PNG in the folder for --individual), nor another run's report.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from inr_cli.media.datasets import load_images
from inr_cli.jiio.fid_model import distances_text, fid_report, load_fid_model
from inr_cli.figures import write_image_grid
from inr_cli.files import atomic_write_text, prepare_output_dir, remove_if_empty
from inr_cli.media.images import write_png
from inr_cli.progress import counter_progress
from inr_cli.reports import REPORT_VERSION, to_json, versions
from inr_cli.run_folder import RunFolder
from training.jiio.channels import match_channels
from training.jiio.decoder_checkpoint import decoder_from_payload
from training.fitting.devices import resolve_device
from inr_core.errors import UserError
from training.jiio.latent_density import fit_gaussian_mixture, sample_gaussian_mixture

GRID_LIMIT = 256  # images shown in the grid; FID uses all of them
DRAW_CHUNK = 256  # draws solved and decoded at once
# The usual count on the real side (FID is biased upward at small counts). Inception reads every one: measured
# 8.9 images/s on 2 CPU cores with other work running (load 3; 1.6 at load 5), so about 20 minutes there.
FID_REAL_IMAGES = 10_000


@dataclass(frozen=True)
class SampleFiles:
    """Where one `inr sample` of a decoder writes: ``shown`` is what the command prints (the grid, or the folder)."""
    grid: Path
    report: Path
    individual: Path | None  # the folder for one PNG per sample, when asked for
    shown: Path


def sample_files(out: Path | None, checkpoint: Path, count: int, individual: bool, overwrite: bool = False
                 ) -> SampleFiles:
    """The files ``--out`` asks for: a .png name is the grid, anything without a suffix (or an existing folder) a
    folder to write into; the default is ``samples-COUNT.png`` beside the checkpoint."""
    out = out or checkpoint.parent / f"samples-{count}.png"
    if out.suffix.lower() == ".png":
        files = SampleFiles(out, out.with_suffix(".json"), out.with_suffix("") if individual else None, out)
    elif out.is_dir() or not out.suffix:
        files = SampleFiles(out / "grid.png", out / "report.json", out / "samples" if individual else None, out)
    else:
        raise UserError(f"{out}: decoder samples are written as a PNG grid or into a folder; give a .png file name "
                        "or a folder")
    _check_targets(files, overwrite)
    return files


def _check_targets(files: SampleFiles, overwrite: bool = False) -> None:
    """Refuse, before anything is drawn or written (and again just before writing), targets that are in the way: a
    grid or report that would land on a folder, or a folder (--out, the one for --individual) that is a file; a
    report of another run there; a grid file that no earlier draw there wrote, unless ``overwrite``; PNGs in the
    folder for --individual that no earlier draw there wrote (its numbered PNGs would replace or remove them).
    Otherwise the grid could be written and the report fail, leaving draws without their record."""
    for path in (files.grid, files.report):
        if path.is_dir():
            raise UserError(f"{path}: is a folder, where the sample's {path.suffix[1:].upper()} file would go; "
                            "choose another --out")
    for folder in (files.grid.parent, files.individual):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise UserError(f"{folder}: is not a folder, where the samples would go; choose another --out")
    earlier = _earlier_draw(files.report)
    if files.report.is_file() and earlier is None:  # earlier draws are replaced, no more
        raise UserError(f"{files.report.parent}: holds another run ({files.report.name} is not an `inr sample` "
                        f"report), which these draws would replace; choose another --out")
    if files.grid.is_symlink():  # the grid is renamed into place, which would replace the link itself
        raise UserError(f"{files.grid}: is a symbolic link; choose another --out")
    if files.grid.exists() and not (earlier and Path(str(earlier.get("grid"))).name == files.grid.name):
        from inr_cli.sample import writable_sample_path  # the rules of a fitted network's sample file
        writable_sample_path(files.grid, overwrite)
    if files.individual is not None and files.individual.is_dir():
        wrote = earlier_draws(files.report, files.individual.name)
        foreign = sorted(png.name for png in files.individual.glob("*.png") if png.name not in wrote)
        if foreign:
            listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise UserError(f"{files.individual}: holds PNGs that no earlier draw there wrote ({listed}), which the "
                            f"draws' numbered PNGs would replace or remove; choose another --out")


def _earlier_draw(report: Path) -> dict | None:
    """The report of an earlier `inr sample` draw at ``report``; None when there is none, or it is not one."""
    try:
        earlier = json.loads(report.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return earlier if isinstance(earlier, dict) and earlier.get("command") == "sample" else None


def earlier_draws(report: Path, folder_name: str) -> set[str]:
    """The numbered PNGs that the earlier draw whose report is ``report`` wrote into its folder for --individual,
    when that folder is the one named ``folder_name`` beside the report (its place relative to the report is fixed:
    ``samples/``, or the grid's name), by the count the report gives; an empty set when it wrote none there."""
    earlier = _earlier_draw(report)
    folder, count = (earlier.get("individual"), earlier.get("samples")) if earlier else (None, None)
    if not isinstance(folder, str) or Path(folder).name != folder_name or not isinstance(count, int) or count < 1:
        return set()
    digits = max(4, len(str(count - 1)))
    return {f"{i:0{digits}d}.png" for i in range(count)}


def write_individual(folder: Path, images: torch.Tensor, earlier: set[str]) -> None:
    """One 8-bit PNG per image (N, C, S, S) in [-1, 1], numbered from 0 with at least four digits. The earlier
    draw's numbered PNGs there (``earlier``: as its report lists them) are removed first: a folder of 8 draws
    redrawn with 4 would otherwise keep 4 stale ones. No other file there is touched (:func:`_check_targets`)."""
    prepare_output_dir(folder)
    for name in sorted(earlier):
        (folder / name).unlink(missing_ok=True)
    digits = max(4, len(str(len(images) - 1)))
    for i, image in enumerate(images):
        write_png(folder / f"{i:0{digits}d}.png", ((image + 1) / 2).permute(1, 2, 0), 8)


def _clear_earlier_individual(report: Path) -> None:
    """An earlier draw's one-PNG-per-sample folder, as the report this draw replaces lists it: its report first
    (a half-cleared draw never looks complete), then the numbered PNGs it lists, so none is left beside a report
    that does not list them."""
    earlier = _earlier_draw(report)
    folder = earlier.get("individual") if earlier else None
    if not isinstance(folder, str):
        return
    folder = report.parent / Path(folder).name  # where it is now: the run may have moved since
    names = earlier_draws(report, folder.name)
    if not folder.is_dir() or not names:
        return
    report.unlink(missing_ok=True)
    for name in sorted(names):
        (folder / name).unlink(missing_ok=True)
    remove_if_empty([folder])


def sample_decoder(checkpoint: Path, payload: dict, *, out: Path | None, device_name: str = "auto",
                   count: int | None = None, fid: str | None = None, fid_model: Path | None = None,
                   fid_count: int | None = None, seed: int = 0, as_json: bool = False, individual: bool = False,
                   show_progress: bool = False, overwrite: bool = False) -> Path | None:
    """Draw ``count`` images (default 64); the options were checked by ``DecoderSampleOptions.validate``. Returns
    the grid or folder written (None with ``as_json``). ``show_progress``: bars over the draws (more than one chunk
    of them) and FID's Inception passes. ``overwrite``: a grid file that no earlier draw wrote may be replaced."""
    count = 64 if count is None else count
    files = sample_files(out, checkpoint, count, individual, overwrite)
    # A folder of draws is claimed as a run folder is: no other inr run writes it (or a folder around it) meanwhile.
    claimed = RunFolder(files.shown).lock() if files.shown != files.grid else None
    try:
        if claimed is not None:
            _check_targets(files, overwrite)  # what it holds now that no other run can write it
        return _draw(checkpoint, payload, files, device_name=device_name, count=count, fid=fid, fid_model=fid_model,
                     fid_count=fid_count, seed=seed, as_json=as_json, show_progress=show_progress,
                     overwrite=overwrite)
    finally:
        if claimed is not None:
            claimed.release()


def _draw(checkpoint: Path, payload: dict, files: SampleFiles, *, device_name: str, count: int, fid: str | None,
          fid_model: Path | None, fid_count: int | None, seed: int, as_json: bool, show_progress: bool,
          overwrite: bool) -> Path | None:
    """The draws of :func:`sample_decoder`, written into ``files``."""
    fid_count = FID_REAL_IMAGES if fid_count is None else fid_count
    device = resolve_device(device_name)
    decoder, config = decoder_from_payload(payload, str(checkpoint), device)
    decoder.requires_grad_(False)
    model, reason = load_fid_model(fid_model) if fid is not None else (None, None)
    real = load_images(fid, config.image_size, limit=fid_count) if fid is not None else None
    density = payload.get("density")
    notes = []
    if density is None:  # a checkpoint written mid-training: fit the mixture now, from the latents it holds
        notes.append(f"latent density fitted now from the checkpoint's {len(payload['latents'])} latents "
                     f"(training had not finished)")
        density = fit_gaussian_mixture(payload["latents"].float(), seed=config.seed, notes=notes)
    latents = sample_gaussian_mixture(density, count, torch.Generator().manual_seed(seed)).to(device)
    # A bar over the draws where they take more than one chunk of solves (100,000 take minutes on a CPU).
    with counter_progress(f"decoding {count:,} draws", count, enabled=show_progress and count > DRAW_CHUNK) as update:
        images, residuals = decoder.generate(latents, DRAW_CHUNK, on_chunk=update)
    images = images.cpu()
    _check_targets(files, overwrite)  # again: the draws took a while, and the folder may hold something new
    prepare_output_dir(files.grid.parent)
    if files.individual is not None:
        write_individual(files.individual, images, earlier_draws(files.report, files.individual.name))
    else:
        _clear_earlier_individual(files.report)
    shown = f"the first {GRID_LIMIT} shown" if count > GRID_LIMIT else "all shown"
    write_image_grid(files.grid, [images[:GRID_LIMIT]], columns=16,
                     caption=[f"inr sample {checkpoint.parent.name}/{checkpoint.name}".replace(" /", " "),
                              f"{count} draws from the decoder's latent mixture ({shown})", f"seed {seed}"])
    report = {
        "report_version": REPORT_VERSION, "command": "sample", "checkpoint": str(checkpoint), "samples": count,
        "grid": str(files.grid), "individual": None if files.individual is None else str(files.individual),
        "seed": seed, "density_components": int(density["weights"].numel()),
        "equilibrium_rel_residual_max": float(residuals.max()),
        "equilibrium_rel_residual_mean": float(residuals.mean()),
        "notes": notes, "versions": versions(),
    }
    if real is not None:
        real = match_channels(real, images.shape[1])
        report["fid_real_images"] = fid
        report.update(fid_report(model, reason, real, images, device, model_path=fid_model,
                                 show_progress=show_progress))
    atomic_write_text(files.report, to_json(report) + "\n")  # last: its presence means the draws are complete
    if as_json:
        sys.stdout.write(to_json(report, indent=None) + "\n")
        return None
    if real is not None:
        print(distances_text(report), file=sys.stderr)
    return files.shown
