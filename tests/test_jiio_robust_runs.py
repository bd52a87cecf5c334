"""`inr jiio-robust` runs as reported by an exploratory test: which checkpoint a report names, small radii, the
seed and batch of an evaluation-only run, Ctrl-C during the attacks and in the first epoch, and what the caption
and summary say of the attacks."""

import json

import torch
from test_jiio_robust_cli import TINY, _classifier_checkpoint, inr
import test_jiio_robust
import test_jiio_robust_cli

one_thread = test_jiio_robust.one_thread  # the autouse fixture (one CPU thread) for this module too
labelled = test_jiio_robust_cli.labelled  # 48 labelled 16x16 camera crops in two classes, as an .npz

TRAIN = ["--train-count", "32", "--test-count", "8", *TINY, "--attacks", "pgd"]


def test_a_resume_into_another_folder_reports_the_checkpoint_it_measured(tmp_path, labelled, capsys):
    """`--classifier X --resume --out Y` trained on into Y/classifier.pt and measured that, but the report named
    X (which still held the earlier epochs) as its checkpoint."""
    first, second = tmp_path / "first", tmp_path / "second"
    code, _, error = inr(["jiio-robust", "--data", labelled, *TRAIN, "--epochs", "1", "--out", first], capsys)
    assert code == 0, error
    code, text, error = inr(["jiio-robust", "--data", labelled, *TRAIN, "--epochs", "2", "--classifier",
                             first / "classifier.pt", "--resume", "--out", second, "--json"], capsys)
    assert code == 0, error
    classifier = json.loads(text)["classifier"]
    assert classifier["checkpoint"] == str(second / "classifier.pt") and classifier["epochs"] == 2
    assert torch.load(classifier["checkpoint"], weights_only=True)["epoch"] == 2
    assert json.loads(text)["notes"] == [f"resumed from {first / 'classifier.pt'} after epoch 1"]
    # An evaluation-only run names the classifier it was given.
    code, text, error = inr(["jiio-robust", "--classifier", second / "classifier.pt", "--test-count", "8", *TINY,
                             "--attacks", "pgd", "--out", tmp_path / "eval", "--json"], capsys)
    assert code == 0, error
    assert json.loads(text)["classifier"]["checkpoint"] == str(second / "classifier.pt")


def test_a_small_epsilon_is_within_the_ball_up_to_float_rounding():
    """A perturbation of norm 1e-6 measured as attacked - images in float32 reads up to ~1e-6 above it (the pixels'
    rounding): the check allowed only 1e-5 of epsilon, and a correct attack crashed with an AssertionError."""
    from training.jiio.inference import l2_ball
    from training.jiio.robust.attacks import assert_within_ball

    images = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
    push = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    for epsilon in (1e-6, 1e-4, 1.0):
        attacked = l2_ball(images, epsilon)(images + push)
        norms = assert_within_ball(attacked - images, epsilon)
        assert 0.5 * epsilon < float(norms.max()) < epsilon + 3.4e-6  # 3.3e-6: a float32 step per pixel, in L2
    # Outside the ball by more than rounding is still refused.
    try:
        assert_within_ball(l2_ball(images, 1e-5)(images + push) - images, 1e-6)
    except AssertionError as error:
        assert str(error).startswith("perturbation of L2 norm ") and str(error).endswith(" exceeds epsilon 1e-06")
    else:
        raise AssertionError("a perturbation 10 times epsilon was let through")


def test_small_radii_train_and_measure(tmp_path, labelled, capsys):
    """--epsilon 1e-6 trained to the end and crashed in the measurement with an AssertionError traceback, leaving a
    classifier.pt and no report; 1e-4 crashed attacking a trained classifier. Both attacks now leave the clean
    accuracy (a radius far below what changes a prediction)."""
    for epsilon in ("1e-6", "1e-4"):
        out = tmp_path / epsilon
        code, text, error = inr(["jiio-robust", "--data", labelled, "--train-count", "32", "--test-count", "16",
                                 *TINY, "--adversary", "pgd", "--epochs", "1", "--epsilon", epsilon, "--out", out,
                                 "--json"], capsys)
        assert code == 0, error
        report = json.loads(text)
        assert report["accuracy"]["pgd"] == report["accuracy"]["jiio"] == report["accuracy"]["clean"]
        code, text, error = inr(["jiio-robust", "--classifier", out / "classifier.pt", "--test-count", "16", *TINY,
                                 "--epsilon", epsilon, "--out", tmp_path / f"eval-{epsilon}", "--json"], capsys)
        assert code == 0, error
        assert json.loads(text)["accuracy"]["jiio"] == report["accuracy"]["clean"]


