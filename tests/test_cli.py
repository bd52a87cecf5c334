"""`inr fit image` and `inr sample` end to end: files written, report contents, --json, stdin, 16-bit, resampling.

Three small fits run once per module (subprocesses, as a user would run them); the tests read what they wrote.
They are about plumbing, so the networks are tiny and the step counts low.
"""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import png
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from helpers import run_cli, save_png
from inr_cli.app import main
from training.fitting.checkpoint import deserialize, model_from_payload
from training.metrics import to_unit_range
from training.fitting.render import render_grid

FILES = ("reconstruction.png", "comparison.png", "psnr.png", "report.json", "checkpoint.pt")
REPORT_KEYS = ("input", "output_dir", "model", "params", "steps", "seconds", "steps_per_second", "device", "psnr",
               "ssim", "config", "versions")


def png_header(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return data[24], data[25]  # bit depth, colour type


def read_png_ints(path: Path) -> np.ndarray:
    """Samples of any PNG as an (H, W, C) integer array, at the file's own bit depth (pypng keeps all bits)."""
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    return np.vstack([np.asarray(r, dtype=np.int64) for r in rows]).reshape(height, width, info["planes"])


def assert_psnr_matches_file(report_psnr: float, written: np.ndarray, target: np.ndarray, top: int) -> None:
    """The report's PSNR is of the float reconstruction; the file holds it rounded to 1/top steps.

    Rounding moves each sample by at most d = 0.5/top, so |MSE(file) - MSE(float)| <= 2 sqrt(MSE) d + d^2.
    """
    mse_report = 10 ** (-report_psnr / 10)
    mse_file = np.mean((written / top - target) ** 2)
    d = 0.5 / top
    assert abs(mse_file - mse_report) <= 2 * math.sqrt(mse_report) * d + d * d
    assert -10 * math.log10(mse_file) == pytest.approx(report_psnr, abs=0.05)


def sibling_junk(folder: Path) -> list[str]:
    """Temporary files that atomic writes or the write probe might have left behind."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def call_main(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, camera_u8, astronaut_u8) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    save_png(folder / "cam.png", camera_u8[::10, ::10][:48, :40])  # 48 high, 40 wide, 8-bit gray
    save_png(folder / "astro.png", astronaut_u8[::8, ::8][:48, :64])  # 48 x 64 RGB
    save_png(folder / "gray.png", camera_u8[100:140, 200:240])  # 40 x 40 gray
    rng = np.random.default_rng(0)
    gray16 = camera_u8[::16, ::16][:24, :20].astype(np.uint16) * 257 + rng.integers(0, 200, (24, 20)).astype(np.uint16)
    save_png(folder / "g16.png", gray16)
    rgb16 = (astronaut_u8[::20, ::20][:20, :24].astype(np.uint16) * 256
             + rng.integers(0, 256, (20, 24, 3)).astype(np.uint16))
    with open(folder / "rgb16.png", "wb") as handle:
        png.Writer(24, 20, greyscale=False, bitdepth=16).write(handle, rgb16.reshape(20, 72))
    return folder


@pytest.fixture(scope="module")
def run_a(workdir):
    """One gray 8-bit image, SIREN 1L-32D, 60 steps, human output."""
    proc = run_cli(["fit", "image", "cam.png", "--resize", "48", "--hidden", "32", "--layers", "1", "--steps", "60",
                    "--quiet", "--device", "cpu", "--out", "runA"], cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    return proc, workdir / "runA"


@pytest.fixture(scope="module")
def run_b(workdir):
    """Two inputs, --json, --holdout grid, --resize 32, fourier-mfn; progress bars left on (they go to stderr)."""
    proc = run_cli(["fit", "image", "astro.png", "gray.png", "--json", "--holdout", "grid", "--resize", "32",
                    "--model", "fourier-mfn", "--hidden", "16", "--layers", "1", "--steps", "30", "--device", "cpu",
                    "--out", "runB"], cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    return proc, workdir / "runB"


@pytest.fixture(scope="module")
def run_c(workdir):
    """16-bit inputs whose paths come from stdin (`-`)."""
    proc = run_cli(["fit", "image", "-", "--json", "--quiet", "--hidden", "16", "--layers", "1", "--steps", "30",
                    "--device", "cpu", "--out", "runC"], cwd=workdir, stdin="g16.png\n\nrgb16.png\n")
    assert proc.returncode == 0, proc.stderr
    return proc, workdir / "runC"


# --------------------------------------------------------------------------------------------- run A


def test_outputs_exist(run_a):
    proc, out = run_a
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert sibling_junk(out) == []
    assert proc.stderr == ""  # --quiet: no progress, and no warnings either
    assert "PSNR" in proc.stdout and "runA" in proc.stdout


def test_report_keys_and_values(run_a):
    _, out = run_a
    report = json.loads((out / "report.json").read_text())
    for key in REPORT_KEYS:
        assert key in report, key
    assert report["input"] == "cam.png"
    assert Path(report["output_dir"]) == Path("runA")
    assert report["model"] == "siren"
    assert report["params"] == (2 * 32 + 32) + (32 * 32 + 32) + (32 + 1)
    assert report["steps"] == 60
    assert report["seconds"] > 0
    assert report["steps_per_second"] == pytest.approx(60 / report["seconds"], rel=1e-6)
    assert report["device"] == "cpu"
    assert report["peak_memory_mb"] is None  # CUDA allocator statistics only; a CPU has none to trust
    assert 12.0 < report["psnr"] < 60.0
    assert 0.0 < report["ssim"] <= 1.0
    assert report.get("psnr_holdout") is None
    assert report["report_version"] == 2
    config = report["config"]
    assert config["modality"] == "image" and config["options"] == {"holdout": "none", "alpha": "keep", "resize": 48,
                                                                           "crop": None, "max_pixels": 40_000_000}
    fit = config["fit"]
    assert (fit["model"], fit["hidden"], fit["layers"], fit["steps"]) == ("siren", 32, 1, 60)
    # Resolved, not null: the 48x40 image's recipe (SIREN: lr 1e-4 x (512/48)^0.79, capped at 5x; w0 30).
    assert fit["lr"] == pytest.approx(5e-4) and fit["frequency"] == 30.0 and fit["batch_size"] == 48 * 40
    assert fit["solver"]["solver"] == "fixed-point" and fit["solver"]["tol"] == 1e-3
    assert report["versions"]["torch"] == torch.__version__
    assert {"python", "numpy", "inr"} <= set(report["versions"])
    assert report["image"]["height"] == 48 and report["image"]["width"] == 40 and report["image"]["bit_depth"] == 8
    assert report["history"][-1]["step"] == 60
    assert report["history"][-1]["psnr"] == pytest.approx(report["psnr"])


def test_report_psnr_matches_written_reconstruction(run_a, workdir):
    _, out = run_a
    report = json.loads((out / "report.json").read_text())
    assert png_header(out / "reconstruction.png") == (8, 0)  # 8-bit gray, as the input
    written = np.asarray(Image.open(out / "reconstruction.png"), dtype=np.float64)
    target = np.asarray(Image.open(workdir / "cam.png"), dtype=np.float64) / 255.0
    assert written.shape == target.shape == (48, 40)
    assert_psnr_matches_file(report["psnr"], written, target, 255)
    ssim = structural_similarity(target, written / 255.0, data_range=1.0, win_size=7)
    assert ssim == pytest.approx(report["ssim"], abs=0.01)


def test_figures(run_a):
    _, out = run_a
    comparison = Image.open(out / "comparison.png")
    # target | reconstruction | error, enlarged by whole pixels (a 40 x 48 image is small), under titles and over
    # a caption and the error's colour bar; the caption is also kept as the PNG's text.
    width, height = comparison.size
    assert width >= 3 * 40 and height > 48 and width > height
    assert comparison.text["Description"].startswith("cam") and " PSNR " in comparison.text["Description"]
    plot = Image.open(out / "psnr.png")
    assert plot.format == "PNG" and plot.size[0] > 200 and plot.size[1] > 100


def test_checkpoint_reproduces_reconstruction(run_a):
    _, out = run_a
    payload = deserialize((out / "checkpoint.pt").read_bytes())
    assert payload["step"] == 60 and payload["config"]["fit"]["model"] == "siren"
    assert {"model_state", "optimizer_state", "config"} <= set(payload)
    model = model_from_payload(payload)
    pixels = to_unit_range(render_grid(model, (48, 40), 1, torch.device("cpu"), 4096))
    expected = np.asarray(Image.open(out / "reconstruction.png"), dtype=np.int64)
    got = np.rint(pixels[:, :, 0].numpy().astype(np.float64) * 255).astype(np.int64)
    assert np.abs(got - expected).max() <= 1
    assert (got == expected).mean() > 0.99


# --------------------------------------------------------------------------------------------- sample


def test_sample_scale_two(run_a, tmp_path, capsys):
    _, out = run_a
    checkpoint = tmp_path / "checkpoint.pt"
    shutil.copy(out / "checkpoint.pt", checkpoint)
    code, stdout, err = call_main(["sample", checkpoint, "--scale", "2", "--device", "cpu"], capsys)
    assert code == 0, err
    written = tmp_path / "sample-80x96.png"  # default name, beside the checkpoint
    assert stdout.strip() == str(written)
    image = Image.open(written)
    assert image.size == (80, 96) and image.mode == "L"
    # Same function on a finer grid: the four corners are the same coordinates as in the fitted grid.
    big = np.asarray(image, dtype=np.int64)
    small = np.asarray(Image.open(out / "reconstruction.png"), dtype=np.int64)
    for r, c in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert abs(big[r, c] - small[r, c]) <= 1


def test_sample_default_size_equals_reconstruction(run_a, tmp_path, capsys):
    _, out = run_a
    target = tmp_path / "same.png"
    code, _, err = call_main(["sample", out / "checkpoint.pt", "--out", target, "--device", "cpu"], capsys)
    assert code == 0, err
    a = np.asarray(Image.open(target), dtype=np.int64)
    b = np.asarray(Image.open(out / "reconstruction.png"), dtype=np.int64)
    assert a.shape == b.shape == (48, 40)
    assert np.abs(a - b).max() <= 1 and (a == b).mean() > 0.99


@pytest.mark.parametrize("option,value,size", [("--width", 60, (60, 72)), ("--height", 24, (20, 24)),
                                               ("--width", 40, (40, 48))])
def test_sample_one_side_keeps_aspect_ratio(run_a, tmp_path, capsys, option, value, size):
    _, out = run_a
    target = tmp_path / "s.png"
    code, stdout, err = call_main(["sample", out / "checkpoint.pt", option, value, "--out", target, "--device", "cpu"],
                                  capsys)
    assert code == 0, err
    assert Image.open(target).size == size  # (width, height) of a 40 x 48 fit


def test_sample_width_and_height(run_a, tmp_path, capsys):
    _, out = run_a
    target = tmp_path / "s.png"
    code, _, err = call_main(["sample", out / "checkpoint.pt", "--width", "30", "--height", "10", "--out", target,
                              "--device", "cpu"], capsys)
    assert code == 0, err
    assert Image.open(target).size == (30, 10)


@pytest.mark.parametrize("extra", [["--scale", "2", "--width", "10"], ["--scale", "0"], ["--width", "0"]])
def test_sample_bad_sizes(run_a, tmp_path, capsys, extra):
    _, out = run_a
    target = tmp_path / "s.png"
    code, stdout, err = call_main(["sample", out / "checkpoint.pt", *extra, "--out", target, "--device", "cpu"], capsys)
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not target.exists()


def test_sample_several_checkpoints_in_one_process_into_one_folder(run_a, run_b, tmp_path, capsys, monkeypatch):
    _, a = run_a
    _, b = run_b
    (tmp_path / "again" / "runA").mkdir(parents=True)
    shutil.copy(a / "checkpoint.pt", tmp_path / "again" / "runA" / "checkpoint.pt")
    checkpoints = [a / "checkpoint.pt", b / "astro" / "checkpoint.pt", tmp_path / "again" / "runA" / "checkpoint.pt"]
    out = tmp_path / "big"
    code, stdout, err = call_main(["sample", *checkpoints, "--scale", "2", "--out", out, "--device", "cpu"], capsys)
    assert code == 0, err
    # Each named after its run folder, the second runA numbered as `inr fit` numbers inputs that share a name.
    written = [out / "runA-sample-80x96.png", out / "astro-sample-64x48.png", out / "runA-2-sample-80x96.png"]
    assert stdout.split() == [str(path) for path in written] and sorted(out.iterdir()) == sorted(written)
    assert Image.open(written[1]).size == (64, 48) and Image.open(written[1]).mode == "RGB"
    assert np.array_equal(np.asarray(Image.open(written[0])), np.asarray(Image.open(written[2])))
    alone = tmp_path / "alone.png"
    assert call_main(["sample", checkpoints[0], "--scale", "2", "--out", alone, "--device", "cpu"], capsys)[0] == 0
    assert np.array_equal(np.asarray(Image.open(alone)), np.asarray(Image.open(written[0])))

    # Paths from stdin; one missing: reported on its own line, the others sampled (beside their checkpoints, with
    # no --out), exit code 1.
    stdin = f"{checkpoints[2]}\n{tmp_path / 'nope.pt'}\n{b / 'gray' / 'checkpoint.pt'}\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code, stdout, err = call_main(["sample", "-", "--device", "cpu"], capsys)
    assert code == 1
    assert err.splitlines() == [f"inr: error: {tmp_path / 'nope.pt'}: no such file"]  # one line, as for inr fit
    assert stdout.split() == [str(tmp_path / "again" / "runA" / "sample-40x48.png"),
                              str(b / "gray" / "sample-32x32.png")]

    # A folder of runs stands for its runs' checkpoints, in name order; a run folder for its own checkpoint.
    code, stdout, err = call_main(["sample", b, a, "--out", tmp_path / "folders", "--device", "cpu"], capsys)
    assert code == 0, err
    assert stdout.split() == [str(tmp_path / "folders" / name) for name in
                              ("astro-sample-32x24.png", "gray-sample-32x32.png", "runA-sample-40x48.png")]

    # --out naming one file for several samples: refused before anything is read or written.
    code, stdout, err = call_main(["sample", *checkpoints[:2], "--out", tmp_path / "one.png", "--device", "cpu"],
                                  capsys)
    assert code == 2 and err.startswith("inr: error: --out with several checkpoints must be a folder")
    assert not (tmp_path / "one.png").exists() and stdout == ""


# --------------------------------------------------------------------------------------------- run B: --json


def test_json_prints_one_line_per_input(run_b):
    proc, out = run_b
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and proc.stdout.endswith("\n")
    reports = [json.loads(line) for line in lines]  # every line is JSON: nothing else on stdout
    assert [r["input"] for r in reports] == ["astro.png", "gray.png"]
    assert [Path(r["output_dir"]) for r in reports] == [Path("runB/astro"), Path("runB/gray")]
    for report in reports:
        folder = out / Path(report["output_dir"]).name
        for name in FILES:
            assert (folder / name).is_file(), (folder, name)
        # The printed line and report.json carry the same object.
        assert json.loads((folder / "report.json").read_text()) == report
    assert sorted(p.name for p in out.iterdir()) == ["astro", "gray", "index.html", "summary.json", "summary.md",
                                                      "summary.png"]
    # The dataset summary: each input's metrics as its report has them, and their mean and deviation.
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["inputs"], summary["fitted"], summary["failed"]) == (2, 2, 0)
    assert [row["psnr"] for row in summary["rows"]] == [r["psnr"] for r in reports]
    assert summary["metrics"]["psnr"]["mean"] == pytest.approx(sum(r["psnr"] for r in reports) / 2)
    assert summary["metrics"]["psnr"]["std"] == pytest.approx(abs(reports[0]["psnr"] - reports[1]["psnr"]) / 2)
    table = (out / "summary.md").read_text()
    assert "| astro.png |" in table and "mean ± std" in table and "psnr_holdout" in table  # run B holds out
    assert "bits_per_point" in table and [row["bits_per_point"] for row in summary["rows"]] == [
        r["bits_per_point"] for r in reports]


def test_json_holdout_and_resize(run_b):
    proc, out = run_b
    astro, gray = (json.loads(line) for line in proc.stdout.splitlines())
    for report in (astro, gray):
        assert report["config"]["options"]["holdout"] == "grid"
        assert isinstance(report["psnr_holdout"], float) and math.isfinite(report["psnr_holdout"])
        assert report["psnr_holdout"] > 5.0
        assert report["model"] == "fourier-mfn"
        assert report["params"] == 2 * (2 * 16 + 16) + (16 * 16 + 16) + (16 * report["image"]["channels"] + 1 *
                                                                         report["image"]["channels"])
        assert any("resized" in note for note in report["notes"])
        # The compression rate: 16-bit weights per pixel of the whole image (held-out pixels included).
        pixels = report["image"]["height"] * report["image"]["width"]
        assert report["bits_per_point"] == pytest.approx(16 * report["params"] / pixels, rel=1e-12)
    assert (astro["image"]["height"], astro["image"]["width"], astro["image"]["channels"]) == (24, 32, 3)
    assert (gray["image"]["height"], gray["image"]["width"], gray["image"]["channels"]) == (32, 32, 1)
    # The reconstruction covers the whole (resized) grid, not just the training quarter.
    assert Image.open(out / "astro" / "reconstruction.png").size == (32, 24)
    assert Image.open(out / "astro" / "reconstruction.png").mode == "RGB"
    assert Image.open(out / "gray" / "reconstruction.png").size == (32, 32)


# --------------------------------------------------------------------------------------------- run C: stdin, 16-bit


def test_stdin_paths(run_c):
    proc, out = run_c
    reports = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["input"] for r in reports] == ["g16.png", "rgb16.png"]  # the blank line is skipped
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["g16", "rgb16"]


def test_16bit_input_gives_16bit_reconstruction(run_c, workdir):
    proc, out = run_c
    reports = {r["input"]: r for r in map(json.loads, proc.stdout.splitlines())}
    for name, colour_type in (("g16", 0), ("rgb16", 2)):
        report = reports[f"{name}.png"]
        assert report["image"]["bit_depth"] == 16
        reconstruction = out / name / "reconstruction.png"
        assert png_header(reconstruction) == (16, colour_type)
        written = read_png_ints(reconstruction).astype(np.float64)
        target = read_png_ints(workdir / f"{name}.png").astype(np.float64) / 65535.0
        assert written.shape == target.shape
        assert_psnr_matches_file(report["psnr"], written, target, 65535)
    # Not merely 8-bit values scaled up: the low byte carries information.
    assert np.any(read_png_ints(out / "rgb16" / "reconstruction.png") % 257 != 0)


def test_sample_of_16bit_fit_is_16bit(run_c, tmp_path, capsys):
    _, out = run_c
    target = tmp_path / "s16.png"
    code, _, err = call_main(["sample", out / "g16" / "checkpoint.pt", "--scale", "1.5", "--out", target,
                              "--device", "cpu"], capsys)
    assert code == 0, err
    assert png_header(target) == (16, 0)
    assert Image.open(target).size == (30, 36)


def test_a_report_written_in_another_thread_names_the_fit_s_own_gpu(monkeypatch):
    """On a GPU reports are written by a background thread, whose current CUDA device is the first GPU whatever
    the torchrun rank's own is: the report names the GPU of the fit's device."""
    import threading

    from inr_cli import reports

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"GPU {getattr(device, 'index', None)}")
    caches = (reports._versions, reports._gpu_name)  # what they hold now is this fake GPU's: cleared after
    for cached in caches:
        cached.cache_clear()
    try:
        found = {}
        writer = threading.Thread(target=lambda: found.update(reports.versions("cuda:1")))
        writer.start()
        writer.join()
        assert found["gpu"] == "GPU 1"
        assert reports.versions("cpu")["gpu"] == "GPU None"  # a CPU fit on a GPU machine: the current device's
    finally:
        for cached in caches:
            cached.cache_clear()
