"""16-bit colour PNGs: every layout, filter and chunk that changes their samples, read as stored."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import png
import pytest

from inr_cli.media import png16
from inr_cli.media.images import read_image

RNG = np.random.default_rng(16)
NAMES = {2: "LA", 3: "RGB", 4: "RGBA"}


def samples(height: int, width: int, channels: int) -> np.ndarray:
    return RNG.integers(0, 65536, (height, width, channels)).astype(np.uint16)


def write_with_pypng(path: Path, array: np.ndarray, **options) -> Path:
    """pypng writes every row unfiltered."""
    height, width, channels = array.shape
    writer = png.Writer(width, height, greyscale=channels <= 2, alpha=channels in (2, 4), bitdepth=16, **options)
    with open(path, "wb") as handle:
        writer.write(handle, array.reshape(height, width * channels))
    return path


def write_with_ffmpeg(path: Path, array: np.ndarray, filter_name: str) -> Path:
    """FFmpeg's encoder with each row given ``filter_name`` (paeth, avg, sub, up, mixed), as most encoders do."""
    height, width, channels = array.shape
    pixel_format = {2: "ya16be", 3: "rgb48be", 4: "rgba64be"}[channels]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="image2pipe") as container:
        stream = container.add_stream("png", options={"pred": filter_name})
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        frame = av.VideoFrame(width, height, pixel_format)
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dtype=">u2", count=height * plane.line_size // 2)
        rows = rows.reshape(height, plane.line_size // 2)
        rows[:, :width * channels] = array.reshape(height, width * channels)  # a view of the frame's own memory
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    path.write_bytes(buffer.getvalue())
    return path


def with_chunk(path: Path, kind: bytes, body: bytes) -> Path:
    """The PNG with a chunk of ``kind`` inserted right after its header chunk (signature 8 bytes, IHDR 25)."""
    data = path.read_bytes()
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    path.write_bytes(data[:33] + chunk + data[33:])
    return path


def stored_samples(path: Path) -> np.ndarray:
    """What pypng reads, the reference for every filter and chunk."""
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    assert info["bitdepth"] == 16
    return np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, info["planes"])


def read_levels(path: Path) -> tuple[np.ndarray, str]:
    image = read_image(str(path))
    assert image.bit_depth == 16
    return np.rint(image.pixels.numpy().astype(np.float64) * 65535).astype(np.uint16), image.channel_names


@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("filter_name", ["paeth", "avg", "sub", "up", "mixed"])
def test_rows_under_every_filter_read_as_stored(tmp_path, channels, filter_name):
    # Odd sizes: FFmpeg pads its rows, and the padding must not leak into the picture.
    array = samples(13, 11, channels)
    path = write_with_ffmpeg(tmp_path / "f.png", array, filter_name)
    np.testing.assert_array_equal(stored_samples(path), array)
    levels, names = read_levels(path)
    assert names == NAMES[channels]
    np.testing.assert_array_equal(levels, array)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_unfiltered_and_interlaced_files_read_as_stored(tmp_path, channels):
    array = samples(9, 14, channels)
    for name, options in (("plain", {}), ("interlaced", {"interlace": True})):
        levels, _ = read_levels(write_with_pypng(tmp_path / f"{name}.png", array, **options))
        np.testing.assert_array_equal(levels, array)


def test_a_transparent_colour_becomes_an_alpha_channel(tmp_path):
    array = samples(6, 8, 3)
    array[2, 3] = array[4, 5] = (1, 2, 3)
    path = write_with_pypng(tmp_path / "t.png", array, transparent=(1, 2, 3))
    levels, names = read_levels(path)
    assert names == "RGBA"
    np.testing.assert_array_equal(levels[..., :3], array)
    expected_alpha = np.full((6, 8), 65535, np.uint16)
    expected_alpha[2, 3] = expected_alpha[4, 5] = 0
    np.testing.assert_array_equal(levels[..., 3], expected_alpha)


def test_significant_bits_leave_the_stored_samples_as_they_are(tmp_path):
    # 12-bit values scaled to 16 bits by repeating their top bits, as the PNG specification suggests, and an sBIT
    # chunk saying so. pypng's asDirect shifts them back down to 12 bits (a 16x darker picture over 65535).
    twelve = RNG.integers(0, 4096, (5, 7, 3))
    array = ((twelve << 4) | (twelve >> 8)).astype(np.uint16)
    path = with_chunk(write_with_pypng(tmp_path / "s.png", array), b"sBIT", bytes([12, 12, 12]))
    levels, _ = read_levels(path)
    np.testing.assert_array_equal(levels, array)
    # pypng's way, for files FFmpeg refuses: scaled back to within a level of the stored samples.
    by_pypng = png16._decode_with_pypng(path).astype(np.int64)
    assert np.abs(by_pypng - array).max() <= 1


def test_pypng_reads_what_ffmpeg_gives_in_a_layout_not_taken_apart(tmp_path, monkeypatch):
    array = samples(4, 5, 4)
    path = write_with_ffmpeg(tmp_path / "p.png", array, "paeth")
    monkeypatch.setattr(png16, "CHANNELS_OF_FORMAT", {})
    np.testing.assert_array_equal(png16.read_png16(path), array)
