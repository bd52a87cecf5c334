"""`inr fit video` and video sampling: readers (MP4, GIF, folder), frame ranges, fitting, outputs, bad input."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from helpers import run_here
from inr_cli.media.video import parse_frame_range, read_lossless, read_video
from inr_core.errors import UserError
from inr_cli.modalities.video import VIDEO
from training.fitting.config import FitConfig
from training.fitting.fit import fit
from training.fitting.signal import video_signal
from training.metrics import psnr, psnr_per_frame


def pan(frames=8, height=24, width=32) -> np.ndarray:
    """A camera pan across scikit-image's astronaut: (T, H, W, 3) uint8."""
    image = data.astronaut()[::4, ::4]
    return np.stack([image[20 + 2 * i:20 + 2 * i + height, 30 + 3 * i:30 + 3 * i + width] for i in range(frames)])


@pytest.fixture
def clips(tmp_path):
    frames = pan()
    iio.imwrite(tmp_path / "pan.mp4", frames, plugin="pyav", codec="libx264", fps=12, out_pixel_format="yuv444p")
    iio.imwrite(tmp_path / "pan.gif", frames, duration=100, loop=0)
    folder = tmp_path / "pan_frames"
    folder.mkdir()
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{index:03d}.png")
    return tmp_path, frames


def test_readers_agree_on_frames_size_and_rate(clips):
    folder, frames = clips
    from_folder = read_video(str(folder / "pan_frames"))
    assert np.array_equal(np.rint(from_folder.frames.numpy() * 255).astype(np.uint8), frames)  # lossless source
    mp4 = read_video(str(folder / "pan.mp4"))
    assert mp4.fps == pytest.approx(12.0) and tuple(mp4.frames.shape) == (8, 24, 32, 3)
    assert np.abs(mp4.frames.numpy() * 255 - frames).mean() < 6  # H.264 is lossy
    gif = read_video(str(folder / "pan.gif"))
    assert gif.fps == pytest.approx(10.0) and tuple(gif.frames.shape) == (8, 24, 32, 3)


def test_frame_range_and_resize(clips):
    folder, frames = clips
    video = read_video(str(folder / "pan_frames"), frames="2:5", resize=16)
    assert tuple(video.frames.shape) == (3, 12, 16, 3)
    assert parse_frame_range("3:") == slice(3, None) and parse_frame_range(":4") == slice(None, 4)
    for bad in ("3", "a:b", "-1:4", "1:2:3", "4:2", "3:3"):  # an empty range: refused before the clip is read
        with pytest.raises(UserError):
            parse_frame_range(bad)


def test_a_file_clip_converts_only_the_selected_frames_and_gives_imageios_pixels(clips, monkeypatch):
    """Frames before --frames are decoded (H.264 needs them) but not converted to RGB, most of a frame's cost;
    decoding stops at the selection's end. The frames are imageio's reader's, pixel for pixel."""
    from inr_cli.media import video as video_module

    folder, _ = clips
    converted = []
    monkeypatch.setattr(video_module, "rgb_array", lambda frame: converted.append(frame) or frame.to_ndarray(
        format="rgb24"))
    video = read_video(str(folder / "pan.mp4"), frames="5:7")
    assert len(converted) == 2
    theirs = np.stack(list(iio.imiter(folder / "pan.mp4", plugin="pyav")))[5:7]
    assert np.array_equal(np.rint(video.frames.numpy() * 255).astype(np.uint8), theirs)
    assert read_video(str(folder / "pan.mp4"), frames=":3").frames.shape[0] == 3 and len(converted) == 5
    assert read_video(str(folder / "pan.gif"), frames="6:").frames.shape[0] == 2 and len(converted) == 5


def test_a_model_fits_a_pan_in_random_minibatches():
    frames = torch.from_numpy(pan()).float() / 255
    signal = video_signal(frames)
    config = FitConfig(model="fourier-mfn", hidden=64, layers=2, steps=300, batch_size=2048, eval_every=0)
    result = fit(signal, config, VIDEO.recipe)
    assert result.config.batch_size == 2048 < signal.num_points  # never the whole clip in one step
    per_frame = psnr_per_frame(result.final.reconstruction, frames)
    # Measured: about 20 dB on the worst frame with this recipe (300 steps of 2,048 random points).
    assert min(per_frame) > 18.0


