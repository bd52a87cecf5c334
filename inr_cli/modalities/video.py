"""Video: (t, y, x) in [-1, 1]^3, trained on random minibatches of points; quality is the mean PSNR over frames."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inr_cli.figures.captions import run_caption
from inr_cli.media.video import (DEFAULT_MAX_VIDEO_PIXELS, LoadedVideo, eight_bit_levels, parse_frame_range,
                                 read_video, write_frame_psnr_plot, write_frame_strip, write_lossless, write_videos,
                                 write_viewable)
from inr_cli.modalities.base import (FittedNetwork, LoadedSignal, Modality, ModalityOptions, Outputs, SampleRequest,
                                     SampleTarget, register_modality)
from inr_cli.modalities.image import sample_size
from inr_cli.progress import stderr_console
from inr_cli.reports import db_text
from inr_core.errors import check
from training.fitting.fit import FitResult
from training.fitting.recipes import Recipe, frequency_for_side, papers_learning_rate
from training.fitting.signal import GridSignal, video_signal
from training.fitting.render import render_grid_as
from training.metrics import psnr_from_sums, squared_error_sum, to_unit_range, video_psnr

# The implicit-layer paper trains on 65,536 random points per step, never the whole clip at once.
POINTS_PER_STEP = 65536
VIEWABLE = "reconstruction.mp4"
LOSSLESS = "reconstruction.mkv"
STRIP = "frames.png"
FRAME_PLOT = "psnr_frames.png"


@dataclass(frozen=True)
class VideoOptions(ModalityOptions):
    frames: str | None = None  # START:STOP, 0-based, STOP excluded
    resize: int | None = None  # downscale frames so the longest side is this many pixels
    max_pixels: int = DEFAULT_MAX_VIDEO_PIXELS  # frames x height x width kept, checked before decoding

    def validate(self) -> None:
        parse_frame_range(self.frames)  # raises on a malformed range
        check(self.resize is None or self.resize >= 1, "resize", f"must be at least 1, got {self.resize}")
        check(self.max_pixels >= 1, "max_pixels", f"must be at least 1, got {self.max_pixels}")


@dataclass
class LoadedVideoSignal(LoadedSignal):
    video: LoadedVideo
    source: str


class VideoModality(Modality):
    summary_metrics = ("psnr", "psnr_std", "psnr_whole_clip", "bits_per_point", "psnr_fp16_weights")
    name = "video"
    options_type = VideoOptions
    sample_settings = ("scale", "width", "height", "fps")
    # A sample is rendered to 8-bit levels (1 byte a value) and encoded a frame at a time: 2 leaves room for the
    # render's bands and the encoder's own buffers (about 0.5 GB at 1080p, whatever the length).
    render_bytes_per_value = 2

    def load(self, source: str, options: VideoOptions, seed: int) -> LoadedVideoSignal:
        video = read_video(source, frames=options.frames, resize=options.resize, max_pixels=options.max_pixels)
        signal = video_signal(video.frames)
        video.as_signal_frames(signal.values)  # the decoded frames are let go: the signal's values are the clip
        return LoadedVideoSignal(signal, video.info(), video.notes, video, source)

    def recipe(self, model: str, signal: GridSignal) -> Recipe:
        # The image rules on the frame's longest side, at the papers' video learning rates (no size boost).
        return Recipe(papers_learning_rate(model), frequency_for_side(model, max(signal.grid_shape[-2:])),
                      POINTS_PER_STEP)

    def metrics(self, loaded: LoadedVideoSignal, result: FitResult) -> dict:
        # Against the frames as the fit holds them (the signal's), so that ``psnr`` is its final evaluation's, bit
        # for bit, and its history's last entry (float32 rounding of the [-1, 1] scaling apart, the frames read).
        # Frame by frame, a piece at a time, against the signal's [-1, 1] values read in place: no [0, 1] copy of the
        # clip (unit_grid) and no float64 one; the whole clip's PSNR is the same sums added over the frames.
        signal = loaded.signal
        count, channels = signal.grid_shape[0], signal.channels
        rendered = result.final.reconstruction.reshape(count, -1, channels)
        values = signal.values.reshape(count, -1, channels)
        sums = [squared_error_sum(rendered[t], values[t], target_pm1=True) for t in range(count)]
        per_frame = [psnr_from_sums(total, size) for total, size in sums]
        finite = [p for p in per_frame if math.isfinite(p)]
        return {
            # The papers' video PSNR, the mean over frames, is the headline; the whole clip's stays beside it.
            "psnr": video_psnr(per_frame),
            "ssim": None, "psnr_holdout": None, "ssim_holdout": None,
            "psnr_std": statistics.pstdev(finite) if len(finite) > 1 else 0.0,
            "psnr_frames": per_frame,
            "psnr_whole_clip": psnr_from_sums(math.fsum(total for total, _ in sums), sum(size for _, size in sums)),
        }

    def write_outputs(self, loaded: LoadedVideoSignal, result: FitResult, out_dir: Path, rendered: object = None
                      ) -> Outputs:
        reconstruction, video = result.final.reconstruction, loaded.video
        write_videos(out_dir / VIEWABLE, out_dir / LOSSLESS, reconstruction, video.fps)
        metrics = self.metrics(loaded, result)
        caption = run_caption(loaded.source, result.config, video_quality(metrics), result.kept_step)
        write_frame_strip(out_dir / STRIP, video.frames, reconstruction, metrics["psnr_frames"], caption=caption)
        write_frame_psnr_plot(out_dir / FRAME_PLOT, metrics["psnr_frames"],
                              f"{Path(loaded.source).name}: {result.config.model}")
        return Outputs({"reconstruction": VIEWABLE, "reconstruction_lossless": LOSSLESS, "frames": STRIP,
                        "psnr_frames_plot": FRAME_PLOT})

    def summary_line(self, report: dict) -> str:
        return f"  {video_quality(report)[0]}"

    def sample_target(self, info: dict, request: SampleRequest) -> SampleTarget:
        """At --fps, as many frames as keep the clip's duration; frames sized as images are."""
        fps = request.fps or info["fps"]
        count = max(1, round(info["frames"] * fps / info["fps"]))
        height, width = sample_size(info, request)
        return SampleTarget((count, height, width), f"sample-{width}x{height}-{fps:g}fps.mp4", (".mp4", ".mkv"), fps)

    def write_sample(self, network: FittedNetwork, target: SampleTarget, path: Path) -> None:
        viewable = path.suffix.lower() != ".mkv"
        _frames, height, width = target.grid
        if viewable and (height % 2 or width % 2):  # H.264's 4:2:0 chroma: write_viewable repeats an edge
            stderr_console.print(f"inr: warning: {path}: H.264 frames need even sides, so the {width}x{height} "
                                 f"frames are written as {width + width % 2}x{height + height % 2} (the last "
                                 f"column or row repeated); a .mkv keeps {width}x{height}", markup=False,
                                 soft_wrap=True)
        write = write_viewable if viewable else write_lossless
        # Rendered band by band straight to the files' 8-bit levels (1 byte a value, where the float render was 4
        # and the writers then held the clip again): the same levels as rounding network.render(grid).
        levels = render_grid_as(network.model, target.grid, network.out_features, network.device, network.chunk,
                                lambda values: eight_bit_levels(to_unit_range(values)), np.uint8)
        write(path, levels, target.rate)


def video_quality(metrics: dict) -> list[str]:
    """The caption's (and the summary's) quality entry of a video fit, from its report entries."""
    return [f"PSNR {db_text(metrics['psnr'])} ± {metrics['psnr_std']:.2f} over {len(metrics['psnr_frames'])} frames"]


VIDEO = register_modality(VideoModality())
