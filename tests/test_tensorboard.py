"""`--tensorboard DIR`: the event files a short fit writes, read back with tensorboard's own reader; and the one
line a user without the package gets."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from inr_cli.fitting import OutputOptions, run_fit_command
from inr_cli.modalities import FitCommandConfig
from inr_cli.modalities.image import ImageOptions
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from training.fitting.config import FitConfig
from training.metrics import psnr_from_mse

STEPS, EVAL_EVERY = 12, 4


def _events(folder) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def _steps(events: EventAccumulator, tag: str) -> list[int]:
    return [event.step for event in events.Scalars(tag)]


def _fit(tmp_path, names: list[str], model: str):
    config = FitCommandConfig("image", FitConfig(model=model, hidden=16, layers=1, steps=STEPS, device="cpu",
                                                 eval_every=EVAL_EVERY), ImageOptions())
    out = tmp_path / "run"
    code = run_fit_command(config, [str(tmp_path / name) for name in names],
                           OutputOptions(out=out, as_json=True, show_progress=False, tensorboard=tmp_path / "tb"))
    assert code == 0
    return out


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, camera_u8):
    folder = tmp_path_factory.mktemp("tb")
    for index, name in enumerate(["a.png", "b.png", "c.png"]):
        Image.fromarray(np.ascontiguousarray(camera_u8[100 + 40 * index:116 + 40 * index, 200:216])).save(folder / name)
    return folder


def test_a_single_fit_logs_its_curves_metrics_solver_and_reconstruction(pictures, tmp_path, capsys):
    (tmp_path / "a.png").write_bytes((pictures / "a.png").read_bytes())
    out = _fit(tmp_path, ["a.png"], "fourier-imfn")
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    events = _events(tmp_path / "tb" / "run")  # one input: the run folder's name
    # Followed live from the progress callback: every step on the CPU (on CUDA, every 50th).
    for tag in ("train/loss", "train/psnr", "train/learning_rate", "train/steps_per_second"):
        assert _steps(events, tag) == list(range(1, STEPS + 1)), tag
    assert events.Scalars("train/learning_rate")[-1].value == pytest.approx(report["config"]["fit"]["lr"])
    # The evaluations along the run at their steps (the last is the final evaluation), then the report's metrics.
    assert _steps(events, "eval/psnr") == [EVAL_EVERY, 2 * EVAL_EVERY, STEPS]
    assert events.Scalars("final/psnr")[0].value == pytest.approx(report["psnr"], rel=1e-6)
    assert events.Scalars("final/ssim")[0].value == pytest.approx(report["ssim"], rel=1e-6)
    # The implicit model's solver: the initial solve at step 1, the cache residual and evaluation at the end.
    initial = events.Scalars("solver/training/initial_solve_iterations_mean")
    assert [e.step for e in initial] == [1]
    assert initial[0].value == report["solver"]["training"]["initial_solve_iterations_mean"]
    assert events.Scalars("solver/evaluation/iterations_max")[0].value == \
        report["solver"]["evaluation"]["iterations_max"]
    assert _steps(events, "solver/training/max_rel_residual") == [STEPS]
    assert {"reconstruction", "target", "figures/comparison", "figures/psnr_plot"} <= set(events.Tags()["images"])
    logged = events.Images("reconstruction")[0]
    assert (logged.width, logged.height) == (16, 16)


def test_each_member_of_a_group_fit_gets_its_own_run(pictures, tmp_path, capsys):
    for name in ("b.png", "c.png"):
        (tmp_path / name).write_bytes((pictures / name).read_bytes())
    out = _fit(tmp_path, ["b.png", "c.png"], "siren")
    capsys.readouterr()
    for name in ("b", "c"):
        report = json.loads((out / name / "report.json").read_text())
        assert any("fitted together" in note for note in report["notes"])  # the two did share one stacked fit
        events = _events(tmp_path / "tb" / "run" / name)
        assert _steps(events, "train/psnr") == list(range(1, STEPS + 1))
        assert events.Scalars("final/psnr")[0].value == pytest.approx(report["psnr"], rel=1e-6)
        # The loss is the training loss (on [-1, 1]), as a fit alone logs it, not the MSE on [0, 1].
        loss, psnr = events.Scalars("train/loss")[-1].value, events.Scalars("train/psnr")[-1].value
        assert psnr_from_mse(loss) == pytest.approx(psnr, abs=1e-4)
        # Its learning rate at every step, as a fit alone logs it; its pace is the group's, once, at the end.
        assert _steps(events, "train/learning_rate") == list(range(1, STEPS + 1))
        assert events.Scalars("train/learning_rate")[-1].value == pytest.approx(report["config"]["fit"]["lr"])
        [pace] = events.Scalars("train/steps_per_second")
        assert pace.step == STEPS and pace.value == pytest.approx(report["steps_per_second"], rel=1e-6)


def test_without_the_package_the_option_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    from inr_cli.app import main

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # importing it now raises ImportError
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "image", "--steps", "5", "--out", "run", "--tensorboard", "tb", "--quiet"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("inr: error: --tensorboard needs the tensorboard package: "
                                       "pip install 'inr[tensorboard]'\n")
    assert list(tmp_path.iterdir()) == []  # refused before any work: no run folder, no log folder


@pytest.mark.parametrize("log_folder", ["notes.txt", "notes.txt/tb"])
def test_a_file_where_the_log_folder_would_go_is_refused_before_any_work(monkeypatch, tmp_path, capsys, log_folder):
    from inr_cli.app import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "image", "--steps", "5", "--out", "run", "--tensorboard", log_folder, "--quiet"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "inr: error: --tensorboard needs a folder, and notes.txt is a file\n"
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]  # no run folder


def test_a_member_that_diverged_in_its_group_logs_only_its_fit_alone(pictures, tmp_path, capsys, monkeypatch):
    import inr_cli.fitting as fitting
    from inr_core.errors import UserError
    from training.fitting.grouped import GroupOutcome

    real_fit_group = fitting.fit_group

    def second_member_runs_away(signals, config, **kwargs):
        outcomes = real_fit_group(signals, config, **kwargs)
        outcomes[1] = GroupOutcome(None, UserError("training diverged at step 3 (loss nan)"))
        return outcomes

    monkeypatch.setattr(fitting, "fit_group", second_member_runs_away)
    for name in ("b.png", "c.png"):
        (tmp_path / name).write_bytes((pictures / name).read_bytes())
    out = _fit(tmp_path, ["b.png", "c.png"], "siren")
    capsys.readouterr()
    refitted = json.loads((out / "c" / "report.json").read_text())
    assert not any("fitted together" in note for note in refitted["notes"])  # c was fitted again, alone
    for name in ("b", "c"):
        assert len(list((tmp_path / "tb" / "run" / name).glob("events.out.tfevents.*"))) == 1
    events = _events(tmp_path / "tb" / "run" / "c")
    assert _steps(events, "train/psnr") == list(range(1, STEPS + 1))  # the fit alone, once


def test_a_clip_logs_its_frames_and_first_channel_without_whole_copies(monkeypatch):
    """Only what is logged is clamped (a video's few frames, a clip's first channel) and no target is made for a
    clip: the values are those the whole clamped copy gave."""
    from types import SimpleNamespace

    from inr_cli.tensorboard_log import FitLog
    from training.fitting.evaluate import GridEvaluation
    from training.fitting.signal import GridSignal, audio_signal, video_signal

    logged = {}
    writer = SimpleNamespace(add_images=lambda tag, pixels, step, dataformats: logged.update({tag: pixels}),
                             add_audio=lambda tag, samples, step, sample_rate: logged.update({tag: samples}),
                             add_image=lambda *args, **kwargs: pytest.fail("a clip logs no image"))
    log = FitLog.__new__(FitLog)
    log.writer = writer
    monkeypatch.setattr(GridSignal, "unit_grid", lambda self: pytest.fail("a clip's target was made"))
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(12, 4, 5, 3, generator=generator) * 1.4 - 0.2  # beyond [0, 1]: clamping matters
    result = SimpleNamespace(final=GridEvaluation(frames, 0.0, None))
    log._reconstruction(result, video_signal(frames.clamp(0, 1)), {}, 7)
    whole = frames.clamp(0, 1)
    chosen = torch.linspace(0, 11, 6).long()  # VIDEO_FRAMES_LOGGED
    assert torch.equal(torch.as_tensor(logged["reconstruction/frames"]),
                       torch.as_tensor(_displayable_reference(whole[chosen])))
    clip = torch.rand(100, 2, generator=generator) * 1.4 - 0.2
    log._reconstruction(SimpleNamespace(final=GridEvaluation(clip, 0.0, None)), audio_signal(clip.clamp(0, 1)),
                        {"audio": {"rate": 8000}}, 7)
    assert torch.equal(logged["reconstruction"], clip.clamp(0, 1)[:, 0] * 2.0 - 1.0)


def _displayable_reference(pixels):
    from inr_cli.tensorboard_log import _displayable

    return _displayable(pixels)
