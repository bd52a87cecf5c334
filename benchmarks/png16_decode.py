"""Benchmark: decoding a large 16-bit colour PNG, FFmpeg (what `inr` uses) against pypng (what it used).

Writes a --width x --height 16-bit RGB photo (scikit-image's astronaut scaled up, with noise in its low bits) with
FFmpeg's PNG encoder, whose rows mostly take the Paeth filter as most encoders' do, then reads it both ways and
prints seconds, the ratio and whether the samples agree.

    python benchmarks/png16_decode.py                  # 4000 x 3000 (12 MP), about half a minute on 2 cores
    python benchmarks/png16_decode.py --width 1000 --height 750
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from skimage import data, transform

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inr_cli.media.png16 import _decode_with_pypng, read_png16  # noqa: E402


def write_photo(path: Path, width: int, height: int, filter_name: str) -> None:
    rng = np.random.default_rng(0)
    photo = (transform.resize(data.astronaut(), (height, width), order=1) * 65535).astype(np.uint16)
    photo |= rng.integers(0, 64, photo.shape, dtype=np.uint16)  # a real 16-bit photo's low bits are noise
    with av.open(str(path), "w", format="image2pipe") as container:
        stream = container.add_stream("png", options={"pred": filter_name})
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb48be"
        frame = av.VideoFrame.from_ndarray(photo, format="rgb48le")  # converted to the stream's big-endian samples
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)


def timed(read, path: Path) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    samples = read(path)
    return time.perf_counter() - start, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--filter", default="mixed", help="FFmpeg's row filter: mixed (per row), paeth, sub, ...")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photo16.png"
        write_photo(path, args.width, args.height, args.filter)
        ffmpeg_seconds, by_ffmpeg = timed(read_png16, path)
        pypng_seconds, by_pypng = timed(_decode_with_pypng, path)
        size_mb = path.stat().st_size / 1e6
    print(f"{args.width}x{args.height} 16-bit RGB PNG ({size_mb:.1f} MB, rows filtered '{args.filter}')")
    print(f"FFmpeg (inr): {ffmpeg_seconds:.2f} s   pypng: {pypng_seconds:.2f} s   "
          f"ratio {pypng_seconds / ffmpeg_seconds:.1f}x   same samples: {np.array_equal(by_ffmpeg, by_pypng)}")


if __name__ == "__main__":
    main()