def test_an_evaluation_only_run_attacks_with_the_seed_and_batch_given(tmp_path, labelled, capsys):
    """With --classifier, --seed and --batch-size were silently replaced by the classifier's: two seeds gave
    bit-identical attacks, --batch-size 4 attacked one batch of 8, and the report said neither."""

    path = _classifier_checkpoint(tmp_path / "classifier.pt")  # trained with seed 0, batch 64

    def attack(*args):
        code, text, error = inr(["jiio-robust", "--classifier", path, "--test-data", labelled, "--test-count", "8",
                                 "--pgd-steps", "2", "--attacks", "pgd", *args, "--out", tmp_path / "eval",
                                 "--overwrite", "--quiet", "--json"], capsys)
        assert code == 0, error
        report = json.loads(text)
        settings = report["attack_settings"]
        assert (report["classifier"]["seed"], report["classifier"]["batch_size"]) == (0, 64)
        return settings["seed"], settings["batch_size"], report["attacks"]["pgd"]["batches"], \
            report["attacks"]["pgd"]["loss_mean"]

    seed0 = attack("--seed", "0", "--batch-size", "4")
    seed7 = attack("--seed", "7", "--batch-size", "4")
    assert seed0[:3] == (0, 4, 2) and seed7[:3] == (7, 4, 2) and seed0[3] != seed7[3]
    assert attack("--seed", "7", "--batch-size", "4", "--eval-batch-size", "8")[:3] == (7, 8, 1)
    # Left out: the classifier's own, as the run that trained it measured it.
    assert attack()[:3] == (0, 64, 1)


def _ctrl_c_after_the_first_attacked_batch(monkeypatch):
    """A real SIGINT to this process once the attacks' first batch is done (the run's own handler takes it)."""
    import os
    import signal

    import inr_cli.jiio.robust_runs as robust_runs

    evaluate = robust_runs.evaluate

    def interrupted(*args, on_batch, **kwargs):
        pressed = []

        def first_then_ctrl_c(name, done):
            on_batch(name, done)
            if not pressed:  # once: a second Ctrl-C stops the process at once, as the user then means
                pressed.append(os.kill(os.getpid(), signal.SIGINT))
        return evaluate(*args, on_batch=first_then_ctrl_c, **kwargs)

    monkeypatch.setattr(robust_runs, "evaluate", interrupted)


def test_ctrl_c_while_attacking_stops_the_run_and_says_what_is_kept(tmp_path, labelled, capsys, monkeypatch):
    """The first Ctrl-C during the attacks was ignored: they ran to the end, and the run wrote its report and exited
    0 as if it had not been pressed."""
    out = tmp_path / "run"
    common = ["jiio-robust", "--data", labelled, *TRAIN, "--epochs", "1", "--eval-batch-size", "4", "--out", out]
    with monkeypatch.context() as patched:
        _ctrl_c_after_the_first_attacked_batch(patched)
        assert inr(common, capsys)[::2] == (
            130, f"inr: interrupted while attacking, before the report ({out / 'classifier.pt'} holds the trained "
                 "classifier, epoch 1); run the command again with --resume to measure it")
    assert sorted(p.name for p in out.iterdir()) == ["classifier.pt"]
    code, text, error = inr([*common, "--resume", "--json"], capsys)  # as the line says: it measures it
    assert code == 0, error
    assert json.loads(text)["classifier"]["epochs"] == 1 and (out / "report.json").is_file()
    # An evaluation-only run leaves nothing.
    evaluation = tmp_path / "eval"
    with monkeypatch.context() as patched:
        _ctrl_c_after_the_first_attacked_batch(patched)
        assert inr(["jiio-robust", "--classifier", out / "classifier.pt", "--test-count", "8", *TINY, "--attacks",
                    "pgd", "--eval-batch-size", "4", "--out", evaluation], capsys)[::2] == (
            130, "inr: interrupted while attacking, before the report (nothing written); run the command again to "
                 f"measure {out / 'classifier.pt'}")
    assert not evaluation.exists()


