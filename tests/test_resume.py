"""Nothing lost, nothing mixed up: resumable fits (SIGKILL, SIGINT, SIGTERM), run-folder locking and reuse, and a
loss that runs away being rolled back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import cli_env, in_process, run_cli, run_here, save_png

# Long enough (a few seconds of training) to be stopped half-way, small enough to stay fast.
# Batches of 150 of a tile's 576 points: three an epoch, so a save every 10 steps falls inside an epoch.
FIT = ["--steps", "400", "--batch-size", "150", "--hidden", "24", "--layers", "1", "--device", "cpu", "--quiet",
       "--json", "--checkpoint-every", "10", "--eval-every", "100"]


@pytest.fixture(scope="module")
def tiles(tmp_path_factory, camera_u8):
    folder = tmp_path_factory.mktemp("tiles")
    names = [save_png(folder / f"tile{i}.png", camera_u8[i * 40:i * 40 + 24, 200:224]).name for i in range(3)]
    return folder, names


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inr_cli", *args], cwd=cwd, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def weights(folder: Path) -> dict:
    return torch.load(folder / "checkpoint.pt", weights_only=True)["model_state"]


def same_fit(a: Path, b: Path) -> None:
    """Two run folders hold the same fit, bit for bit: weights, PSNR, the evaluations along the run."""
    mine, reference = weights(a), weights(b)
    assert mine.keys() == reference.keys()
    assert all(torch.equal(mine[key], reference[key]) for key in mine)
    report, expected = (json.loads((folder / "report.json").read_text()) for folder in (a, b))
    assert report["psnr"] == expected["psnr"] and report["history"] == expected["history"]


@pytest.fixture(scope="module")
def uninterrupted(tiles):
    folder, names = tiles
    proc = run_here(["fit", "image", names[0], "--out", "whole", *FIT], cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "whole"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_a_stopped_fit_resumes_to_the_same_weights(tiles, uninterrupted, how):
    folder, names = tiles
    out = folder / f"stopped-{how.name}"
    process = start(["fit", "image", names[0], "--out", out.name, *FIT], folder)
    wait_for(out / "training-state.pt", process)
    process.send_signal(how)
    _, stderr = process.communicate(timeout=60)
    assert not (out / "report.json").exists() and (out / "training-state.pt").exists()
    if how == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:  # the fit saved its state on the way out and said where it stopped
        assert process.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[how]
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert stderr.startswith("inr: interrupted at step ")
        assert stderr.strip().endswith(f" of {names[0]}; resume with --resume")
        step = int(stderr.split("at step ")[1].split(" ")[0])
        assert torch.load(out / "training-state.pt", weights_only=True)["step"] == step
    if how == signal.SIGTERM:
        return  # the same saved state as SIGINT's: resuming it is tested there
    resumed = run_here(["fit", "image", names[0], "--out", out.name, "--resume", *FIT], cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    assert any(note.startswith("resumed at step") for note in json.loads(resumed.stdout)["notes"])
    assert not (out / "training-state.pt").exists()  # finished: nothing left to resume
    same_fit(out, uninterrupted)


def test_a_stopped_cosine_fit_resumes_on_the_same_rates(tiles):
    """The schedule is a function of the step: a resumed fit goes on at the rates of an uninterrupted one and ends
    with its weights; resuming it with another schedule is refused in one line."""
    folder, names = tiles
    cosine = [*FIT, "--lr-schedule", "cosine"]
    whole = run_here(["fit", "image", names[1], "--out", "whole-cosine", *cosine], cwd=folder)
    assert whole.returncode == 0, whole.stderr
    out = folder / "stopped-cosine"
    process = start(["fit", "image", names[1], "--out", out.name, *cosine], folder)
    wait_for(out / "training-state.pt", process)
    process.send_signal(signal.SIGINT)
    assert process.communicate(timeout=60) and process.returncode == 130
    refused = run_here(["fit", "image", names[1], "--out", out.name, "--resume", *FIT], cwd=folder)
    assert refused.returncode != 0 and "differs in lr_schedule" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    # Another image of the same size would have gone on from this one's weights: refused, by the state's record
    # of what it trained on, not by the file's name. The same image under another name resumes.
    other = run_here(["fit", "image", names[2], "--out", out.name, "--resume", *cosine], cwd=folder)
    assert other.returncode == 1 and "saved while fitting another input" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    (folder / "renamed.png").write_bytes((folder / names[1]).read_bytes())
    resumed = run_here(["fit", "image", "renamed.png", "--out", out.name, "--resume", *cosine], cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    same_fit(out, folder / "whole-cosine")


def test_a_several_input_run_resumes_keeping_what_finished(tiles):
    folder, names = tiles
    whole = run_here(["fit", "image", *names, "--out", "whole-set", "--group-size", "1", *FIT], cwd=folder)
    assert whole.returncode == 0, whole.stderr
    out = folder / "stopped-set"
    process = start(["fit", "image", *names, "--out", out.name, "--group-size", "1", *FIT], folder)
    wait_for(out / "tile1" / "training-state.pt", process)  # the first input is finished, the second under way
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 130
    assert (out / "tile0" / "report.json").exists() and not (out / "tile1" / "report.json").exists()
    first_report = (out / "tile0" / "report.json").read_text()
    resumed = run_here(["fit", "image", *names, "--out", out.name, "--resume", "--group-size", "1", *FIT],
                      cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    assert [json.loads(line)["input"] for line in resumed.stdout.splitlines()] == names  # all three, in order
    assert (out / "tile0" / "report.json").read_text() == first_report  # kept, not fitted again
    for name in names:
        same_fit(out / Path(name).stem, folder / "whole-set" / Path(name).stem)


def test_one_run_folder_one_writer_and_no_silent_reuse(tiles):
    from inr_cli.run_folder import RunFolder

    folder, names = tiles
    holder = RunFolder(folder / "busy").claim(overwrite=False, resume=False)  # another process's run, as it were
    try:
        second = run_cli(["fit", "image", names[1], "--out", "busy", *FIT], cwd=folder)  # another process
    finally:
        holder.release()
    assert second.returncode == 1 and second.stderr.startswith("inr: error: busy is being written by another inr run")
    assert len(second.stderr.strip().splitlines()) == 1
    first = run_here(["fit", "image", names[0], "--out", "busy", *FIT], cwd=folder)
    assert first.returncode == 0 and json.loads((folder / "busy" / "report.json").read_text())["input"] == names[0]

    again = run_here(["fit", "image", names[1], "--out", "busy", *FIT], cwd=folder)
    assert again.returncode == 1 and "already holds a finished run; add --overwrite" in again.stderr
    (folder / "busy" / "notes.txt").write_text("mine")  # not an output of the run: never removed
    replaced = run_here(["fit", "image", names[1], "--out", "busy", "--overwrite", *FIT[:1], "50", *FIT[2:]],
                       cwd=folder)  # a shorter fit: its report must be the one in the folder
    assert replaced.returncode == 0, replaced.stderr
    report = json.loads((folder / "busy" / "report.json").read_text())
    assert report["input"] == names[1] and report["steps"] == 50
    assert (folder / "busy" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (folder / "busy").iterdir()) == sorted([*report["files"].values(), "notes.txt"])

    both = run_here(["fit", "image", names[1], "--out", "busy", "--overwrite", "--resume", *FIT], cwd=folder)
    assert both.returncode == 2 and "--resume and --overwrite exclude each other" in both.stderr


QUICK = ["--steps", "5", "--hidden", "8", "--layers", "1", "--device", "cpu", "--quiet", "--json",
         "--eval-every", "0"]


def folder_contents(folder: Path) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_folder_of_other_files_is_not_written_into(tiles):
    folder, names = tiles
    mine = folder / "photos"
    mine.mkdir()
    save_png(mine / "target.png", torch.zeros(4, 4, dtype=torch.uint8).numpy())
    (mine / "index.html").write_text("<p>my page</p>")
    before = folder_contents(mine)
    proc = run_here(["fit", "image", "photos/target.png", "--out", "photos", *QUICK], cwd=folder)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "holds files that are not an inr run's (index.html, target.png)" in proc.stderr
    assert folder_contents(mine) == before  # the input and the page untouched
    into_file = run_here(["fit", "image", "photos/target.png", "--out", "photos/index.html", *QUICK], cwd=folder)
    assert into_file.returncode == 1 and into_file.stderr == \
        "inr: error: --out photos/index.html is a file, not a folder; choose a folder for the run\n"
    assert folder_contents(mine) == before


def test_a_failing_overwrite_keeps_the_old_run_and_a_working_one_replaces_it(tiles):
    folder, names = tiles
    first = run_here(["fit", "image", names[0], "--out", "kept", *QUICK], cwd=folder)
    assert first.returncode == 0, first.stderr
    before = folder_contents(folder / "kept")
    for bad in ("missing.png", "tile0.png.txt"):
        (folder / "tile0.png.txt").write_text("not an image")
        failed = run_here(["fit", "image", bad, "--out", "kept", "--overwrite", *QUICK], cwd=folder)
        assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert folder_contents(folder / "kept") == before  # put back exactly, nothing set aside left over
    replaced = run_here(["fit", "image", names[1], "--out", "kept", "--overwrite", *QUICK], cwd=folder)
    assert replaced.returncode == 0, replaced.stderr
    report = json.loads((folder / "kept" / "report.json").read_text())
    assert report["input"] == names[1]
    assert sorted(p.name for p in (folder / "kept").iterdir()) == sorted(report["files"].values())


def test_an_interrupted_overwrite_keeps_the_old_run_set_aside_until_the_new_one_finishes(tiles):
    folder, names = tiles
    first = run_here(["fit", "image", names[0], "--out", "aside", *QUICK], cwd=folder)
    assert first.returncode == 0, first.stderr
    old_report = (folder / "aside" / "report.json").read_text()
    process = start(["fit", "image", names[1], "--out", "aside", "--overwrite", *FIT], folder)
    wait_for(folder / "aside" / "training-state.pt", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    # Only a state to resume from was written: the old run is not given up for it.
    assert (folder / "aside" / ".inr-replaced" / "report.json").read_text() == old_report
    resumed = run_here(["fit", "image", names[1], "--out", "aside", "--resume", *FIT], cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((folder / "aside" / "report.json").read_text())["input"] == names[1]
    assert not (folder / "aside" / ".inr-replaced").exists()


def test_resume_keeps_only_this_runs_finished_inputs(tiles, monkeypatch, capsys):
    folder, names = tiles
    done = run_here(["fit", "image", names[0], "--out", "done", *QUICK], cwd=folder)
    assert done.returncode == 0, done.stderr
    same = run_here(["fit", "image", f"./{names[0]}", "--out", "done", "--resume", *QUICK], cwd=folder)
    assert same.returncode == 0 and json.loads(same.stdout)["input"] == names[0]  # kept, not refitted
    report = (folder / "done" / "report.json").read_text()
    other_input = run_here(["fit", "image", names[1], "--out", "done", "--resume", *QUICK], cwd=folder)
    assert other_input.returncode == 1 and f"a run of {names[0]}, not of {names[1]}" in other_input.stderr
    other_steps = run_here(["fit", "image", names[0], "--out", "done", "--resume", *QUICK[:1], "7", *QUICK[2:]],
                          cwd=folder)
    assert other_steps.returncode == 1 and "finished with other settings (differs in fit.steps)" in other_steps.stderr
    assert (folder / "done" / "report.json").read_text() == report
    # A report written before --keep existed ran as every fit did then: it kept its last network.
    older = json.loads(report)
    del older["config"]["fit"]["keep"]
    (folder / "done" / "report.json").write_text(json.dumps(older))
    monkeypatch.chdir(folder)
    code, out, _ = in_process(["fit", "image", names[0], "--out", "done", "--resume", "--keep", "last", *QUICK],
                              capsys)
    assert code == 0 and json.loads(out)["input"] == names[0]
    code, _, err = in_process(["fit", "image", names[0], "--out", "done", "--resume", *QUICK], capsys)
    assert code == 1 and "finished with other settings (differs in fit.keep)" in err
    for damaged in ("[1, 2]", "{}", "{not json"):  # not a table; a table of nothing; not JSON at all
        (folder / "done" / "report.json").write_text(damaged)
        proc = run_here(["fit", "image", names[0], "--out", "done", "--resume", *QUICK], cwd=folder)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "not a readable inr report" in proc.stderr


def test_a_runaway_loss_is_rolled_back_at_a_lower_learning_rate(camera_u8):
    import numpy as np

    from inr_cli.modalities.image import IMAGE
    from training.fitting.config import FitConfig
    from training.fitting.control import MAX_ROLLBACKS
    from training.fitting.fit import fit
    from training.fitting.signal import image_signal
    from inr_core.errors import UserError

    signal_ = image_signal(torch.from_numpy(camera_u8[100:124, 200:224].astype(np.float32) / 255)[:, :, None])
    config = FitConfig(model="siren", hidden=32, layers=2, steps=150, device="cpu", eval_every=0)
    # A learning rate that blows the loss up to ~1e5 within two steps: rolled back MAX_ROLLBACKS times, then one line.
    with pytest.raises(UserError, match=f"after {MAX_ROLLBACKS} rollbacks at lower learning rates; try a smaller"):
        fit(signal_, FitConfig(**{**config.__dict__, "lr": 1e3}), IMAGE.recipe)
    # One that runs away once and recovers after one halving ends finite, and says what happened.
    result = fit(signal_, FitConfig(**{**config.__dict__, "lr": 20.0}), IMAGE.recipe)
    notes = [note for note in result.notes if "ran away" in note]
    assert notes and "rolled back to step 0 and lowered the learning rate to 10" in notes[0]
    assert result.optimizer.param_groups[0]["lr"] == pytest.approx(20.0 * 0.5 ** len(notes))
    assert np.isfinite(result.final.psnr) and result.final.psnr > 15


def test_a_loss_that_runs_away_after_every_rollback_ends_with_the_last_good_network(tiles, monkeypatch, capsys):
    """A long fit whose loss ran away again after its last rollback failed with nothing written: whatever it had
    reached was lost. It now ends with its last good network, written as ever, and still counts as failed."""
    import training.fitting.fit as fit_module

    folder, names = tiles
    monkeypatch.chdir(folder)
    calls = []

    class RunsAwayAfterStep60(fit_module.TrainingStep):  # the loss it reports from the 61st call on, that is
        def __call__(self, *args):
            calls.append(1)
            loss = super().__call__(*args)
            return loss * 1e9 if len(calls) > 60 else loss

    fit = ["--hidden", "16", "--layers", "1", "--device", "cpu", "--quiet", "--json", "--eval-every", "0"]
    monkeypatch.setattr(fit_module, "TrainingStep", RunsAwayAfterStep60)
    code, out, err = in_process(["fit", "image", names[0], "--out", "stopped", "--steps", "200", *fit], capsys)
    # Snapshots every 25 steps: step 61 ran away; rolled back to step 50 three times, each running away at once.
    assert code == 1 and err.count("\n") == 1 and err.startswith(
        f"inr: error: {names[0]}: training diverged at step 51 (loss "), err
    assert err.endswith(" after 3 rollbacks at lower learning rates; its outputs hold the network of step 50, the "
                        "last good one; try a smaller --lr\n"), err
    report = json.loads(out)
    assert report == json.loads((folder / "stopped" / "report.json").read_text())
    assert report["kept_step"] == 50 and report["stopped_early"]["kept_step"] == 50
    assert report["history"][-1]["step"] == 50 and (folder / "stopped" / "checkpoint.pt").is_file()
    calls.clear()  # the same fit asked for 50 steps, none of them running away: the very same network
    code, out, err = in_process(["fit", "image", names[0], "--out", "straight", "--steps", "50", *fit], capsys)
    assert code == 0, err
    assert json.loads(out)["psnr"] == report["psnr"]


def test_a_fit_far_above_its_start_is_not_a_runaway_however_its_tiny_loss_moves():
    from training.fitting.control import runs_away

    assert runs_away(float("nan"), 1e-3, 0.3) and runs_away(float("inf"), 1e-3, 0.3)
    assert runs_away(0.1, 1e-6, 0.3)  # 40 dB lost and back within 20 dB of the start: a run-away
    assert not runs_away(1e-9, 1e-13, 0.3)  # 40 dB lost on rounding noise near 100 dB: not one
    assert not runs_away(0.1, 1e-4, 0.3)  # within 30 dB of its best: a spike, not a run-away


def test_a_fit_at_the_limit_of_float32_ends_as_fitted_not_diverged():
    from inr_cli.modalities.image import IMAGE
    from training.fitting.config import FitConfig
    from training.fitting.fit import fit
    from training.fitting.signal import image_signal

    # One pixel: the loss falls to ~1e-14, where rounding moves it by orders of magnitude from step to step.
    # Each such move used to count as a run-away: three rollbacks, then "training diverged".
    pixel = image_signal(torch.full((1, 1, 1), 128 / 255))
    result = fit(pixel, FitConfig(model="siren", hidden=8, layers=1, steps=400, device="cpu"), IMAGE.recipe)
    assert not [note for note in result.notes if "ran away" in note] and result.final.psnr > 80


def test_an_interrupted_group_starts_again_and_ends_as_if_never_stopped(tiles):
    folder, names = tiles
    fit = [*FIT[:1], "1500", *FIT[2:]]  # long enough to be caught mid-way: groups save no state of their own
    whole = run_here(["fit", "image", *names, "--out", "whole-group", *fit], cwd=folder)
    assert whole.returncode == 0, whole.stderr
    out = folder / "stopped-group"
    process = start(["fit", "image", *names, "--out", out.name, *fit], folder)
    wait_for(out / "tile2", process)  # every member's folder is made as the group starts training
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.startswith("inr: interrupted at step "), stderr
    assert stderr.endswith(f" of 3 inputs fitted together ({names[0]}, ...; a group saves no state: it starts again)"
                           "; resume with --resume\n"), stderr
    assert not any((out / Path(name).stem / "report.json").exists() for name in names)
    resumed = run_here(["fit", "image", *names, "--out", out.name, "--resume", *fit], cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    for name in names:
        same_fit(out / Path(name).stem, folder / "whole-group" / Path(name).stem)


def test_a_state_saved_before_a_setting_existed_resumes_as_fits_ran_then(tmp_path):
    from inr_cli.run_folder import TRAINING_STATE, load_training_state
    from inr_core.errors import UserError
    from training.fitting.config import FitConfig

    config = FitConfig(steps=5, device="cpu").to_dict()
    older = {key: value for key, value in config.items() if key != "keep"}  # saved before --keep
    torch.save({"config": older, "step": 3}, tmp_path / TRAINING_STATE)
    # Every fit kept its last network then. (Saved before states recorded their input, too: taken as this one's.)
    assert load_training_state(tmp_path, {**config, "keep": "last"}, "a.png", "digest")["step"] == 3
    with pytest.raises(UserError, match="differs in keep"):
        load_training_state(tmp_path, config, "a.png", "digest")


def test_resume_refuses_a_folder_laid_out_for_the_other_kind_of_run(tiles):
    """A run of one input writes into its folder's root, a run over several into a sub-folder each beside a
    summary: resuming one kind in the other's folder wrote each's page and report over the other's."""
    folder, names = tiles
    small = ["--steps", "3", "--hidden", "8", "--layers", "1", "--device", "cpu", "--quiet"]
    assert run_here(["fit", "image", names[0], "--out", "single", *small], cwd=folder).returncode == 0
    assert run_here(["fit", "image", *names[:2], "--out", "set", *small], cwd=folder).returncode == 0
    before = {path: path.read_bytes() for path in (folder / "single").rglob("*") if path.is_file()}
    as_set = run_here(["fit", "image", *names[:2], "--out", "single", "--resume", *small], cwd=folder)
    assert as_set.returncode == 1 and "holds the run of one input, not of several" in as_set.stderr
    as_single = run_here(["fit", "image", names[0], "--out", "set", "--resume", *small], cwd=folder)
    assert as_single.returncode == 1 and "holds a run over several inputs, not of one" in as_single.stderr
    assert {path: path.read_bytes() for path in (folder / "single").rglob("*") if path.is_file()} == before
    assert not (folder / "set" / "report.json").exists()
    shutil.copytree(folder / "set", folder / "moved")  # a run's folder may be moved; its reports say where it is
    again = run_here(["fit", "image", *names[:2], "--out", "moved", "--resume", "--json", *small], cwd=folder)
    assert again.returncode == 0, again.stderr  # the same kind of run resumes as before
    assert [Path(json.loads(line)["output_dir"]) for line in again.stdout.splitlines()] == [
        Path("moved") / Path(name).stem for name in names[:2]]


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_an_input_is_read_stops_the_run(tmp_path, capsys, monkeypatch, number):
    """A signal that came while an input was being read (a FIFO blocked its reader for good) only set a flag that
    no fit loop would ever see: the process went on waiting. The read here waits until the signal is sent, and the
    signal is sent only once the read has begun (inside the run's handler: never to the test process itself)."""
    import inr_cli.modalities.image as image_module

    reading = threading.Event()

    def waiting_read(*args, **kwargs):
        reading.set()
        # The signal's handler raises here. Short sleeps, not one long one: a signal that lands after reading.set()
        # but before the sleep's system call does not interrupt that call, and Python runs the handler only when
        # the call returns (seen once in CI: the run stopped after the whole 60 s).
        for _ in range(600):
            time.sleep(0.1)
        raise AssertionError("the signal did not stop the read")

    main = threading.main_thread().ident

    def send():
        if reading.wait(60):
            # To the main thread, whose sleep it interrupts: sent to the process, the kernel may hand it to this
            # thread, and Python then runs the handler only when the main thread's sleep ends (seen once in 960).
            signal.pthread_kill(main, number)

    monkeypatch.setattr(image_module, "read_image", waiting_read)
    save_png(tmp_path / "photo.png", np.zeros((4, 4), np.uint8))
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    started = time.monotonic()
    code, out, err = in_process(["fit", "image", tmp_path / "photo.png", "--steps", "2", "--out", tmp_path / "run",
                                 "--quiet", "--device", "cpu"], capsys)
    thread.join()
    assert (code, out, err) == ({signal.SIGTERM: 143, signal.SIGINT: 130}[number], "", "inr: interrupted\n")
    assert time.monotonic() - started < 30  # stopped at once, not at the end of the read
    assert not (tmp_path / "run").exists()  # its empty folder and lock went with it


def test_a_signal_that_no_training_loop_saw_is_not_swallowed(tmp_path, capsys):
    """A signal taken while training code ran waits for the loop's next step boundary; when none comes (the fit
    was past its last poll), the run still ends as interrupted when it leaves the StopRequest."""
    from inr_cli.interrupts import StopRequest
    from inr_cli.modalities.image import IMAGE
    from training.fitting.config import FitConfig
    from training.fitting.fit import fit
    from training.fitting.signal import image_signal

    sent = []

    def on_progress(progress):  # runs below the fit's frames: training code
        if not sent:
            sent.append(progress.step)
            os.kill(os.getpid(), signal.SIGTERM)

    config = FitConfig(model="siren", hidden=8, layers=1, steps=3, device="cpu")
    with pytest.raises(SystemExit) as stopped:
        with StopRequest():
            fit(image_signal(torch.rand(4, 4, 1)), config, IMAGE.recipe, on_progress=on_progress)
    assert sent and stopped.value.code == 143 and capsys.readouterr().err == "inr: interrupted\n"
