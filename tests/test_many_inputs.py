"""Runs over several inputs: the dataset summary, and torchrun sharing the inputs between processes (gloo, CPU)."""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import replace
import subprocess
import sys

import pytest

from helpers import cli_env, run_here, save_png
from inr_cli.fitting import OutputOptions, run_fit_command
from inr_cli.modalities.base import FitCommandConfig
from inr_cli.modalities.image import ImageOptions
from models.fixpoint import SolverSettings
from training.fitting.config import FitConfig

SMALL_FIT = ["--steps", "15", "--hidden", "16", "--layers", "1", "--device", "cpu", "--quiet", "--json"]


@pytest.fixture(scope="module")
def six_images(tmp_path_factory, camera_u8, astronaut_u8):
    from skimage import data

    folder = tmp_path_factory.mktemp("six")
    arrays = [camera_u8[::32, ::32], astronaut_u8[::32, ::32], data.coins()[::20, ::20], data.moon()[::32, ::32],
              camera_u8[100:116, 200:216], astronaut_u8[300:316, 100:116]]
    names = [save_png(folder / f"img{i}.png", array).name for i, array in enumerate(arrays)]
    return folder, names


def test_summary_tabulates_fits_and_failures(tmp_path, six_images, capsys):
    folder, names = six_images
    paths = [str(folder / names[0]), str(tmp_path / "missing.png"), str(folder / names[1])]
    fit_config = FitConfig(model="siren", hidden=16, layers=1, steps=10, device="cpu", eval_every=0)
    code = run_fit_command(FitCommandConfig("image", fit_config, ImageOptions()), paths,
                           OutputOptions(out=tmp_path / "run", as_json=True, show_progress=False))
    assert code == 1  # one input failed; the others were fitted
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # One line per input, in order: the failed one says so, so lines and inputs stay paired.
    assert [line["input"] for line in lines] == paths
    failure = lines[1]
    assert failure["status"] == "failed" and "missing.png" in failure["error"] and "psnr" not in failure
    reports = [lines[0], lines[2]]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["inputs"], summary["fitted"], summary["failed"]) == (3, 2, 1)
    assert [row["status"] for row in summary["rows"]] == ["fitted", "failed", "fitted"]
    assert summary["rows"][1]["error"] == failure["error"]
    assert [summary["rows"][i]["psnr"] for i in (0, 2)] == [r["psnr"] for r in reports]
    assert summary["metrics"]["psnr"]["count"] == 2
    table = (tmp_path / "run" / "summary.md").read_text()
    assert "2 of 3 inputs fitted, 1 failed" in table and "failed:" in table
    assert "psnr_holdout" not in table  # no input has it: kept in the JSON, left out of the table
    assert (tmp_path / "run" / "summary.png").stat().st_size > 1000


def torchrun(args: list[str], cwd, stdin: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "inr_cli", *args]
    return subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300,
                          env=cli_env())


def test_torchrun_shares_the_inputs_and_writes_what_one_process_writes(six_images):
    folder, names = six_images
    stdin = "\n".join(names) + "\n"
    single = run_here(["fit", "image", "-", "--out", "single", *SMALL_FIT], cwd=folder, stdin=stdin)
    assert single.returncode == 0, single.stderr
    shared = torchrun(["fit", "image", "-", "--out", "shared", *SMALL_FIT], cwd=folder, stdin=stdin)
    assert shared.returncode == 0, shared.stderr
    one = [json.loads(line) for line in single.stdout.splitlines()]
    two = [json.loads(line) for line in shared.stdout.splitlines()]
    # Every input fitted exactly once, printed once, in input order, into the same folder names.
    assert [r["input"] for r in two] == names == [r["input"] for r in one]
    shared_names, single_names = (sorted(p.name for p in (folder / sub).iterdir()) for sub in ("shared", "single"))
    assert shared_names == single_names
    for mine, theirs in zip(two, one):
        assert mine["output_dir"].replace("shared", "single") == theirs["output_dir"]
        assert mine["psnr"] == pytest.approx(theirs["psnr"], abs=1e-3)  # thread counts differ: rounding only
        assert mine["config"] == theirs["config"]
        saved = json.loads((folder / mine["output_dir"] / "report.json").read_text())
        assert saved["psnr"] == mine["psnr"]
    summary = json.loads((folder / "shared" / "summary.json").read_text())
    assert summary["fitted"] == 6 and [row["input"] for row in summary["rows"]] == names


