"""Reading and writing video: imageio's pyav plugin for MP4/WebM/MKV, Pillow for GIF, or a folder of frames.

Frames are read one at a time (only the selected range is decoded into memory). Two files come back out:
an H.264 MP4 for watching, and an FFV1 MKV that is lossless (8-bit RGB), from which metrics can be recomputed.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image

from inr_cli.files import atomic_output_path
from inr_cli.media.images import (IMAGE_SUFFIXES, box_factor, drop_alpha, read_image, resize_stack,
                                  shrink_to_longest_side)
from inr_cli.media.limits import library_warnings_as_notes, refuse_if_over, split_span
from inr_core.errors import UserError, check

DEFAULT_FOLDER_FPS = 25.0
# Frames x height x width held once decoded (after --frames and --resize): 1.2 GB as the float RGB that is fitted.
DEFAULT_MAX_VIDEO_PIXELS = 100_000_000
LIMIT_ADVICE = "choose fewer frames (--frames) or smaller ones (--resize)"
# A GIF is a clip of its own (`inr fit video clip.gif`): one lying among a folder's frames is taken for that, a
# preview of them, rather than for one more frame.
FRAME_SUFFIXES = IMAGE_SUFFIXES - {".gif"}
# Why frames lose what the outputs cannot hold (both are written as 8-bit RGB): said in the notes, as images say it.
NO_ALPHA = "a video has no alpha channel"
DEEPER_THAN_OUTPUT = "samples deeper than 8 bits fitted as read, written back as 8-bit video"


@dataclass
class LoadedVideo:
    frames: torch.Tensor | UnitFrames  # (T, H, W, C) float32 in [0, 1], C = 1 or 3
    fps: float
    notes: list[str] = field(default_factory=list)

    def as_signal_frames(self, values: torch.Tensor) -> None:
        """From now on the frames are the fitted signal's ``values`` (``(points, C)`` in [-1, 1]) seen in [0, 1]:
        the decoded float32 frames are let go (see :class:`UnitFrames`)."""
        self.frames = UnitFrames(values, tuple(self.frames.shape[:3]))

    def info(self) -> dict:
        count, height, width, channels = self.frames.shape
        return {"kind": "video", "frames": count, "height": height, "width": width, "channels": channels,
                "fps": self.fps, "bit_depth": 8}


class UnitFrames:
    """A grid signal's ``[-1, 1]`` values seen as ``(T, H, W, C)`` frames in [0, 1], each frame mapped when it is
    asked for, exactly as ``GridSignal.unit_values`` maps the whole (``(v + 1) * 0.5``). A fitted clip's frames are
    these once its signal exists (:meth:`LoadedVideo.as_signal_frames`): a float32 [0, 1] copy beside the
    signal's values was 12 more bytes a pixel while fitting (1.2 GB for 48 frames of 1080p). The writers and the
    frame strip take them as they take a tensor, as does the run page's ``target.mp4``, which otherwise maps the
    whole clip (2.4 GB with its temporary, the peak of that run)."""

    def __init__(self, values: torch.Tensor, grid_shape: tuple[int, ...]):
        self.values = values.reshape(*grid_shape, -1)

    @property
    def shape(self) -> torch.Size:
        return self.values.shape

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> torch.Tensor:
        return (self.values[index] + 1.0) * 0.5


def parse_frame_range(text: str | None) -> slice:
    """'a:b' (Python slice of frame indices, either end optional) -> slice."""
    if not text:
        return slice(None)
    start, stop = split_span(text, "frames", int, "START:STOP, e.g. 0:60 or 30:")
    check((start is None or start >= 0) and (stop is None or stop >= 0), "frames",
          f"takes frame indices of 0 or more; got {text!r}")
    check(start is None or stop is None or stop > start, "frames",
          f"selects no frames: STOP must be past START; got {text!r}")
    return slice(start, stop)


def _to_unit(frame: np.ndarray, notes: list[str]) -> np.ndarray:
    """A decoded frame in [0, 1] without alpha; ``notes`` get what was lost (a frame from a folder comes from the
    image reader, in [0, 1] and its alpha dropped already, with its own notes)."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if np.issubdtype(frame.dtype, np.floating):
        unit = frame.astype(np.float32)  # frames read through our image reader are already in [0, 1]
    elif frame.dtype == np.uint16:
        notes.append(DEEPER_THAN_OUTPUT)
        unit = frame.astype(np.float32) / 65535.0
    else:
        unit = frame.astype(np.float32) / 255.0
    return drop_alpha(unit, notes, NO_ALPHA)


