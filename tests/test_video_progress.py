"""A video's PSNR along the run (history, psnr.png, --keep best) is the report's: the mean of its frames' PSNRs,
measured on the device, alone and in a group; images keep their one PSNR over all points."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import run_here, save_png
from inr_cli.modalities.video import VIDEO
from models import build_model
from training.fitting.config import FitConfig
from training.fitting.evaluate import GroupGridProgress
from training.fitting.fit import fit
from training.fitting.grouped import StackedNetworks, fit_group
from training.fitting.signal import image_signal, video_signal
from training.metrics import psnr, psnr_on_device, psnr_per_frame, to_unit_range, video_psnr

CPU = torch.device("cpu")


def uneven_clip(seed: int = 0) -> torch.Tensor:
    """Three 8x6 frames, one flat (easy), one noise (hard), one a ramp: the mean over frames of their PSNRs is far
    from the whole clip's PSNR."""
    rng = np.random.default_rng(seed)
    frames = torch.full((3, 6, 8, 1), 0.5)
    frames[1] = torch.from_numpy(rng.random((6, 8, 1), dtype=np.float32))
    frames[2] = torch.linspace(0.0, 1.0, 8).view(1, 8, 1).expand(6, 8, 1)
    return frames


def frame_mean(signal, model) -> float:
    reconstruction = signal.evaluate(model, CPU, 4096).reconstruction
    return video_psnr(psnr_per_frame(reconstruction, signal.unit_grid()))


def whole_clip(signal, model) -> float:
    return psnr(signal.evaluate(model, CPU, 4096).reconstruction, signal.unit_grid())


def test_a_video_s_progress_and_final_evaluation_are_the_mean_over_frames_as_its_report_is():
    signal = video_signal(uneven_clip())
    result = fit(signal, FitConfig(model="siren", hidden=8, layers=1, steps=5, eval_every=0), VIDEO.recipe)
    measured = signal.progress(CPU, 4096)(result.model)["psnr"]
    assert isinstance(measured, torch.Tensor) and measured.dim() == 0  # left on the device
    expected = frame_mean(signal, result.model)
    assert float(measured) == pytest.approx(expected, abs=1e-9)
    assert abs(expected - whole_clip(signal, result.model)) > 0.5  # the other definition is far off here
    assert signal.evaluate(result.model, CPU, 4096).psnr == expected
    # Chunks that split a frame add up the same.
    assert float(signal.progress(CPU, 7)(result.model)["psnr"]) == pytest.approx(expected, abs=1e-9)


def test_a_video_s_history_ends_on_its_report_s_psnr():
    signal = video_signal(uneven_clip())
    config = FitConfig(model="siren", hidden=8, layers=1, steps=6, eval_every=2, keep="last", batch_size=64)
    result = fit(signal, config, VIDEO.recipe)

    class Loaded:  # what VideoModality.metrics reads of a loaded clip
        pass
    loaded = Loaded()
    loaded.signal = signal
    assert result.evaluations[-1]["psnr"] == VIDEO.metrics(loaded, result)["psnr"] == result.final.psnr


def test_a_group_of_videos_is_measured_per_signal_as_the_mean_over_frames():
    signals = [video_signal(uneven_clip(seed)) for seed in (0, 1)]
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(build_model("siren", 3, 1, hidden=8, layers=1, frequency=30.0))
    stacked = StackedNetworks(models)
    entry = GroupGridProgress(signals, CPU, 4096)(stacked.forward(), stacked.template)
    assert entry["psnr"].shape == (2,)
    for g, (signal, model) in enumerate(zip(signals, models)):
        # (the stacked products add in another order: float32 rounding apart)
        assert float(entry["psnr"][g]) == pytest.approx(frame_mean(signal, model), abs=1e-5)
        assert abs(float(entry["psnr"][g]) - whole_clip(signal, model)) > 0.1


def test_a_grouped_video_fit_s_history_ends_on_its_final_psnr():
    signals = [video_signal(uneven_clip(seed)) for seed in (0, 1)]
    config = FitConfig(model="siren", hidden=8, layers=1, steps=4, eval_every=1, keep="best", batch_size=64)
    for outcome, signal in zip(fit_group(signals, config, VIDEO.recipe), signals):
        result = outcome.result
        if result.kept_step is None:
            assert result.evaluations[-1]["psnr"] == result.final.psnr == frame_mean(signal, result.model)
        else:  # the kept network's own entry, measured along the run, is the report's
            kept = next(e for e in result.evaluations if e["step"] == result.kept_step)
            assert kept["psnr"] == pytest.approx(result.final.psnr, abs=1e-6)


def test_an_image_s_progress_is_unchanged_one_psnr_over_all_its_points():
    pixels = torch.from_numpy(np.random.default_rng(0).random((6, 8, 3), dtype=np.float32))
    signal = image_signal(pixels)
    torch.manual_seed(0)
    model = build_model("siren", 2, 3, hidden=8, layers=1, frequency=30.0)
    coords, target = signal.train_coordinates(), signal.unit_values()[signal.train.index]
    with torch.no_grad():
        expected = psnr_on_device(to_unit_range(model(coords)), target)
    assert torch.equal(signal.progress(CPU, 4096)(model)["psnr"], expected)


def test_cli_video_history_and_psnr_plot_are_on_the_report_s_psnr(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for index, frame in enumerate(uneven_clip()):
        save_png(folder / f"{index:03d}.png", np.repeat(np.rint(frame.numpy() * 255).astype(np.uint8), 3, axis=2))
    proc = run_here(["fit", "video", "clip", "--model", "siren", "--hidden", "8", "--layers", "1", "--steps", "6",
                    "--eval-every", "2", "--keep", "last", "--out", "run", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["history"][-1]["psnr"] == report["psnr"] != report["psnr_whole_clip"]
    assert report["psnr"] == video_psnr(report["psnr_frames"])
