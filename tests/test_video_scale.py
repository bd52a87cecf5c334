"""Video at real sizes, checked on small clips: the outputs are encoded as a stream of frames (never the whole clip
in memory, never a partial file left behind), and the set-up costs follow what is needed."""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from helpers import same_h264_stream

import inr_cli.media.video as video
from inr_cli.files import atomic_output_path, remove_written_on_failure
from inr_core.errors import UserError


def clip(frames=5, height=6, width=8, channels=3, seed=0) -> torch.Tensor:
    """A reconstruction as the fit hands it over: (T, H, W, C) float32, a little outside [0, 1] here and there."""
    return torch.rand(frames, height, width, channels, generator=torch.Generator().manual_seed(seed)) * 1.2 - 0.1


def whole_clip_levels(frames: torch.Tensor) -> np.ndarray:
    """The whole clip rounded to 8-bit RGB at once, as the files were written before they were streamed."""
    levels = np.rint(frames.clamp(0, 1).numpy() * 255.0).astype(np.uint8)
    return np.repeat(levels, 3, axis=3) if levels.shape[3] == 1 else levels


def encoded_in_memory(frames: torch.Tensor, fps: float) -> tuple[bytes, bytes]:
    """The MKV and MP4 as they were written before they were streamed: the whole clip rounded to 8 bits, each file
    encoded by imageio into bytes."""
    levels = whole_clip_levels(frames)
    mkv = iio.imwrite("<bytes>", levels, extension=".mkv", plugin="pyav", codec="ffv1", fps=fps,
                      out_pixel_format="bgr0")
    if levels.shape[1] % 2 or levels.shape[2] % 2:
        levels = np.pad(levels, ((0, 0), (0, levels.shape[1] % 2), (0, levels.shape[2] % 2), (0, 0)), mode="edge")
    mp4 = iio.imwrite("<bytes>", levels, extension=".mp4", plugin="pyav", codec="libx264", fps=fps,
                      out_pixel_format="yuv420p")
    return mkv, mp4


@pytest.mark.parametrize("shape, fps", [((5, 6, 8, 3), 25.0), ((4, 5, 7, 1), 29.97)])
def test_streamed_videos_hold_the_frames_written_whole_before(tmp_path, shape, fps):
    frames = clip(*shape)
    video.write_videos(tmp_path / "r.mp4", tmp_path / "r.mkv", frames, fps)
    old_mkv, old_mp4 = encoded_in_memory(frames, fps)
    # H.264: the same encoder settings give the same stream: the same size and decoded frames (the MP4's header
    # stamps the second it was written, so two encodings a second apart differ there). FFV1 in Matroska: the same
    # decoded frames (the container draws a random segment UID, so two encodings never share every byte).
    assert same_h264_stream((tmp_path / "r.mp4").read_bytes(), old_mp4)
    (tmp_path / "old.mkv").write_bytes(old_mkv)
    assert np.array_equal(video.read_lossless(tmp_path / "r.mkv"), video.read_lossless(tmp_path / "old.mkv"))
    assert np.array_equal(video.read_lossless(tmp_path / "r.mkv"), whole_clip_levels(frames))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mkv", "r.mkv", "r.mp4"]