def _frame_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)


def _folder_frames(path: Path, max_pixels: int, resize: int | None, selection: slice):
    """``(index, pixels in [0, 1], notes)`` of each selected frame file (the others are not read), with the image
    reader's notes on it (its alpha, palette, orientation ...) and the depth its samples lose in the video written.

    Frames come back at their own size, to be shrunk as a video file's are (:func:`_shrink_frame`: the clip's
    resampling matrices, made once), except frames large enough to be box-reduced, which the reader shrinks while
    decoding them, as it does photos. Each frame resized alone by the image reader took 0.35-0.8 s at 1080p; with
    the clip's matrices, 0.05 s."""
    files = _frame_files(path)
    for index in range(len(files))[selection]:
        file = files[index]
        shrink_while_reading = resize is not None and box_factor(*_stored_size(file), resize) > 1
        image = read_image(str(file), alpha="drop", max_pixels=max_pixels,
                           shrink_to=resize if shrink_while_reading else None, why_alpha_dropped=NO_ALPHA)
        yield index, image.pixels.numpy(), image.notes + ([DEEPER_THAN_OUTPUT] if image.bit_depth > 8 else [])


def _stored_size(file: Path) -> tuple[int, int]:
    """(height, width) from an image file's header; (0, 0) where Pillow cannot tell (the reader then says why)."""
    try:
        with Image.open(file) as image:
            return image.height, image.width
    except Exception:  # noqa: BLE001 - a broken frame file is reported by read_image, with its own message
        return 0, 0


def _file_frames(path: Path, selection: slice):
    """``(index, frame, notes)`` of each selected frame, 8-bit RGB. A video file is decoded in order from its
    start and no further than the selection's end; frames before the selection are decoded but not converted to
    RGB, which is most of a frame's cost (600 frames of 1080p H.264 on 2 cores: 0.76 s to decode, 2.94 s to
    decode and convert), so ``--frames 5000:5030`` of a long clip does not convert 5,000 frames it drops."""
    with contextlib.ExitStack() as stack:
        if path.suffix.lower() == ".gif":
            frames, convert = iio.imiter(path, plugin="pillow"), None
        else:
            container = stack.enter_context(av.open(str(path)))
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"  # as imageio's reader decodes: threads share each frame, none run ahead
            frames, convert = container.decode(stream), rgb_array
        for index, frame in enumerate(frames):
            if selection.stop is not None and index >= selection.stop:
                return
            if selection.start is None or index >= selection.start:
                yield index, frame if convert is None else convert(frame), []