def _ctrl_c_in_epoch(monkeypatch, epoch):
    """A real SIGINT to this process after the first training batch of ``epoch`` (1-based)."""
    import os
    import signal

    import inr_cli.jiio.robust_runs as robust_runs

    train_classifier = robust_runs.train_classifier

    def interrupted(*args, on_batch, **kwargs):
        pressed = []

        def then_ctrl_c(current, done):
            on_batch(current, done)
            if current + 1 == epoch and not pressed:
                pressed.append(os.kill(os.getpid(), signal.SIGINT))
        return train_classifier(*args, on_batch=then_ctrl_c, **kwargs)

    monkeypatch.setattr(robust_runs, "train_classifier", interrupted)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_ctrl_c_in_training_says_what_can_be_done(tmp_path, labelled, capsys, monkeypatch):
    """Stopped in the first epoch, the line said "resume with --resume", with nothing to resume: the folder was gone
    and --resume failed, or (with --overwrite) continued the earlier run that had been put back."""
    out = tmp_path / "run"
    common = ["jiio-robust", "--data", labelled, *TRAIN, "--epochs", "2", "--out", out]

    def stopped_in(epoch, *args):
        with monkeypatch.context() as patched:
            _ctrl_c_in_epoch(patched, epoch)
            code, _, error = inr([*common, *args], capsys)
        assert code == 130
        return error

    assert stopped_in(1) == "inr: interrupted in epoch 1 (nothing saved yet); run the command again"
    assert not out.exists()
    assert inr(common, capsys)[0] == 0
    before = _files(out)
    assert stopped_in(1, "--overwrite", "--seed", "1") == (
        f"inr: interrupted in epoch 1 (nothing saved yet; the run that was in {out} is back as it was); run the "
        "command again")
    assert _files(out) == before
    assert stopped_in(2, "--overwrite", "--seed", "1") == (
        f"inr: interrupted in epoch 2 ({out / 'classifier.pt'} holds epoch 1); resume with --resume in place of "
        "--overwrite")
    # Continuing a classifier into another folder: nothing there yet, the classifier continued is untouched.
    other = tmp_path / "other"
    assert stopped_in(2, "--seed", "1", "--classifier", out / "classifier.pt", "--resume", "--epochs", "3",
                      "--out", other) == (
        f"inr: interrupted in epoch 2 (nothing saved in {other} yet; {out / 'classifier.pt'} still holds epoch 1); "
        "run the command again")
    assert not other.exists()


def test_the_caption_and_summary_name_each_attacks_budget(tmp_path, labelled, capsys):
    """A "pgd 20" and a "pgd 100" picture were captioned alike ("pgd 42.97%"), the perturbation rows' separate
    scales were not said, and a clean-trained classifier was "none-trained"."""
    from inr_cli.figures.layout import png_caption

    out = tmp_path / "run"
    code, text, error = inr(["jiio-robust", "--data", labelled, "--train-count", "32", "--test-count", "8", *TINY,
                             "--adversary", "none", "--epochs", "1", "--pgd-steps", "3", "--pgd-step-factor", "2",
                             "--jiio-iters", "5", "--out", out], capsys)
    assert code == 0, error
    report = json.loads((out / "report.json").read_text())
    accuracy, attacks = report["accuracy"], report["attacks"]
    assert png_caption(out / "adversarial.png") == (
        "jiio-robust: clean-trained tiny MDEQ classifier · L2 attacks of radius ε = 1 · 8 test images · rows: "
        "original / pgd adversarial / pgd perturbation / jiio adversarial / jiio perturbation · "
        f"accuracy clean {accuracy['clean']:.2%} · PGD-3 (step 2ε/3) "
        f"{accuracy['pgd']:.2%} · JIIO-5 (step 6ε/5) {accuracy['jiio']:.2%} · perturbation rows: mid-gray 0, black "
        "and white the largest |delta| in that row (each row on its own scale)")
    lines = text.splitlines()
    assert lines[0] == "jiio-robust: clean-trained tiny MDEQ classifier, 8 test images, L2 eps 1"
    assert lines[1] == f"  clean  accuracy {accuracy['clean']:.2%}"
    for line, (title, name, step) in zip(lines[2:4], [("PGD-3 ", "pgd", "2 eps/3"), ("JIIO-5", "jiio", "6 eps/5")]):
        assert line.startswith(f"  {title} accuracy {accuracy[name]:.2%}, loss {attacks[name]['loss_mean']:.3g}, ")
        assert line.endswith(f", step {step}")


def test_a_training_run_that_fails_keeps_its_saved_epochs_for_resume(tmp_path, labelled, capsys, monkeypatch):
    """Epoch 2's checkpoint cannot be written (a full disk): epoch 1's classifier.pt was deleted with the folder,
    so --resume had nothing to continue. It stays, a line after the error says so, and --resume finishes."""
    import inr_cli.jiio.robust_runs as robust_runs
    from helpers import full_disk_at_write

    real_write = robust_runs.atomic_write_bytes
    full_disk_at_write(robust_runs, 2, monkeypatch)
    out = tmp_path / "run"
    args = ["jiio-robust", "--data", labelled, *TRAIN, "--epochs", "3", "--out", out]
    code, _, error = inr(args, capsys)
    target = out / "classifier.pt"
    assert (code, error.splitlines()) == (1, [
        f"inr: error: {target}: cannot write: No space left on device",
        f"inr: {target} holds epoch 1 of this run, saved before the failure; run the command again with --resume "
        "to continue from it"])
    assert torch.load(target, weights_only=True)["epoch"] == 1
    monkeypatch.setattr(robust_runs, "atomic_write_bytes", real_write)
    code, _, error = inr([*args, "--resume"], capsys)
    assert code == 0, error
    assert torch.load(target, weights_only=True)["epoch"] == 3