def test_the_encoder_is_fed_one_frame_at_a_time(tmp_path, monkeypatch):
    events = []
    rounded, fed = video._uint8_frame, video._video_frame

    def rounding(frame):
        events.append(("round", tuple(frame.shape)))
        return rounded(frame)

    def feeding(frame):
        events.append(("feed", frame.shape))
        return fed(frame)

    monkeypatch.setattr(video, "_uint8_frame", rounding)
    monkeypatch.setattr(video, "_video_frame", feeding)
    video.write_videos(tmp_path / "r.mp4", tmp_path / "r.mkv", clip(4, 5, 7), 25.0)
    # Each frame is rounded and handed to the encoder before the next is rounded: never the whole clip at once.
    # The MKV keeps 7x5, the MP4 gets the even sides H.264 needs, from a frame-sized pad.
    per_file = [("round", (5, 7, 3)), ("feed", (5, 7, 3))] * 4 + [("round", (5, 7, 3)), ("feed", (6, 8, 3))] * 4
    assert events == per_file


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("writer", ["write_lossless", "write_viewable"])
def test_a_failure_half_way_leaves_no_partial_and_no_temporary_file(tmp_path, monkeypatch, failure, writer):
    target = tmp_path / ("r.mkv" if writer == "write_lossless" else "r.mp4")
    target.write_bytes(b"an earlier file")
    calls = []
    fed = video._video_frame

    def failing(frame):
        calls.append(1)
        if len(calls) == 3:  # a frame after two were encoded (the temporary file holds some of the clip)
            raise failure("stopped")
        return fed(frame)

    monkeypatch.setattr(video, "_video_frame", failing)
    with pytest.raises(failure):
        getattr(video, writer)(target, clip(6, 16, 16), 25.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    assert target.read_bytes() == b"an earlier file"


def test_a_full_disk_while_encoding_is_one_line_naming_the_file(tmp_path, monkeypatch):
    fed = video._video_frame
    calls = []

    def disk_full(frame):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return fed(frame)

    monkeypatch.setattr(video, "_video_frame", disk_full)
    with pytest.raises(UserError, match=r"r\.mkv: cannot write: No space left on device"):
        video.write_lossless(tmp_path / "r.mkv", clip(4), 25.0)
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_path(tmp_path):
    path = tmp_path / "out.bin"
    with remove_written_on_failure() as written:
        with atomic_output_path(path) as temporary:
            # In the same folder, named as the run folder's sweep of stale temporaries expects.
            assert temporary.parent == tmp_path and temporary.name.startswith(".out.bin.")
            assert temporary.name.endswith(".tmp")
            assert not path.exists()
            temporary.write_bytes(b"done")
        assert written == [path]
    assert path.read_bytes() == b"done" and os.listdir(tmp_path) == ["out.bin"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    with pytest.raises(ValueError):
        with atomic_output_path(path) as temporary:
            temporary.write_bytes(b"half")
            raise ValueError
    assert path.read_bytes() == b"done" and os.listdir(tmp_path) == ["out.bin"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("source", ["file", "folder"])
def test_resized_frames_are_the_image_resize_as_matrix_products(tmp_path, monkeypatch, source):
    import inr_cli.media.images as images
    from inr_cli.media.images import shrink_to_longest_side

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (3, 60, 90, 3), dtype=np.uint8)
    if source == "file":
        iio.imwrite(tmp_path / "c.mkv", frames, plugin="pyav", codec="ffv1", fps=10, out_pixel_format="bgr0")
        path = tmp_path / "c.mkv"
    else:
        path = tmp_path / "frames"
        path.mkdir()
        for index, frame in enumerate(frames):
            iio.imwrite(path / f"{index:02d}.png", frame)
    expected = [shrink_to_longest_side(frame.astype(np.float32) / 255.0, 32) for frame in frames]

    def whole_frame_resize(*args, **kwargs):
        raise AssertionError("a decoded frame went through the whole-frame scikit-image resize")

    monkeypatch.setattr(video, "shrink_to_longest_side", whole_frame_resize)
    monkeypatch.setattr(images, "resize_pixels", whole_frame_resize)  # the image reader's, for a folder's frames
    read = video.read_video(str(path), resize=32)
    assert read.frames.shape == (3, 21, 32, 3) and read.frames.dtype == torch.float32
    # Within one float32 rounding of scikit-image's (which filters in float32); in [0, 1].
    assert np.abs(read.frames.numpy() - np.stack(expected)).max() <= 2.0 ** -24
    assert read.frames.min() >= 0 and read.frames.max() <= 1
    assert "frames resized to 32x21 (--resize 32)" in read.notes
    # A --resize the frames are within already changes nothing, and says nothing of resizing.
    unchanged = video.read_video(str(path), resize=90)
    assert unchanged.frames.shape == (3, 60, 90, 3) and not any("resize" in note for note in unchanged.notes)


def test_a_frame_folder_reads_only_the_selected_frames(tmp_path, monkeypatch):
    for index in range(6):
        iio.imwrite(tmp_path / f"{index:02d}.png", np.full((4, 5, 3), 40 * index, dtype=np.uint8))
    read_files = []
    real_read_image = video.read_image

    def recorded(source, **kwargs):
        read_files.append(Path(source).name)
        return real_read_image(source, **kwargs)

    monkeypatch.setattr(video, "read_image", recorded)
    clip = video.read_video(str(tmp_path), frames="2:4")
    assert read_files == ["02.png", "03.png"]
    assert np.allclose(clip.frames[:, 0, 0, 0].numpy(), [80 / 255, 120 / 255])


def test_a_target_is_written_from_the_signals_values_a_frame_at_a_time(tmp_path):
    from training.fitting.signal import video_signal

    frames = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (3, 6, 8, 3)).astype(np.float32) / 255)
    signal = video_signal(frames)
    unit = video.UnitFrames(signal.values, signal.grid_shape)
    assert len(unit) == 3 and all(torch.equal(unit[t], signal.unit_grid()[t]) for t in range(3))
    video.write_viewable(tmp_path / "view.mp4", unit, 25.0)
    video.write_viewable(tmp_path / "whole.mp4", signal.unit_grid(), 25.0)
    assert same_h264_stream((tmp_path / "view.mp4").read_bytes(), (tmp_path / "whole.mp4").read_bytes())


