"""Reading 16-bit colour PNGs (gray with alpha, RGB, RGBA), which Pillow would narrow to 8 bits.

FFmpeg's PNG decoder (through PyAV, which video already needs) unfilters rows in C. pypng does it in Python, and
most encoders give most rows the Paeth filter, the slowest to undo there. A 12-megapixel 16-bit RGB photo written
by FFmpeg took 20.1 s in pypng and 1.25 s here on 2 cores, the same samples (`benchmarks/png16_decode.py`).
pypng stays for what FFmpeg refuses, and its messages name what is wrong with a broken file (a chunk's checksum,
a short chunk).

The samples returned are the ones stored. An sBIT chunk only records how many bits were significant before the
image was scaled to 16 bits; the stored samples already span the 16-bit range. (pypng's ``asDirect`` shifts them
down to those bits, which read as a darker image when divided by 65535; the pypng path scales them back.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# FFmpeg's pixel format for each 16-bit colour PNG (a tRNS chunk's transparent colour turns RGB into RGBA, as
# pypng's asDirect does): samples interleaved, big-endian, as the PNG stores them.
CHANNELS_OF_FORMAT = {"ya16be": 2, "rgb48be": 3, "rgba64be": 4}


class _NotDecodedHere(Exception):
    """FFmpeg refused the file, or gave a pixel layout this reader does not take apart: pypng reads it instead."""


def read_png16(path: Path) -> np.ndarray:
    """The ``(height, width, channels)`` uint16 samples of a 16-bit colour PNG. Raises ``ValueError`` (pypng's
    message) or ``OSError`` for a file neither FFmpeg nor pypng can read."""
    try:
        return _decode_with_ffmpeg(path)
    except (ImportError, _NotDecodedHere):
        return _decode_with_pypng(path)  # which says what is wrong with the file, or reads it


def _decode_with_ffmpeg(path: Path) -> np.ndarray:
    import av  # imported here: a run that never meets such a file does not pay for FFmpeg's libraries

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            # Check every chunk's CRC, and fail on the first damage instead of concealing it (FFmpeg's default
            # is to hand back what it could decode of a damaged image).
            stream.codec_context.options = {"err_detect": "crccheck+explode"}
            frame = next(container.decode(stream))
    except (av.FFmpegError, IndexError, StopIteration) as error:  # no picture stream; no picture in it
        raise _NotDecodedHere(str(error)) from None
    channels = CHANNELS_OF_FORMAT.get(frame.format.name)
    if channels is None:
        raise _NotDecodedHere(frame.format.name)
    plane = frame.planes[0]
    # Rows may be padded to the decoder's alignment: line_size bytes each, of which width * channels samples.
    rows = np.frombuffer(plane, dtype=">u2", count=frame.height * plane.line_size // 2)
    rows = rows.reshape(frame.height, plane.line_size // 2)[:, :frame.width * channels]
    return rows.reshape(frame.height, frame.width, channels).astype(np.uint16)


def _decode_with_pypng(path: Path) -> np.ndarray:
    import png  # here: only a file FFmpeg refused needs it (and the GPU image this project is measured on lacks it)

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except png.Error as error:
        raise ValueError(str(error)) from None
    array = array.reshape(height, width, info["planes"])
    if info["bitdepth"] != 16:  # shifted down to an sBIT chunk's depth: back to the scale the file stores
        array = np.round(array * (65535 / (2 ** info["bitdepth"] - 1))).astype(np.uint16)
    return array