def test_torchrun_reports_a_failed_input_and_fits_the_rest(six_images):
    folder, names = six_images
    stdin = "\n".join([names[0], "nope.png", names[1]]) + "\n"
    shared = torchrun(["fit", "image", "-", "--out", "shared-bad", *SMALL_FIT], cwd=folder, stdin=stdin)
    assert shared.returncode != 0
    assert "nope.png" in shared.stderr
    lines = [json.loads(line) for line in shared.stdout.splitlines()]  # one per input, in order, once each
    assert [line["input"] for line in lines] == [names[0], "nope.png", names[1]]
    assert [line.get("status") for line in lines] == [None, "failed", None]
    assert json.loads((folder / "shared-bad" / "summary.json").read_text())["failed"] == 1
    # A refusal made for the whole run (here: the folder holds one) is printed once, not once per rank.
    again = torchrun(["fit", "image", "-", "--out", "shared-bad", *SMALL_FIT], cwd=folder, stdin=stdin)
    assert again.returncode != 0 and again.stderr.count("already holds a finished run") == 1, again.stderr
    unusable = torchrun(["fit", "image", "-", "--out", "never", "--steps", "0"], cwd=folder, stdin=stdin)
    assert unusable.returncode != 0 and unusable.stderr.count("inr: error: --steps must be") == 1, unusable.stderr
    unknown = torchrun(["fit", "image", "-", "--out", "never", "--stepz", "3"], cwd=folder, stdin=stdin)
    assert unknown.returncode != 0 and unknown.stderr.count("No such option: --stepz") == 1, unknown.stderr


# ------------------------------------------------------------------------------------- same-shaped inputs together

def crops_as_signals(camera_u8, count: int = 3):
    import numpy as np
    import torch

    from training.fitting.signal import image_signal

    tiles = [camera_u8[i * 40:i * 40 + 24, 200:224] for i in range(count)]
    return [image_signal(torch.from_numpy(tile.astype(np.float32) / 255.0)[:, :, None]) for tile in tiles]


def test_inputs_named_like_the_run_s_own_files_get_folders_of_other_names(tmp_path, camera_u8, capsys):
    """An input's folder takes its file's stem, except where that stem is a file the run writes beside the
    folders (index.html, summary.json, ...) or '.' / '..' (the stems of '..png' and '...png'): the overview page
    and the summary were written over those folders' names and failed with a traceback."""
    names = ["index.html.png", "summary.json.png", "..png", "...png", "plain.png"]
    from PIL import Image

    paths = []
    for i, name in enumerate(names):
        Image.fromarray(camera_u8[i * 8:i * 8 + 8, :8]).save(tmp_path / name, format="PNG")
        paths.append(str(tmp_path / name))
    fit_config = FitConfig(model="siren", hidden=8, layers=1, steps=3, device="cpu", eval_every=0)
    code = run_fit_command(FitCommandConfig("image", fit_config, ImageOptions()), paths,
                           OutputOptions(out=tmp_path / "run", as_json=True, show_progress=False))
    assert code == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    folders = [Path(report["output_dir"]).name for report in reports]
    assert folders == ["index.html-2", "summary.json-2", ".-2", "..-2", "plain"]
    run = tmp_path / "run"
    assert all((run / folder / "report.json").is_file() for folder in folders)
    assert (run / "index.html").is_file() and json.loads((run / "summary.json").read_text())["fitted"] == 5


GROUPED_CASES = [("siren", {}), ("fourier-mfn", {}), ("gabor-mfn", {}),
                 ("isiren", {}), ("fourier-imfn", {}), ("gabor-imfn", {}),
                 ("gabor-imfn", {"batch_size": 200}),  # minibatches: the amortized cache indexed per batch
                 ("fourier-imfn", {"amortize": False}),  # a solve from zero every step
                 ("fourier-imfn", {"solver": SolverSettings(solver="anderson", backward="exact")}),
                 ("siren", {"batch_size": 200})]


