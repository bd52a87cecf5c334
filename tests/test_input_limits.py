"""Inputs that claim more data than memory holds, and readers that fail, through the command line.

Each refused input must give exactly one stderr line starting ``inr: error:`` (exit 1 for a refused file, 2 for a
bad option value), no traceback and no run folder. The files are tiny: a 1-bit PNG of 12000x12000 pixels is 30 KB,
a PLY header can claim a billion faces. Run in-process by helpers.run_here, which shows what a library prints
(to Python's streams or to the file descriptors themselves), as a subprocess would.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import png
import pytest
import soundfile
import tifffile
import trimesh
from PIL import Image

from helpers import run_here
from inr_cli.media.limits import library_warnings_as_notes

TINY = ["--hidden", "8", "--layers", "1", "--steps", "2", "--device", "cpu", "--eval-every", "0"]
COMMANDS = {"image": "image", "video": "video", "audio": "audio", "mesh": "sdf"}


def bilevel_png(path: Path, side: int) -> Path:
    """A 1-bit PNG of side x side pixels: its header claims them all, yet it compresses to a few KB."""
    image = Image.new("1", (side, side))
    image.paste(1, (0, 0, side // 2, side // 2))
    image.save(path)
    return path


def small_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10), dtype=np.uint8)).save(path)
    return path


def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (10, 24, 32, 3), dtype=np.uint8)


def mp4(path: Path) -> Path:
    iio.imwrite(path, frames(), plugin="pyav", codec="libx264", fps=12)
    return path


def wav(path: Path) -> Path:
    soundfile.write(path, 0.5 * np.sin(np.arange(8000) / 10.0)[:, None], 8000)  # one second at 8 kHz
    return path


def sphere(path: Path) -> Path:
    trimesh.creation.icosphere(subdivisions=2).export(path)  # 320 faces
    return path


def truncated_mp4(folder: Path) -> str:
    data = mp4(folder / "clip.mp4").read_bytes()
    (folder / "clip.mp4").write_bytes(data[: len(data) // 2])
    return "clip.mp4"


def frame_folder(folder: Path) -> str:
    (folder / "shots").mkdir()
    for index, frame in enumerate(frames()):
        Image.fromarray(frame).save(folder / "shots" / f"{index:03d}.png")
    return "shots"


def png16(folder: Path) -> str:
    rows = np.full((20, 20 * 3), 40000, dtype=np.uint16)  # 16-bit RGB: read through pypng, not Pillow
    with open(folder / "deep.png", "wb") as handle:
        png.Writer(20, 20, greyscale=False, bitdepth=16).write(handle, rows)
    return "deep.png"


def tiff(folder: Path) -> str:
    tifffile.imwrite(folder / "scan.tif", np.zeros((30, 20), np.uint16))
    return "scan.tif"


def text_as_mp4(folder: Path) -> str:
    (folder / "notes.mp4").write_text("not a video\n")
    return "notes.mp4"


def mkv(folder: Path) -> str:
    iio.imwrite(folder / "clip.mkv", frames(), plugin="pyav", codec="ffv1", fps=12)  # Matroska: no frame count
    return "clip.mkv"


def gif(folder: Path) -> str:
    iio.imwrite(folder / "anim.gif", frames(), plugin="pillow", duration=100)
    return "anim.gif"


def ply_claiming(folder: Path, faces: int) -> str:
    header = f"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n" \
             f"element face {faces}\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
    (folder / "claims.ply").write_text(header)
    return "claims.ply"


def stl_claiming(folder: Path, faces: int) -> str:
    """A binary STL of ``faces`` faces, as large as they make it (sparse: nothing is written past the header); a
    smaller file is refused as truncated before its count is compared with the limit."""
    with open(folder / "claims.stl", "wb") as handle:
        handle.write(b"\0" * 80 + faces.to_bytes(4, "little"))
        handle.truncate(84 + 50 * faces)
    return "claims.stl"


LIMIT = "raise it if memory allows, or"
VIDEO_ADVICE = f"{LIMIT} choose fewer frames (--frames) or smaller ones (--resize)"
MESH_ADVICE = f"{LIMIT} simplify (decimate) the mesh first"

# case: (kind, prepare(folder) -> input argument, extra options, exit code, the exact error line after "inr: error: ")
CASES = {
    "png-header-over-default": ("image", lambda f: bilevel_png(f / "wide.png", 7000).name, [], 1,
                                f"wide.png: 7000x7000 = 49,000,000 pixels exceeds --max-pixels 40,000,000; {LIMIT} "
                                "scale the image down first"),
    "png-over-limit": ("image", lambda f: small_png(f / "ok.png").name, ["--max-pixels", "100"], 1,
                       f"ok.png: 10x12 = 120 pixels exceeds --max-pixels 100; {LIMIT} scale the image down first"),
    "png16-over-limit": ("image", png16, ["--max-pixels", "399"], 1,
                         f"deep.png: 20x20 = 400 pixels exceeds --max-pixels 399; {LIMIT} scale the image down first"),
    "tiff-over-limit": ("image", tiff, ["--max-pixels", "500"], 1,
                        f"scan.tif: 20x30 = 600 pixels exceeds --max-pixels 500; {LIMIT} scale the image down first"),
    "image-max-pixels-zero": ("image", lambda f: small_png(f / "ok.png").name, ["--max-pixels", "0"], 2,
                              "--max-pixels must be at least 1, got 0"),
    "truncated-mp4": ("video", truncated_mp4, [], 1,
                      "clip.mp4: not a readable video (truncated or corrupt?); check that it plays, or re-encode it"),
    "text-as-mp4": ("video", text_as_mp4, [], 1,
                    "notes.mp4: not a readable video (truncated or corrupt?); check that it plays, or re-encode it"),
    "mp4-over-limit": ("video", lambda f: mp4(f / "clip.mp4").name, ["--max-pixels", "5000"], 1,
                       f"clip.mp4: 10 frames of 32x24 = 7,680 pixels exceeds --max-pixels 5,000; {VIDEO_ADVICE}"),
    "mp4-resized-over-limit": ("video", lambda f: mp4(f / "clip.mp4").name,
                               ["--max-pixels", "300", "--resize", "8", "--frames", "2:"], 1,
                               f"clip.mp4: 8 frames of 8x6 = 384 pixels exceeds --max-pixels 300; {VIDEO_ADVICE}"),
    "mkv-without-frame-count": ("video", mkv, ["--max-pixels", "5000"], 1,
                                f"clip.mkv: 10 frames of 32x24 = 7,680 pixels exceeds --max-pixels 5,000; "
                                f"{VIDEO_ADVICE}"),
    "gif-over-limit": ("video", gif, ["--max-pixels", "5000"], 1,
                       f"anim.gif: 10 frames of 32x24 = 7,680 pixels exceeds --max-pixels 5,000; {VIDEO_ADVICE}"),
    "frame-folder-over-limit": ("video", frame_folder, ["--max-pixels", "5000"], 1,
                                f"shots: 10 frames of 32x24 = 7,680 pixels exceeds --max-pixels 5,000; "
                                f"{VIDEO_ADVICE}"),
    "video-max-pixels-zero": ("video", lambda f: mp4(f / "clip.mp4").name, ["--max-pixels", "0"], 2,
                              "--max-pixels must be at least 1, got 0"),
    "audio-over-limit": ("audio", lambda f: wav(f / "tone.wav").name, ["--max-seconds", "0.5"], 1,
                         f"tone.wav: 1 s (8,000 samples at 8000 Hz) exceeds --max-seconds 0.5; {LIMIT} fit a part with "
                         "--seconds START:STOP"),
    "audio-max-seconds-zero": ("audio", lambda f: wav(f / "tone.wav").name, ["--max-seconds", "0"], 2,
                               "--max-seconds must be a positive, finite number, got 0.0"),
    "audio-max-seconds-nan": ("audio", lambda f: wav(f / "tone.wav").name, ["--max-seconds", "nan"], 2,
                              "--max-seconds must be a positive, finite number, got nan"),
    "ply-over-limit": ("mesh", lambda f: sphere(f / "ball.ply").name, ["--max-faces", "100"], 1,
                       f"ball.ply: 320 faces exceeds --max-faces 100; {MESH_ADVICE}"),
    "obj-over-limit": ("mesh", lambda f: sphere(f / "ball.obj").name, ["--max-faces", "100"], 1,
                       f"ball.obj: 320 faces exceeds --max-faces 100; {MESH_ADVICE}"),
    "ply-header-claims-a-billion-faces": ("mesh", lambda f: ply_claiming(f, 10**9), [], 1,
                                          f"claims.ply: 1,000,000,000 faces exceeds --max-faces 5,000,000; "
                                          f"{MESH_ADVICE}"),
    "stl-header-claims-a-billion-faces": ("mesh", lambda f: stl_claiming(f, 10**9), [], 1,
                                          f"claims.stl: 1,000,000,000 faces exceeds --max-faces 5,000,000; "
                                          f"{MESH_ADVICE}"),
    "mesh-max-faces-zero": ("mesh", lambda f: sphere(f / "ball.ply").name, ["--max-faces", "0"], 2,
                            "--max-faces must be at least 1, got 0"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_in_one_line(tmp_path, case):
    kind, prepare, extra, code, message = CASES[case]
    argument = prepare(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    started = time.perf_counter()
    proc = run_here(["fit", COMMANDS[kind], argument, *TINY, *extra, "--out", "out"], cwd=tmp_path)
    assert time.perf_counter() - started < 30  # refused from the header: nothing large is ever decoded
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.splitlines() == [f"inr: error: {message}"]
    assert proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run folder, no runs/


def test_a_large_png_is_refused_at_the_default_limit_even_with_resize(tmp_path):
    """The issue's bomb: 12000x12000 pixels in 30 KB. --resize does not lift the limit for a PNG (it is decoded at
    full size before it can be reduced), and Pillow's own warning never reaches the terminal."""
    bilevel_png(tmp_path / "bomb.png", 12000)
    started = time.perf_counter()
    proc = run_here(["fit", "image", "bomb.png", "--resize", "32", *TINY, "--out", "out"], cwd=tmp_path)
    assert time.perf_counter() - started < 30
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"inr: error: bomb.png: 12000x12000 = 144,000,000 pixels exceeds --max-pixels "
                                        f"40,000,000; {LIMIT} scale the image down first"]
    assert not (tmp_path / "out").exists()


