"""`inr fit video`: read frames into a (t, y, x) Signal; write the reconstructed video, a strip and per-frame PSNR."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from inr_cli.fitting import LoadedSignal, run_fits
from inr_cli.media.video import read_video, write_frame_psnr_plot, write_frame_strip, write_videos
from inr_core.errors import UserError
from training.fitting.fit import FitConfig, FitResult
from training.metrics import psnr, psnr_per_frame
from training.fitting.signal import video_signal

VIEWABLE = "reconstruction.mp4"
LOSSLESS = "reconstruction.mkv"
STRIP = "frames.png"
FRAME_PLOT = "psnr_frames.png"


def load_video(source: str, *, frames: str | None, resize: int | None) -> LoadedSignal:
    video = read_video(source, frames=frames, resize=resize)
    signal = video_signal(video.frames)

    def write_outputs(out_dir: Path, result: FitResult) -> dict[str, str]:
        reconstruction = result.final.reconstruction
        write_videos(out_dir / VIEWABLE, out_dir / LOSSLESS, reconstruction, video.fps)
        write_frame_strip(out_dir / STRIP, video.frames, reconstruction)
        write_frame_psnr_plot(out_dir / FRAME_PLOT, psnr_per_frame(reconstruction, video.frames),
                              f"{Path(source).name}: {result.config.model}")
        return {"reconstruction": VIEWABLE, "reconstruction_lossless": LOSSLESS, "frames": STRIP,
                "psnr_frames_plot": FRAME_PLOT}

    def metrics(result: FitResult) -> dict:
        per_frame = psnr_per_frame(result.final.reconstruction, video.frames)
        finite = [p for p in per_frame if math.isfinite(p)]
        mean = statistics.fmean(per_frame) if len(finite) == len(per_frame) else math.inf
        return {"psnr": mean,  # the papers' video PSNR: the mean over frames
                "psnr_std": statistics.pstdev(finite) if len(finite) > 1 else 0.0,
                "psnr_frames": per_frame,
                "psnr_whole_clip": psnr(result.final.reconstruction, video.frames)}

    return LoadedSignal(signal, video.info(), write_outputs, metrics, notes=video.notes)


def run_fit_video(paths: list[str], config: FitConfig, *, frames: str | None, resize: int | None, out: Path | None,
                  show_progress: bool, as_json: bool) -> int:
    if config.holdout != "none":
        raise UserError("--holdout applies to images only")
    if resize is not None and resize < 1:
        raise UserError(f"--resize must be at least 1, got {resize}")

    def load(source: str) -> LoadedSignal:
        return load_video(source, frames=frames, resize=resize)

    return run_fits(paths, config, load, default=None, out=out, show_progress=show_progress, as_json=as_json,
                    extra_config={"frames": frames, "resize": resize})