@pytest.mark.parametrize("model,options", GROUPED_CASES)
def test_a_signal_fitted_in_a_group_ends_where_it_ends_alone(camera_u8, model, options):
    from inr_cli.modalities.image import IMAGE
    from training.fitting.fit import fit
    from training.fitting.grouped import fit_group

    signals = crops_as_signals(camera_u8)
    layers = 1 if model.endswith("imfn") or model == "isiren" else 2
    config = FitConfig(model=model, hidden=16, layers=layers, steps=30, device="cpu", eval_every=10, **options)
    together = fit_group(signals, config, IMAGE.recipe)
    for signal, outcome in zip(signals, together):
        alone = fit(signal, config, IMAGE.recipe)
        assert outcome.error is None
        assert outcome.result.final.psnr == pytest.approx(alone.final.psnr, abs=0.05)
        assert outcome.result.batch_psnr[-1] == pytest.approx(alone.batch_psnr[-1], abs=0.05)
        # Measured along the run as a fit alone is, and the same network kept (the best of those measurements).
        assert [entry["step"] for entry in outcome.result.evaluations] == [10, 20, 30]
        assert [entry["psnr"] for entry in outcome.result.evaluations] == pytest.approx(
            [entry["psnr"] for entry in alone.evaluations], abs=0.05)
        assert outcome.result.kept_step == alone.kept_step
        if alone.solver is not None:  # each report has its own signal's solver statistics
            mine, reference = outcome.result.solver, alone.solver
            assert mine["evaluation"] == pytest.approx(reference["evaluation"], rel=1e-3, abs=1e-6)
            for key in ("max_rel_residual", "mean_rel_residual"):
                if key in reference["training"]:
                    assert mine["training"][key] == pytest.approx(reference["training"][key], rel=1e-3)
    # Each signal has its own parameters: the three fitted networks differ.
    weights = [outcome.result.model.head.weight for outcome in together]
    assert not torch_equal(weights[0], weights[1])


def test_shapes_with_as_many_samples_fit_together_each_on_its_own_points():
    import torch

    from inr_cli.modalities.shape import SHAPE
    from training.fitting.fit import fit
    from training.fitting.grouped import fit_group, group_key
    from training.fitting.signal import Samples, ScatteredSamples

    def ball(radius: float, seed: int) -> ScatteredSamples:
        generator = torch.Generator().manual_seed(seed)
        points = torch.rand(600, 3, generator=generator) * 2 - 1
        held = torch.rand(200, 3, generator=generator) * 2 - 1
        distance = lambda p: p.norm(dim=1, keepdim=True) - radius  # noqa: E731
        return ScatteredSamples(Samples(points, distance(points)), {"uniform": Samples(held, distance(held))})

    signals = [ball(0.5, 1), ball(0.7, 2)]
    assert group_key(signals[0]) == group_key(signals[1])
    config = FitConfig(model="fourier-imfn", hidden=16, layers=1, steps=25, device="cpu", eval_every=0,
                       batch_size=300)
    together = fit_group(signals, config, SHAPE.recipe)
    for signal, outcome in zip(signals, together):
        alone = fit(signal, config, SHAPE.recipe)
        assert outcome.result.batch_psnr[-1] == pytest.approx(alone.batch_psnr[-1], abs=0.05)
        assert outcome.result.final.iou == pytest.approx(alone.final.iou, abs=1e-3)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_compiled_group_trains_like_the_eager_one_and_a_failed_compile_falls_back(camera_u8, monkeypatch):
    import torch

    from inr_cli.modalities.image import IMAGE
    from training.fitting import step as step_module
    from training.fitting.grouped import fit_group

    monkeypatch.setenv("INR_COMPILE_BACKEND", "aot_eager")  # traces and splits as inductor does, without codegen
    signals = crops_as_signals(camera_u8)
    config = FitConfig(model="siren", hidden=16, layers=2, steps=20, device="cpu", eval_every=0)
    eager = fit_group(signals, replace(config, compile=False), IMAGE.recipe)
    compiled = fit_group(signals, replace(config, compile=True), IMAGE.recipe)
    for a, b in zip(eager, compiled):
        assert b.result.compiled and b.result.compile_seconds > 0 and b.result.timed_steps == 19
        assert not a.result.compiled and a.result.compile_seconds == 0 and a.result.timed_steps == 20
        assert b.result.final.psnr == pytest.approx(a.result.final.psnr, abs=1e-3)
    assert compiled[0].result.config.compile is True

    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(step_module, "compile_function", lambda function: torch.compile(function, backend=counter))
    fit_group(signals, replace(config, compile=True, steps=2), IMAGE.recipe)
    first = counter.frame_count
    fit_group(crops_as_signals(camera_u8[100:]), replace(config, compile=True, steps=2, seed=1), IMAGE.recipe)
    assert first >= 1 and counter.frame_count == first  # another group of the same shape: nothing recompiled

    def broken(function):
        def fail(*args, **kwargs):
            raise RuntimeError("no compiler here\nsecond line")
        return fail

    monkeypatch.setattr(step_module, "_COMPILE_FAILURES", {})  # what this test's failures leave behind goes with it
    monkeypatch.setattr(step_module, "compile_function", broken)
    fallen = fit_group(signals, replace(config, compile=True), IMAGE.recipe)
    for a, b in zip(eager, fallen):
        assert not b.result.compiled and b.result.final.psnr == pytest.approx(a.result.final.psnr, abs=1e-4)
        assert "torch.compile failed (RuntimeError: no compiler here); the group's training step ran eagerly" \
            in b.result.notes
    # The next group of the model starts eager, without paying a failing compile again.
    attempts = []
    monkeypatch.setattr(step_module, "compile_function", lambda function: attempts.append(function) or broken(function))
    again = fit_group(signals, replace(config, compile=True, steps=3), IMAGE.recipe)
    assert attempts == [] and not again[0].result.compiled
    assert "torch.compile failed (RuntimeError: no compiler here); the group's training step ran eagerly" \
        in again[0].result.notes
    implicit = fit_group(signals, replace(config, model="fourier-imfn", layers=1, steps=3, compile=True),
                         IMAGE.recipe)
    assert not implicit[0].result.compiled and any("ran eagerly" in n for n in implicit[0].result.notes)
    # Its first step, an ordinary eager one, counts in its time (it was timed apart as if compiling, and left out).
    assert implicit[0].result.compile_seconds == 0 and implicit[0].result.timed_steps == 3
    assert torch.is_grad_enabled()