def rgb_array(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as an (H, W, 3) uint8 array, as imageio's PyAV reader gives it."""
    return frame.to_ndarray(format="rgb24")


def _fps(path: Path) -> float:
    if path.is_dir():
        return DEFAULT_FOLDER_FPS
    meta = iio.immeta(path, plugin="pillow" if path.suffix.lower() == ".gif" else "pyav")
    if "fps" in meta and meta["fps"]:
        return float(meta["fps"])
    if meta.get("duration"):  # GIF: milliseconds per frame
        return 1000.0 / float(meta["duration"])
    return DEFAULT_FOLDER_FPS


def _claimed_size(path: Path) -> tuple[int, int, int]:
    """(frames, height, width) as the container or folder states them, before decoding; frames is 0 where unknown."""
    if path.is_dir():
        files = _frame_files(path)
        if not files:
            return 0, 0, 0
        with Image.open(files[0]) as first:  # only the header is read
            return len(files), first.height, first.width
    if path.suffix.lower() == ".gif":
        with Image.open(path) as gif:
            return gif.n_frames, gif.height, gif.width
    with av.open(str(path)) as container:
        if not container.streams.video:  # an audio file, say: readable, but there is no picture to fit
            raise UserError(f"{path}: no video stream in it (streams: "
                            f"{', '.join(stream.type for stream in container.streams) or 'none'})")
        stream = container.streams.video[0]
        count = stream.frames
        if not count and container.duration:  # Matroska and WebM often leave the count out: estimate it
            count = round(container.duration / av.time_base * float(stream.average_rate or 0))
        return count, stream.codec_context.height, stream.codec_context.width


def _check_size(source: str, count: int, height: int, width: int, resize: int | None, max_pixels: int,
                at_least: bool = False) -> None:
    """Refuse ``count`` frames of ``height x width`` (shrunk by ``resize``) if they would hold over ``max_pixels``."""
    if resize is not None and max(height, width) > resize:
        scale = resize / max(height, width)
        height, width = max(1, round(height * scale)), max(1, round(width * scale))
    frames = f"{'at least ' if at_least else ''}{count} frames of {width}x{height}"
    refuse_if_over(source, count * height * width, max_pixels, "--max-pixels",
                   f"{frames} = {count * height * width:,} pixels", LIMIT_ADVICE)


def read_video(source: str, frames: str | None = None, resize: int | None = None,
               max_pixels: int = DEFAULT_MAX_VIDEO_PIXELS) -> LoadedVideo:
    """The selected frames of ``source``; refused before decoding when the frames kept would hold more than
    ``max_pixels`` pixels, as far as the file tells their number (and while decoding, where it does not)."""
    path = Path(source)
    if not path.exists():
        raise UserError(f"{source}: no such file or folder")
    selection = parse_frame_range(frames)
    notes: list[str] = []
    try:
        with library_warnings_as_notes(notes):
            chosen, fps = _decode(path, source, selection, resize, max_pixels, notes)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - decoders raise many types on bad files
        raise UserError(f"{source}: not a readable video (truncated or corrupt?); check that it plays, or "
                        "re-encode it") from None
    if not chosen:
        raise UserError(f"{source}: no frames" + (f" in --frames {frames}" if frames else ""))
    if path.is_dir():
        notes.append(f"frames from a folder: {DEFAULT_FOLDER_FPS:g} fps assumed")
    chosen = _gray_to_rgb_if_mixed(chosen, notes)
    return LoadedVideo(torch.from_numpy(_stack_letting_go(chosen)), fps, notes)


def _stack_letting_go(frames: list[np.ndarray]) -> np.ndarray:
    """``np.stack(frames)``, each frame let go of once copied: the clip is held about once while it is stacked,
    not twice (the list and the stack: 2.4 GB for 48 frames of 1080p)."""
    stacked = np.empty((len(frames), *frames[0].shape), dtype=np.result_type(*frames))
    for index in range(len(frames)):
        stacked[index], frames[index] = frames[index], None
    return stacked


def _gray_to_rgb_if_mixed(frames: list[np.ndarray], notes: list[str]) -> list[np.ndarray]:
    """Frames of one clip may mix gray and colour (a folder's files, each read as 1 or 3 channels with alpha
    dropped); the gray ones are then repeated into RGB, so the clip stacks as one."""
    gray = sum(frame.shape[2] == 1 for frame in frames)
    if gray in (0, len(frames)):
        return frames
    notes.append(f"{gray} gray frame{'s' if gray > 1 else ''} of {len(frames)} turned RGB to match the colour ones")
    return [np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame for frame in frames]


def _decode(path: Path, source: str, selection: slice, resize: int | None, max_pixels: int, notes: list[str]
            ) -> tuple[list[np.ndarray], float]:
    """The selected frames, each in [0, 1] and resized, and the frame rate; ``notes`` get what was done to them
    (:func:`_clip_notes`)."""
    claimed, height, width = _claimed_size(path)
    if claimed:
        _check_size(source, len(range(claimed)[selection]), height, width, resize, max_pixels)
    fps = _fps(path)
    stream = (_folder_frames(path, max_pixels, resize, selection) if path.is_dir() else
              _file_frames(path, selection))
    chosen: list[np.ndarray] = []
    frame_notes: list[list[str]] = []
    shrunk_here = False
    for index, frame, read_notes in stream:
        frame_notes.append(list(read_notes))
        frame = _to_unit(frame, frame_notes[-1])
        if resize is not None:
            shrunk = _shrink_frame(frame, resize)
            # (A folder's frame large enough to be box-reduced was shrunk by the reader, which noted it.)
            shrunk_here = shrunk_here or shrunk.shape != frame.shape
            frame = shrunk
        if chosen and frame.shape[:2] != chosen[0].shape[:2]:
            raise UserError(f"{source}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first is "
                            f"{chosen[0].shape[1]}x{chosen[0].shape[0]}; all frames must share one size")
        chosen.append(frame)
        if len(chosen) * frame.shape[0] * frame.shape[1] > max_pixels:  # the container understated its length
            _check_size(source, len(chosen), frame.shape[0], frame.shape[1], None, max_pixels, at_least=True)
    notes += _clip_notes(frame_notes)
    if shrunk_here:
        notes.append(f"frames resized to {chosen[0].shape[1]}x{chosen[0].shape[0]} (--resize {resize})")
    return chosen, fps


def _shrink_frame(frame: np.ndarray, longest: int) -> np.ndarray:
    """:func:`shrink_to_longest_side` of one decoded frame, as two matrix products in float64.

    That resize (a Gaussian anti-aliasing filter, then a cubic spline, scikit-image's) is linear and separable:
    ``A X B^T`` before its clipping (the image reader's :func:`resize_stack`, in float64). Whole, it cost
    0.5-0.8 s a 1080p frame (2.3 minutes before the first step for 300 frames); this costs about a fifth of that.
    The values differ from scikit-image's by at most one float32 rounding (2**-24: it computes its filter and
    spline in float32 for float32 frames), in about a quarter of the values of a 1080p frame. Frames large enough to be
    box-reduced first (over 4 MP) take the image reader's path (a folder's are shrunk by the reader itself). The
    matrices are made once for a clip (cached): for 1080p frames about 0.5 s, then 0.05 s a frame."""
    height, width = frame.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1.0:
        return frame
    if box_factor(height, width, longest) > 1:
        return shrink_to_longest_side(frame, longest)
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    return resize_stack(frame[None], shape, torch.float64)[0].astype(np.float32)


def _clip_notes(frame_notes: list[list[str]]) -> list[str]:
    """Each frame's notes once for the clip, in the order they first came, with how many frames they concern."""
    counts = Counter(note for notes in frame_notes for note in dict.fromkeys(notes))
    total = len(frame_notes)
    return [note if count == total == 1 else f"{count} of {total} frames: {note}" for note, count in counts.items()]


# How each file is encoded (as imageio's pyav plugin wrote them from a whole array before, setting for setting):
# the container, the codec and the pixel format the codec stores.
LOSSLESS_FORMAT = ("matroska", "ffv1", "bgr0")
VIEWABLE_FORMAT = ("mp4", "libx264", "yuv420p")


def eight_bit_levels(values: torch.Tensor) -> np.ndarray:
    """Values in [0, 1] (any shape, float32) rounded to the 8-bit levels the video files store."""
    return np.rint(values.clamp(0, 1).numpy() * 255.0).astype(np.uint8)


def _uint8_frame(frame: torch.Tensor | np.ndarray) -> np.ndarray:
    """One ``(H, W, C)`` frame in [0, 1] as 8-bit RGB (gray repeated), rounded as the whole clip rounded at once
    would be: only a frame's float32 temporaries exist, never the clip's. A uint8 array is taken as levels already
    rounded (:func:`eight_bit_levels`, as a sample is rendered)."""
    levels = frame if isinstance(frame, np.ndarray) and frame.dtype == np.uint8 else eight_bit_levels(frame)
    return np.repeat(levels, 3, axis=2) if levels.shape[2] == 1 else levels


def _even_sides(frame: np.ndarray) -> np.ndarray:
    # 4:2:0 chroma needs even sides: repeat the last row/column where needed (a copy of the frame only then).
    if frame.shape[0] % 2 or frame.shape[1] % 2:
        return np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
    return frame


def _video_frame(frame: np.ndarray) -> av.VideoFrame:
    """The encoder's frame of one 8-bit RGB array (a function of its own so that tests can watch what is fed)."""
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")


class _FrameEncoder:
    """A video file encoded as its frames come, one at a time: nothing of the clip's size is held (a 1080p frame
    is 6 MB; the whole 8-bit clip, and each file encoded in memory, were each of the clip's size before). The
    stream is set up as imageio's pyav writer sets it up (frame rate, time base, pts), so the files are the same.
    On success the encoder is flushed and the file closed; on a failure it is closed without flushing (what it
    wrote is a temporary file that :func:`atomic_output_path` removes)."""

    def __init__(self, path: Path, kind: tuple[str, str, str], fps: float):
        container_format, codec, pixel_format = kind
        rate = Fraction.from_float(fps).limit_denominator(65535)  # as imageio: av refuses some float rates
        self.container = av.open(str(path), mode="w", format=container_format)
        try:
            self.stream = self.container.add_stream(codec, rate)
            self.stream.time_base = Fraction(1 / rate).limit_denominator(2 ** 16 - 1)
            self.stream.pix_fmt = pixel_format
        except BaseException:
            self.container.close()
            raise
        self.count = 0

    def add(self, frame: np.ndarray) -> None:
        av_frame = _video_frame(frame)
        if self.stream.codec_context.time_base:
            av_frame.time_base = self.stream.codec_context.time_base
        av_frame.pts = self.count
        self.count += 1
        if not self.stream.codec_context.is_open:  # the first frame opens the codec at its size
            self.stream.width, self.stream.height = av_frame.width, av_frame.height
        for packet in self.stream.encode(av_frame):
            self.container.mux(packet)

    def __enter__(self) -> _FrameEncoder:
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                for packet in self.stream.encode():  # the frames the encoder still holds
                    self.container.mux(packet)
                self.container.close()
            else:
                with contextlib.suppress(Exception):  # the failure that got us here is the one to report
                    self.container.close()
        finally:
            # As imageio does on closing: PyAV keeps a swscale worker pool for the thread's life, which can
            # deadlock a later fork; dropping the reformatter joins its workers.
            local = getattr(av.video.frame, "_thread_local", None)
            if getattr(local, "reformatter", None) is not None:
                del local.reformatter


def _write_streamed(path: Path, kind: tuple[str, str, str], frames: torch.Tensor | UnitFrames | np.ndarray,
                    fps: float) -> None:
    """``path`` encoded from ``frames`` (``(T, H, W, C)`` in [0, 1], :class:`UnitFrames`, or uint8 levels already
    rounded) a frame at a time, each frame rounded to 8 bits as it is fed, into a temporary file renamed into place
    only when it is complete."""
    with atomic_output_path(path) as temporary, _FrameEncoder(temporary, kind, fps) as encoder:
        for index in range(len(frames)):
            levels = _uint8_frame(frames[index])
            encoder.add(_even_sides(levels) if kind == VIEWABLE_FORMAT else levels)


def write_lossless(path: Path, frames: torch.Tensor | UnitFrames | np.ndarray, fps: float) -> None:
    """FFV1 in Matroska: exact 8-bit RGB frames, for measuring."""
    _write_streamed(path, LOSSLESS_FORMAT, frames, fps)


def write_viewable(path: Path, frames: torch.Tensor | UnitFrames | np.ndarray, fps: float) -> None:
    """H.264 MP4 that any player opens."""
    _write_streamed(path, VIEWABLE_FORMAT, frames, fps)


def write_videos(mp4: Path, mkv: Path, frames: torch.Tensor, fps: float) -> None:
    """Lossless FFV1 MKV for measuring, then H.264 MP4 for watching, each atomically and a frame at a time. One after
    the other, not side by side: the encoders' own buffers (FFV1 about 0.2 GB, x264's look-ahead about 0.45 GB at
    1080p) would add up, where rounding each frame to 8 bits twice costs little."""
    write_lossless(mkv, frames, fps)
    write_viewable(mp4, frames, fps)


def read_lossless(path: Path) -> np.ndarray:
    return iio.imread(path, plugin="pyav")


STRIP_MAX_WIDTH = 3000  # pixels, all frames side by side
STRIP_MIN_FRAME = 160  # small frames are enlarged (whole pixels) to at least this width, so labels fit


def frame_strip(target: torch.Tensor | UnitFrames, reconstruction: torch.Tensor, psnrs: list[float], count: int = 6,
                caption: list[str] | tuple[str, ...] = ()) -> Image.Image:
    """Evenly spaced frames, each titled with its number: originals above, reconstructions below with their
    PSNR; the ``caption`` parts on top."""
    from inr_cli.figures.grids import tile_table
    from inr_cli.figures.layout import with_caption
    from inr_cli.reports import db_text

    picks = np.unique(np.linspace(0, len(target) - 1, min(count, len(target))).round().astype(int))
    height, width = target.shape[1:3]
    factor = max(1, -(-STRIP_MIN_FRAME // width))
    shown = (width * factor, height * factor)
    if shown[0] * len(picks) > STRIP_MAX_WIDTH:
        scale = STRIP_MAX_WIDTH / (width * len(picks))
        shown = (max(1, round(width * scale)), max(1, round(height * scale)))

    def tiles(frames: torch.Tensor) -> list[Image.Image]:
        resample = Image.Resampling.NEAREST if factor > 1 else Image.Resampling.LANCZOS
        return [Image.fromarray(_uint8_frame(frames[i])).resize(shown, resample) for i in picks]

    table = tile_table([tiles(target), tiles(reconstruction)], labels=["target", "reconstruction"],
                       notes=[None, [f"PSNR {db_text(psnrs[i])}" for i in picks]],
                       titles=[f"frame {i}" for i in picks])
    return with_caption(table, caption) if caption else table


def write_frame_strip(path: Path, target: torch.Tensor | UnitFrames, reconstruction: torch.Tensor, psnrs: list[float],
                      count: int = 6, caption: list[str] | tuple[str, ...] = ()) -> None:
    from inr_cli.figures.captions import caption_text
    from inr_cli.figures.layout import save_png

    save_png(path, frame_strip(target, reconstruction, psnrs, count, caption), caption_text(caption))


def write_frame_psnr_plot(path: Path, psnrs: list[float], title: str) -> None:
    """Each frame's PSNR against its frame number (counted from 0, as in the frame strip)."""
    from inr_cli.figures import PSNR_AXIS, clipped_psnr
    from inr_cli.figures.charts import Series, line_chart
    from inr_cli.figures.layout import save_png

    series = Series(np.arange(len(psnrs)), clipped_psnr(psnrs), width=2.0, marker="o")
    save_png(path, line_chart([series], title, "frame", PSNR_AXIS, size=(700, 350), integer_x=True),
             f"PSNR per frame · {title}")