def test_the_psnr_at_fp16_weights_of_a_video_is_the_mean_over_frames_as_its_psnr_is():
    """A video's report gives the mean of its frames' PSNRs; the PSNR at fp16 weights beside it was the whole
    clip's, so the gap between the two mixed the rounding with the other definition."""
    import copy

    frames = torch.full((2, 8, 8, 1), 0.5)
    frames[1] = torch.from_numpy(np.random.default_rng(0).random((8, 8, 1), dtype=np.float32))  # far harder
    signal = video_signal(frames)
    result = fit(signal, FitConfig(model="siren", hidden=8, layers=1, steps=5, eval_every=0), VIDEO.recipe)
    rounded = copy.deepcopy(result.model)
    with torch.no_grad():
        for tensor in [*rounded.parameters(), *rounded.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    rendered = signal.evaluate(rounded, torch.device("cpu"), 4096)
    per_frame = psnr_per_frame(rendered.reconstruction, frames)
    assert result.psnr_fp16_weights == pytest.approx(np.mean(per_frame), abs=1e-3)
    assert abs(result.psnr_fp16_weights - psnr(rendered.reconstruction, frames)) > 1.0  # the whole clip's: not it


def test_cli_fit_video_outputs_and_metrics_match_the_lossless_file(clips):
    folder, frames = clips
    proc = run_here(["fit", "video", "pan_frames", "--model", "fourier-mfn", "--hidden", "32", "--layers", "2",
                    "--steps", "60", "--out", "run", "--json", "--quiet"], cwd=folder)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    run = folder / "run"
    for name in ("reconstruction.mp4", "reconstruction.mkv", "frames.png", "psnr_frames.png", "psnr.png",
                 "report.json", "checkpoint.pt"):
        assert (run / name).is_file(), name
    assert report["video"]["frames"] == 8 and report["video"]["fps"] == pytest.approx(25.0)
    written = read_lossless(run / "reconstruction.mkv").astype(np.float64) / 255
    assert written.shape == frames.shape
    target = frames.astype(np.float64) / 255
    recomputed = [-10 * np.log10(np.mean((w - t) ** 2)) for w, t in zip(written, target)]
    assert np.allclose(recomputed, report["psnr_frames"], atol=0.05)  # 8-bit rounding only
    assert report["psnr"] == pytest.approx(np.mean(report["psnr_frames"]))
    assert report["psnr_std"] == pytest.approx(np.std(report["psnr_frames"]))
    viewable = iio.imread(run / "reconstruction.mp4", plugin="pyav")
    assert viewable.shape == (8, 24, 32, 3)

    sampled = run_here(["sample", "run/checkpoint.pt", "--scale", "2", "--fps", "50"], cwd=folder)
    assert sampled.returncode == 0, sampled.stderr
    assert iio.imread(folder / sampled.stdout.strip(), plugin="pyav").shape == (16, 48, 64, 3)
    assert sampled.stderr == ""
    # H.264 takes even sides only: an odd size asked for is padded, and said so; Matroska keeps it exactly.
    odd = run_here(["sample", "run/checkpoint.pt", "--width", "7", "--out", "odd.mp4"], cwd=folder)
    assert odd.returncode == 0 and "the 7x5 frames are written as 8x6" in odd.stderr
    assert iio.imread(folder / "odd.mp4", plugin="pyav").shape[1:3] == (6, 8)
    exact = run_here(["sample", "run/checkpoint.pt", "--width", "7", "--out", "odd.mkv"], cwd=folder)
    assert exact.returncode == 0 and exact.stderr == ""
    assert read_lossless(folder / "odd.mkv").shape[1:3] == (5, 7)


def test_a_frame_folder_mixing_gray_and_colour_is_brought_to_rgb(tmp_path):
    rgb = pan(frames=1, height=4, width=5)[0]
    gray = rgb[:, :, 0]
    for name, image in (("0", Image.fromarray(rgb)), ("1", Image.fromarray(gray)),
                        ("2", Image.fromarray(rgb).convert("RGBA")), ("3", Image.fromarray(rgb).convert("P"))):
        image.save(tmp_path / f"{name}.png")
    video = read_video(str(tmp_path))
    assert video.frames.shape == (4, 4, 5, 3)
    frames = np.rint(video.frames.numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(frames[1], np.repeat(gray[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(frames[2], rgb)
    assert any("1 gray frame of 4 turned RGB" in note for note in video.notes)


def test_bad_video_input_is_one_line_each_and_writes_nothing(clips):
    folder, _ = clips
    (folder / "empty_frames").mkdir()
    mixed = folder / "mixed"
    mixed.mkdir()
    Image.fromarray(pan()[0]).save(mixed / "0.png")
    Image.fromarray(pan(height=20)[1]).save(mixed / "1.png")
    (folder / "notes.mp4").write_text("not a video\n")
    names = ["empty_frames", "mixed", "notes.mp4", "missing.mp4"]
    proc = run_here(["fit", "video", *names, "--steps", "5", "--out", "runs", "--quiet"], cwd=folder)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(names) and all(line.startswith("inr: error:") for line in lines), proc.stderr
    assert "all frames must share one size" in proc.stderr
    zero = run_here(["fit", "video", "pan.gif", "--frames", "20:30", "--out", "runs", "--quiet"], cwd=folder)
    assert zero.returncode == 1 and "no frames" in zero.stderr and zero.stderr.count("\n") == 1
    import soundfile

    soundfile.write(folder / "sound.mkv", np.zeros((800, 1), np.float32), 8000, format="WAV")  # audio only
    sound = run_here(["fit", "video", "sound.mkv", "--out", "runs", "--quiet"], cwd=folder)
    assert (sound.returncode, sound.stderr) == (1, "inr: error: sound.mkv: no video stream in it (streams: audio)\n")
    for text, message in (("abc", "--frames must be START:STOP, e.g. 0:60 or 30:; got 'abc'"),
                          ("-2:", "--frames takes frame indices of 0 or more; got '-2:'")):
        unusable = run_here(["fit", "video", "pan.gif", "--frames", text, "--out", "runs", "--quiet"], cwd=folder)
        assert (unusable.returncode, unusable.stderr) == (2, f"inr: error: {message}\n")  # a usage error
    assert not (folder / "runs").exists()


def test_a_frame_folder_notes_the_depth_and_alpha_its_frames_lose_and_takes_no_gif_for_a_frame(tmp_path):
    """The outputs are 8-bit RGB: 16-bit frames and a varying alpha are noted (as the image reader notes them),
    counted over the frames; a GIF beside the frames is a clip of its own, not one more frame."""
    deep, clear = tmp_path / "deep", tmp_path / "clear"
    deep.mkdir(), clear.mkdir()
    gray16 = (np.arange(24 * 20).reshape(20, 24) * 131).astype(np.uint16)
    alpha = np.stack([pan(frames=1, height=20, width=24)[0, :, :, 0], np.tile(np.arange(24, dtype=np.uint8) * 10,
                                                                             (20, 1))], axis=2)
    for index in range(2):
        Image.fromarray(gray16).save(deep / f"{index}.png")
        Image.fromarray(alpha).save(clear / f"{index}.png")
    Image.fromarray(alpha[:, :, 0]).save(clear / "preview.gif")
    video = read_video(str(deep))
    assert video.frames.shape == (2, 20, 24, 1) and video.info()["bit_depth"] == 8
    assert "2 of 2 frames: samples deeper than 8 bits fitted as read, written back as 8-bit video" in video.notes
    video = read_video(str(clear), frames="1:")
    assert video.frames.shape == (1, 20, 24, 1)
    assert video.notes[0] == "alpha channel dropped (a video has no alpha channel)"
    assert read_video(str(clear)).notes[0] == "2 of 2 frames: alpha channel dropped (a video has no alpha channel)"
