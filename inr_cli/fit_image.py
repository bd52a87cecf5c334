"""`inr fit image`: read an image into a Signal; write its reconstruction and comparison after the fit."""

from __future__ import annotations

from pathlib import Path

from inr_cli.figures import write_comparison
from inr_cli.fitting import LoadedSignal, run_fits
from inr_cli.media.images import DEFAULT_IMAGE, read_image, resize_longest_side, write_png
from inr_core.errors import UserError
from training.fitting.fit import FitConfig, FitResult
from training.fitting.signal import image_signal

RECONSTRUCTION = "reconstruction.png"
COMPARISON = "comparison.png"


def load_image(source: str, *, alpha: str, resize: int | None, holdout: str) -> LoadedSignal:
    image = read_image(source, alpha=alpha)
    if resize is not None:
        image = resize_longest_side(image, resize)
    try:
        signal = image_signal(image.pixels, holdout=holdout)
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None

    def write_outputs(out_dir: Path, result: FitResult) -> dict[str, str]:
        write_png(out_dir / RECONSTRUCTION, result.final.reconstruction, image.bit_depth)
        write_comparison(out_dir / COMPARISON, image.pixels, result.final.reconstruction)
        return {"reconstruction": RECONSTRUCTION, "comparison": COMPARISON}

    return LoadedSignal(signal, image.info(), write_outputs, notes=image.notes)


def run_fit_image(paths: list[str], config: FitConfig, *, out: Path | None, alpha: str, resize: int | None,
                  show_progress: bool, as_json: bool) -> int:
    if resize is not None and resize < 1:
        raise UserError(f"--resize must be at least 1, got {resize}")

    def load(source: str) -> LoadedSignal:
        return load_image(source, alpha=alpha, resize=resize, holdout=config.holdout)

    return run_fits(paths, config, load, default=DEFAULT_IMAGE, out=out, show_progress=show_progress,
                    as_json=as_json, extra_config={"alpha": alpha, "resize": resize})
