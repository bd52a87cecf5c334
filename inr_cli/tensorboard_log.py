"""`--tensorboard DIR`: each fit as a TensorBoard run, for following training where PyTorch users already look.

Along the run the log takes what the fit's progress callback already carries (loss, batch PSNR, learning rate,
steps/s): the callback runs only where the fit reads the loss back anyway (every step on the CPU, every 50th on
CUDA), so logging adds no device synchronisation. When the fit is done it adds the evaluations along the run
(PSNR, held-out PSNR, IoU) at their steps, the final metrics of the report, the fixpoint solver's iterations and
residuals (implicit models), the reconstruction (an image, a few video frames, or the audio clip), the run's
figures and its config.

The writer comes from ``torch.utils.tensorboard``, which needs the ``tensorboard`` package: an optional extra,
asked for only when the option is given.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from training.fitting.evaluate import GridEvaluation
from training.fitting.fit import FitProgress, FitResult
from training.fitting.signal import GridSignal
from training.metrics import mse_from_psnr

INSTALL_HINT = "needs the tensorboard package: pip install 'inr[tensorboard]'"
# Report entries about the run's bookkeeping rather than its quality (logged under run/, not final/).
RUN_KEYS = ("report_version", "params", "steps", "kept_step", "group_size", "seconds", "steps_per_second",
            "eval_seconds", "compile_seconds", "startup_seconds")
VIDEO_FRAMES_LOGGED = 6
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def tensorboard_available() -> bool:
    try:
        importlib.import_module("torch.utils.tensorboard")  # raises ImportError without the tensorboard package
    except ImportError:
        return False
    return True


def _numbers(value, prefix: str) -> list[tuple[str, float]]:
    """Finite numbers of a (nested) report entry as (tag, value) pairs; booleans become 0/1."""
    if isinstance(value, dict):
        return [pair for key, inner in value.items() for pair in _numbers(inner, f"{prefix}/{key}")]
    if isinstance(value, bool):
        return [(prefix, float(value))]
    if isinstance(value, (int, float)) and math.isfinite(value):
        return [(prefix, float(value))]
    return []


class FitLog:
    """One fit's TensorBoard run in ``log_dir``."""

    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def progress(self, state: FitProgress) -> None:
        """A progress callback (:func:`training.fitting.fit.fit`'s ``on_progress``): plain numbers, no sync."""
        write = self.writer.add_scalar
        write("train/loss", state.loss, state.step)
        write("train/psnr", state.psnr, state.step)
        if state.learning_rate is not None:
            write("train/learning_rate", state.learning_rate, state.step)
        if state.seconds > 0:
            write("train/steps_per_second", state.step / state.seconds, state.step)

    def training_curves(self, result: FitResult) -> None:
        """Every step's batch PSNR and learning rate of a fit that could not be followed live (a member of a group
        fit, whose live progress is the group's mean), and its steps/s (the group's, over the whole run: a member
        has no pace of its own)."""
        for step, psnr in enumerate(result.batch_psnr, 1):
            self.writer.add_scalar("train/psnr", psnr, step)
            if math.isfinite(psnr):
                self.writer.add_scalar("train/loss", mse_from_psnr(psnr), step)  # the loss that PSNR came from
            self.writer.add_scalar("train/learning_rate", result.config.learning_rate(step), step)  # no rollbacks
        if result.train_seconds > 0:
            self.writer.add_scalar("train/steps_per_second", result.timed_steps / result.train_seconds,
                                   len(result.batch_psnr))

    def finish(self, result: FitResult, report: dict, signal, out_dir: Path) -> None:
        """Log what the finished fit measured and wrote, then close the run's files."""
        try:
            last = result.config.steps
            for entry in result.evaluations:
                for tag, value in _numbers({k: v for k, v in entry.items() if k != "step"}, "eval"):
                    self.writer.add_scalar(tag, value, entry["step"])
            for key, value in report.items():  # the metrics: top-level numbers (infos, config, files are dicts)
                if key not in RUN_KEYS and not isinstance(value, (dict, bool)):
                    for tag, number in _numbers(value, f"final/{key}"):
                        self.writer.add_scalar(tag, number, last)
            for tag, value in _numbers({key: report.get(key) for key in RUN_KEYS[1:]}, "run"):
                self.writer.add_scalar(tag, value, last)
            self._solver(report.get("solver"), last)
            self._reconstruction(result, signal, report, last)
            self._figures(report.get("files", {}), out_dir, last)
            config = json.dumps(report.get("config", {}), indent=2)
            self.writer.add_text("config", "    " + config.replace("\n", "\n    "), last)  # a code block
        finally:
            self.close()

    def _solver(self, solver: dict | None, last: int) -> None:
        if not solver:
            return
        training = dict(solver.get("training") or {})
        # The initial solves happen at the first step; the cache's residual and the evaluation at the end.
        for key in [k for k in training if k.startswith("initial_solve")]:
            for tag, value in _numbers(training.pop(key), f"solver/training/{key}"):
                self.writer.add_scalar(tag, value, 1)
        for tag, value in _numbers({"training": training, "evaluation": solver.get("evaluation") or {}}, "solver"):
            self.writer.add_scalar(tag, value, last)

    def _reconstruction(self, result: FitResult, signal, report: dict, last: int) -> None:
        final = result.final
        if not isinstance(final, GridEvaluation):
            return
        # Only what is logged is clamped (a clip's few frames, its first channel), and only an image's target is
        # made: whole copies of a long clip or video were gigabytes (48 frames of 1080p: 1.2 GB each).
        rendered = final.reconstruction
        dims = rendered.dim() - 1
        if dims == 2:  # an image: (H, W, C)
            picture = rendered.clamp(0, 1)
            target = signal.unit_grid().reshape(picture.shape) if isinstance(signal, GridSignal) else None
            for tag, pixels in (("reconstruction", picture), ("target", target)):
                if pixels is not None:
                    self.writer.add_image(tag, _displayable(pixels), last, dataformats="HWC")
        elif dims == 3:  # a video: a few frames, (N, H, W, C)
            chosen = torch.linspace(0, rendered.shape[0] - 1, min(VIDEO_FRAMES_LOGGED, rendered.shape[0])).long()
            self.writer.add_images("reconstruction/frames", _displayable(rendered[chosen].clamp(0, 1)), last,
                                   dataformats="NHWC")
        elif dims == 1 and isinstance(report.get("audio"), dict):  # a clip: its first channel, in [-1, 1]
            samples = rendered[:, 0].clamp(0, 1) * 2.0 - 1.0
            self.writer.add_audio("reconstruction", samples, last, sample_rate=report["audio"]["rate"])

    def _figures(self, files: dict, out_dir: Path, last: int) -> None:
        from PIL import Image

        for role, name in files.items():
            if role in ("target", "reconstruction"):
                continue  # logged from the tensors themselves
            if str(name).lower().endswith(PICTURE_SUFFIXES) and (out_dir / name).is_file():
                with Image.open(out_dir / name) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self.writer.add_image(f"figures/{role}", pixels, last, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def _displayable(pixels: torch.Tensor) -> torch.Tensor:
    """Channels TensorBoard draws: grey, RGB or RGBA (grey plus alpha shows as grey)."""
    return pixels[..., :1] if pixels.shape[-1] == 2 else pixels


def with_log(on_progress, log: FitLog | None):
    """One progress callback calling ``on_progress`` (the progress bar, or None) and the log's."""
    if log is None:
        return on_progress
    if on_progress is None:
        return log.progress

    def both(state: FitProgress) -> None:
        on_progress(state)
        log.progress(state)

    return both


def open_log(root: Path | None, out_dir: Path, run_root: Path) -> FitLog | None:
    """The TensorBoard run of the input written to ``out_dir``, under ``root`` (--tensorboard), named like its
    folder: the run folder's name, and the input's sub-folder when a run has several inputs."""
    if root is None:
        return None
    return FitLog(Path(root) / Path(out_dir).resolve().relative_to(Path(run_root).resolve().parent))