def test_a_diverging_signal_fails_alone_and_leaves_its_group_untouched(camera_u8):
    from inr_cli.modalities.image import IMAGE
    from training.fitting.fit import fit
    from training.fitting.grouped import fit_group

    signals = crops_as_signals(camera_u8)
    signals[1].values[5, 0] = float("nan")  # its loss is not finite from the first step
    config = FitConfig(model="siren", hidden=16, layers=1, steps=20, device="cpu", eval_every=0)
    together = fit_group(signals, config, IMAGE.recipe)
    assert together[1].result is None and "diverged at step 1" in str(together[1].error)
    for index in (0, 2):
        alone = fit(signals[index], config, IMAGE.recipe)
        assert together[index].result.final.psnr == pytest.approx(alone.final.psnr, abs=1e-4)


def test_cli_groups_same_shaped_inputs_and_their_checkpoints_sample(tmp_path, camera_u8, astronaut_u8):
    names = []
    for i in range(3):
        names.append(save_png(tmp_path / f"tile{i}.png", camera_u8[i * 40:i * 40 + 24, 200:224]).name)
    # 3 channels: a group of its own, between the grey tiles, which still fit together (and report in order).
    names.insert(1, save_png(tmp_path / "colour.png", astronaut_u8[:24, :24]).name)
    stdin = "\n".join(names) + "\n"
    grouped = run_here(["fit", "image", "-", "--out", "grouped", *SMALL_FIT], cwd=tmp_path, stdin=stdin)
    alone = run_here(["fit", "image", "-", "--out", "alone", "--group-size", "1", *SMALL_FIT], cwd=tmp_path,
                    stdin=stdin)
    assert grouped.returncode == 0 and alone.returncode == 0, grouped.stderr + alone.stderr
    together = [json.loads(line) for line in grouped.stdout.splitlines()]
    separate = [json.loads(line) for line in alone.stdout.splitlines()]
    assert [r["input"] for r in together] == names
    for report, reference in zip(together, separate):
        assert report["psnr"] == pytest.approx(reference["psnr"], abs=0.05)
    assert all("fitted together with 2 other input(s)" in r["notes"][-1]
               for r in together if r["input"] != "colour.png")
    assert not any("fitted together" in note for note in together[1]["notes"])
    assert not any("fitted together" in note for r in separate for note in r["notes"])
    # A grouped fit's checkpoint is an ordinary single-signal checkpoint.
    sample = run_here(["sample", "grouped/tile1/checkpoint.pt", "--out", "tile1-x2.png", "--scale", "2"], cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    assert (tmp_path / "tile1-x2.png").is_file()


def test_group_size_must_be_positive(tmp_path, six_images):
    folder, names = six_images
    proc = run_here(["fit", "image", str(folder / names[0]), "--group-size", "0", *SMALL_FIT], cwd=tmp_path)
    assert proc.returncode == 2 and "--group-size must be at least 1" in proc.stderr


def test_inputs_of_one_shape_wait_for_each_other_but_not_without_bound(monkeypatch, camera_u8):
    from types import SimpleNamespace

    from inr_cli import fit_groups
    from inr_cli.fit_groups import WaitingGroups
    from inr_cli.fitting import Job

    import torch

    from training.fitting.signal import image_signal

    signals = crops_as_signals(camera_u8, count=2)
    other = image_signal(torch.rand(10, 12, 1))  # another shape
    config = FitConfig(model="siren", hidden=16, layers=1, steps=5, device="cpu")

    def job(index, signal):
        return Job(index, f"in{index}", None, SimpleNamespace(signal=signal), config)

    groups = WaitingGroups(group_size=2)
    assert groups.add(job(0, signals[0])) is None
    assert groups.add(job(1, other)) is None  # another shape opens its own group
    full = groups.add(job(2, signals[1]))  # the first group is full: inputs 0 and 2 fit together
    assert [j.index for j in full] == [0, 2]
    assert [[j.index for j in group] for group in groups.drain()] == [[1]]

    monkeypatch.setattr(fit_groups, "MAX_WAITING_INPUTS", 1)
    groups = WaitingGroups(group_size=8)
    assert groups.add(job(0, signals[0])) is None
    oldest = groups.add(job(1, other))  # two waiting is too many: the oldest group goes now, not full
    assert [j.index for j in oldest] == [0]


def test_crop_brings_mixed_sizes_to_one_shape(tmp_path, camera_u8, astronaut_u8):
    from inr_cli.media.images import cover_and_crop, parse_crop
    from inr_core.errors import InvalidSetting

    assert parse_crop("64x48") == (48, 64) and parse_crop("32") == (32, 32)
    for bad in ("64y48", "0x4", "x", "1x2x3"):
        with pytest.raises(InvalidSetting):
            parse_crop(bad)
    # Scaled just enough to cover the crop (the shorter side's ratio), then centred.
    pixels = (astronaut_u8[:300, :200] / 255.0).astype("float32")
    assert cover_and_crop(pixels, 48, 64).shape == (48, 64, 3)
    with pytest.raises(ValueError, match="smaller than"):
        cover_and_crop(pixels[:40], 48, 64)

    names = [save_png(tmp_path / "tall.png", camera_u8[:60, :30]).name,
             save_png(tmp_path / "wide.png", camera_u8[100:130, :90]).name,
             save_png(tmp_path / "small.png", camera_u8[:10, :10]).name]
    proc = run_here(["fit", "image", *names, "--crop", "24x20", "--out", "set", *SMALL_FIT], cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("inr: error: small.png: 10x10 is smaller than the 24x20 crop (--crop 24x20); "
                                   "choose a smaller crop")
    *reports, failure = [json.loads(line) for line in proc.stdout.splitlines()]
    assert failure == {"input": "small.png", "status": "failed", "error": proc.stderr.strip()[len("inr: error: "):]}
    assert [(r["image"]["width"], r["image"]["height"]) for r in reports] == [(24, 20), (24, 20)]
    assert all("fitted together with 1 other input(s)" in r["notes"][-1] for r in reports)


def test_a_folder_stands_for_the_images_in_it(tmp_path, camera_u8):
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    for name in ("b.png", "a.png", "nested/c.png"):
        save_png(photos / name, camera_u8[:16, :16])
    (photos / "notes.txt").write_text("not an image")
    proc = run_here(["fit", "image", "photos", "--out", "run", *SMALL_FIT], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["input"] for line in proc.stdout.splitlines()] == ["photos/a.png", "photos/b.png"]
    (tmp_path / "empty").mkdir()  # fails on its own turn, as a bad file does; the others are fitted
    proc = run_here(["fit", "image", "empty", "photos", "--out", "run2", *SMALL_FIT], cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith(
        "inr: error: empty: a folder with no files to fit in it (looked for .bmp, .gif, .jpeg, .jpg, .png,")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(line["input"], line.get("status")) for line in lines] == [
        ("empty", "failed"), ("photos/a.png", None), ("photos/b.png", None)]


def test_a_run_of_one_folder_is_named_after_it(tmp_path):
    from inr_cli.fitting import run_root

    photos = [str(tmp_path / "kodak" / name) for name in ("a.png", "b.png")]
    assert run_root(photos, None, "siren").name.startswith("kodak-siren-")
    assert run_root([photos[0], str(tmp_path / "c.png")], None, "siren").name.startswith("siren-")
    assert run_root([photos[0], "skimage:camera"], None, "siren").name.startswith("siren-")
    assert run_root([photos[0]], None, "siren").name.startswith("a-siren-")
    assert run_root(photos, tmp_path / "mine", "siren") == tmp_path / "mine"


def test_resize_stops_where_the_image_still_covers_the_crop(tmp_path, camera_u8):
    from inr_cli.media.images import covering_longest_side, read_image

    assert covering_longest_side((303, 384), 48, (48, 48)) == 61  # 48 / 303 * 384 = 60.8
    assert covering_longest_side((303, 384), 100, (48, 48)) == 100  # the resize alone covers the crop
    assert covering_longest_side((303, 384), 48, None) == 48
    wide = save_png(tmp_path / "wide.png", camera_u8[:64, :256])  # 4:1, so --resize 32 alone would give 32x8
    image = read_image(str(wide), shrink_to=32, cover=(16, 16))
    assert (image.height, image.width) == (16, 64)
    assert image.notes == ["resized from 256x64 to 64x16 (--resize 32), kept at 64 to cover the 16x16 crop"]

    proc = run_here(["fit", "image", "wide.png", "--resize", "32", "--crop", "16", "--out", "run", *SMALL_FIT],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[0])
    assert (report["image"]["width"], report["image"]["height"]) == (16, 16)


def test_cpu_groups_stay_small_enough_to_gain():
    import torch

    from training.fitting.devices import CPU_STACKED_TENSOR_BYTES, auto_group_size

    cpu = torch.device("cpu")
    # 1024 points x 256 wide: 1 MiB per signal and layer, so 16 per group (32 measured slower than one at a time).
    assert auto_group_size(1024, 256, 3, cpu, cap=64) == CPU_STACKED_TENSOR_BYTES // (4 * 256 * 1024) == 16
    assert auto_group_size(1024, 64, 3, cpu, cap=64) == 64
    assert auto_group_size(1 << 20, 256, 3, cpu, cap=64) == 1  # one big signal: never grouped


@pytest.mark.parametrize("model", ["siren", "fourier-mfn", "gabor-mfn", "isiren", "fourier-imfn", "gabor-imfn",
                                   "gabor-imfn --explicit"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("shared_points", [True, False])
def test_every_network_takes_stacked_parameters_and_gives_what_each_gives_alone(model, precision, shared_points):
    """A group calls each network's own code on the stacked parameters (one batched product per layer, the bias
    inside it; the fp32 coordinate phases under bf16 included), for shared grids and per-signal points. An
    implicit group's pieces (filters, spectrally normalised weights, one evaluation of f, the head) are each
    network's own, and a training forward advances each network's own spectral-norm estimate."""
    import torch

    from models import build_model
    from training.fitting.grouped import StackedImplicit, StackedNetworks
    from training.fitting.precision import autocast

    name, one_pass = model.split()[0], model.endswith("--explicit")
    implicit = name.endswith("imfn") or name == "isiren"
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(name, 2, 3, hidden=16, layers=2, frequency=30.0, one_pass=one_pass)
                      if implicit else build_model(name, 2, 3, hidden=16, layers=2, frequency=30.0))
    for network in models:  # trained weights, far from a fresh spectral-norm estimate
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.mul_(1.0 + 0.5 * torch.rand_like(parameter))
    stacked = StackedNetworks(models)
    points = torch.rand(50, 2) * 2 - 1 if shared_points else torch.rand(3, 50, 2) * 2 - 1

    def implicit_pieces(network, x):  # prepare (advancing the estimates in training mode), one f from zero, head
        return network.head(network.f(network.zeros(x), network.prepare(x)))

    cpu = torch.device("cpu")
    with autocast(precision, cpu):
        got = implicit_pieces(StackedImplicit(stacked), points) if implicit and not one_pass else stacked.forward()(
            points)
    assert got.shape == (3, 50, 3) and got.dtype == torch.float32
    tolerance = 1e-5 if precision == "fp32" else 2e-2
    for index, network in enumerate(models):
        own = points if shared_points else points[index]
        with autocast(precision, cpu):
            alone = implicit_pieces(network, own) if implicit and not one_pass else network(own)
        assert torch.allclose(got[index], alone, atol=tolerance)
        if implicit:
            for layer, norm in enumerate(network.norms):
                assert torch.allclose(stacked.buffers[f"norms.{layer}.u"][index], norm.u, atol=1e-6)
                assert torch.allclose(stacked.buffers[f"norms.{layer}.v"][index], norm.v, atol=1e-6)


def test_a_group_refuses_a_network_that_cannot_take_stacked_parameters():
    import torch

    from training.fitting.grouped import StackedNetworks

    with pytest.raises(ValueError, match="Linear does not take stacked parameters"):
        StackedNetworks([torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)])


@pytest.mark.parametrize("model", ["siren", "fourier-mfn", "fourier-imfn"])
def test_clips_of_one_length_stack_with_their_own_frequency_scales(tmp_path, capsys, model):
    """The audio recipe sets each clip's frequency scale from its own spectrum; two clips of one length still stack,
    each network with its own (SIREN's w0 travels with the stacked weights; the MFNs' scale only draws initial
    weights), and each ends where it ends alone."""
    import numpy as np
    import soundfile

    from inr_cli.modalities.audio import AudioOptions

    times = np.arange(2000) / 8000
    paths = []
    for name, tone in (("low.wav", 440.0), ("high.wav", 1300.0)):
        soundfile.write(tmp_path / name, 0.5 * np.sin(2 * np.pi * tone * times), 8000)
        paths.append(str(tmp_path / name))
    fit_config = FitConfig(model=model, hidden=16, layers=1, steps=30, device="cpu", eval_every=10)
    runs = {}
    for label, group_size in (("together", None), ("alone", 1)):
        code = run_fit_command(FitCommandConfig("audio", fit_config, AudioOptions()), paths,
                               OutputOptions(out=tmp_path / label, as_json=True, show_progress=False,
                                             group_size=group_size))
        assert code == 0
        runs[label] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    together, alone = runs["together"], runs["alone"]
    frequencies = [report["config"]["fit"]["frequency"] for report in together]
    assert frequencies == [report["config"]["fit"]["frequency"] for report in alone]  # each clip its own scale
    assert frequencies[1] > 2 * frequencies[0]
    assert all(any("fitted together with 1 other input" in note for note in report["notes"]) for report in together)
    for mine, lone in zip(together, alone):
        assert abs(mine["psnr"] - lone["psnr"]) <= 0.05, (mine["psnr"], lone["psnr"])


def test_a_summary_with_one_fitted_input_shows_its_value_without_a_spread(tmp_path):
    from inr_cli.summary import markdown, summarize, write_summary_page

    reports = {0: {"output_dir": str(tmp_path / "a"), "psnr": 40.0, "seconds": 2.0, "steps": 300},
               1: "could not read b.png"}
    summary = summarize(["a.png", "b.png"], reports, ("psnr",))
    assert summary["metrics"]["psnr"] == {"mean": 40.0, "std": None, "count": 1}
    footer = markdown(summary, ("psnr",), "t").splitlines()[-1]
    assert footer == "| **mean ± std (population)** | 40.00 | 2.00 |"
    reports[1] = {"output_dir": str(tmp_path / "b"), "psnr": 42.0, "seconds": 4.0, "steps": 300}
    summary = summarize(["a.png", "b.png"], reports, ("psnr",))
    assert markdown(summary, ("psnr",), "t").splitlines()[-1] == \
        "| **mean ± std (population)** | 41.00 ± 1.00 | 3.00 ± 1.00 |"  # 1.00: the population std, not the sample's
    write_summary_page(tmp_path, summary, reports, ("psnr",), "t", {})
    assert "41.00 dB ± 1.00 dB" in (tmp_path / "index.html").read_text()
    assert '<td colspan="3">mean ± std (population)</td>' in (tmp_path / "index.html").read_text()
    del reports[1]
    write_summary_page(tmp_path, summarize(["a.png"], reports, ("psnr",)), reports, ("psnr",), "t", {})
    page = (tmp_path / "index.html").read_text()
    assert 'data-sort="40.0">40.00 dB</td>' in page.split("<tfoot>")[1]