def test_a_large_png_with_a_raised_limit_is_reduced_while_read(tmp_path):
    """With --max-pixels raised the same file fits in seconds: it is box-reduced as integers while decoded, so the
    anti-aliased resize never sees 144 million float pixels (it used to run for over ten minutes)."""
    bilevel_png(tmp_path / "bomb.png", 12000)
    started = time.perf_counter()
    proc = run_here(["fit", "image", "bomb.png", "--resize", "32", "--max-pixels", "150000000", *TINY, "--json",
                    "--quiet", "--out", "out"], cwd=tmp_path)
    assert time.perf_counter() - started < 60
    assert proc.returncode == 0 and proc.stderr == ""
    report = json.loads(proc.stdout)
    assert (report["image"]["height"], report["image"]["width"]) == (32, 32)
    assert "resized from 12000x12000 to 32x32 (--resize 32)" in report["notes"]
    pixels = np.asarray(Image.open(tmp_path / "out" / "reconstruction.png"))
    assert pixels.shape == (32, 32)


def test_a_jpeg_with_resize_counts_at_the_scale_it_is_decoded_at(tmp_path):
    """A 4000x3000 JPEG is 12 million pixels, over --max-pixels 1,000,000; with --resize 32 libjpeg decodes it at
    1/8 scale (500x375), which is under the limit, so it is read."""
    Image.new("RGB", (4000, 3000), (200, 100, 50)).save(tmp_path / "photo.jpg")
    refused = run_here(["fit", "image", "photo.jpg", "--max-pixels", "1000000", *TINY, "--out", "a"], cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr.splitlines() == [
        f"inr: error: photo.jpg: 4000x3000 = 12,000,000 pixels exceeds --max-pixels 1,000,000; {LIMIT} scale the "
        "image down first"]
    proc = run_here(["fit", "image", "photo.jpg", "--resize", "32", "--max-pixels", "1000000", *TINY, "--json",
                    "--quiet", "--out", "b"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    report = json.loads(proc.stdout)
    assert (report["image"]["height"], report["image"]["width"]) == (24, 32)
    assert "resized from 4000x3000 to 32x24 (--resize 32)" in report["notes"]


def test_a_non_latin_file_name_draws_its_plots_without_warnings(tmp_path):
    """The PSNR plot's title carries the file name; characters the font lacks used to print matplotlib's glyph
    warnings on stderr."""
    small_png(tmp_path / "写真_صورة.png")
    proc = run_here(["fit", "image", "写真_صورة.png", *TINY, "--json", "--quiet", "--out", "out"], cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert (tmp_path / "out" / "psnr.png").stat().st_size > 0


def test_decoder_warnings_become_notes_not_terminal_text(capfd):
    notes: list[str] = []
    with library_warnings_as_notes(notes):
        logging.getLogger("trimesh").warning("face %d is degenerate", 3)
        warnings.warn("a decoder's warning\nwith a second line", UserWarning)
        warnings.warn("a decoder's warning\nwith a second line", UserWarning)  # noted once
    assert notes == ["reader warning: face 3 is degenerate", "reader warning: a decoder's warning"]
    assert capfd.readouterr().err == ""
    assert logging.getLogger("trimesh").propagate  # put back as it was