def test_a_fitted_clip_holds_its_frames_once_as_the_signals_values(tmp_path):
    from inr_cli.modalities.video import VIDEO, VideoOptions
    from training.fitting.signal import video_signal

    frames = np.random.default_rng(5).integers(0, 256, (4, 10, 14, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "c.mkv", frames, plugin="pyav", codec="ffv1", fps=10, out_pixel_format="bgr0")
    decoded = video.read_video(str(tmp_path / "c.mkv")).frames
    whole = video_signal(decoded)
    loaded = VIDEO.load(str(tmp_path / "c.mkv"), VideoOptions(), 0)
    # The same signal as scaling the clip whole; the loaded frames are its values seen in [0, 1], not a copy.
    assert torch.equal(loaded.signal.values, whole.values) and loaded.signal.grid_shape == whole.grid_shape
    assert type(loaded.signal) is type(whole) and loaded.signal.train.is_whole
    assert isinstance(loaded.video.frames, video.UnitFrames)
    assert loaded.video.frames.values.data_ptr() == loaded.signal.values.data_ptr()
    assert loaded.video.info() == video.LoadedVideo(decoded, 10.0).info()
    # The frame strip shows the same 8-bit target as from the decoded frames.
    reconstruction = clip(4, 10, 14, seed=6)
    shown = video.frame_strip(loaded.video.frames, reconstruction, [20.0] * 4)
    assert np.array_equal(np.asarray(shown), np.asarray(video.frame_strip(decoded, reconstruction, [20.0] * 4)))
    # Scaled a frame at a time: the values of scaling the whole clip at once, in colour and in gray.
    assert torch.equal(whole.values, decoded.reshape(-1, 3).float() * 2.0 - 1.0)
    gray = decoded[..., :1]
    assert torch.equal(video_signal(gray).values, gray.reshape(-1, 1).float() * 2.0 - 1.0)


def test_frames_are_stacked_letting_go_of_each():
    frames = [np.full((2, 3, 1), index, dtype=np.float32) for index in range(3)]
    expected = np.stack(frames)
    stacked = video._stack_letting_go(frames)
    assert np.array_equal(stacked, expected) and stacked.dtype == np.float32 and frames == [None] * 3


def test_frame_index_counts_frames_without_sorting_the_points(monkeypatch):
    from training.fitting.evaluate import FrameIndex
    from training.fitting.signal import SubGrid, video_signal

    signal = video_signal(torch.rand(5, 3, 4, 3))
    rng = np.random.default_rng(7)
    parts = [SubGrid.whole(signal.grid_shape), SubGrid(torch.from_numpy(rng.choice(60, 25, replace=False)), (25,)),
             SubGrid(torch.tensor([59, 0, 13, 12, 50]), (5,))]  # frames 0, 1 and 4 only, out of order
    expected = []
    for part in parts:
        _, frame = torch.unique(signal.frames_of(part.index), return_inverse=True)
        expected.append((frame, torch.bincount(frame).double() * 3))
    monkeypatch.setattr(torch, "unique", lambda *args, **kwargs: pytest.fail("sorted every point's frame"))
    for part, (frame, values) in zip(parts, expected):
        index = FrameIndex.of(signal, part, torch.device("cpu"))
        assert torch.equal(index.frame, frame) and torch.equal(index.values, values)


class _Wave(torch.nn.Module):
    """A stand-in network: smooth values a little beyond [-1, 1], so rounding and clamping both matter."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward_with_stats(self, coords):
        waves = torch.stack([torch.sin(3 * coords.sum(-1) + k) * 1.1 for k in range(self.channels)], dim=-1)
        return waves, None


@pytest.mark.parametrize("channels, suffix", [(3, ".mkv"), (1, ".mkv"), (3, ".mp4")])
def test_a_sample_is_rendered_to_8_bit_levels_and_streamed(tmp_path, monkeypatch, channels, suffix):
    from inr_cli.modalities.base import FittedNetwork, SampleTarget
    from inr_cli.modalities.video import VIDEO

    network = FittedNetwork(_Wave(channels), channels, torch.device("cpu"), 50, {}, None)
    target = SampleTarget((4, 6, 10), "s" + suffix, (".mp4", ".mkv"), 12.0)
    VIDEO.write_sample(network, target, tmp_path / ("new" + suffix))
    # As before: the float render, then each writer rounding it.
    (video.write_lossless if suffix == ".mkv" else video.write_viewable)(tmp_path / ("old" + suffix),
                                                                         network.render(target.grid), 12.0)
    if suffix == ".mp4":
        assert same_h264_stream((tmp_path / "new.mp4").read_bytes(), (tmp_path / "old.mp4").read_bytes())
    else:
        assert np.array_equal(video.read_lossless(tmp_path / "new.mkv"), video.read_lossless(tmp_path / "old.mkv"))
    assert VIDEO.render_bytes_per_value == 2
    # No float render of the whole clip: the writer is handed uint8 levels.
    handed = []
    streamed = video._write_streamed
    monkeypatch.setattr(video, "_write_streamed", lambda path, kind, frames, fps: (handed.append(frames),
                                                                                  streamed(path, kind, frames, fps)))
    VIDEO.write_sample(network, target, tmp_path / ("again" + suffix))
    assert handed[0].dtype == np.uint8 and handed[0].shape == (4, 6, 10, channels)
