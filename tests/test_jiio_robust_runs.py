"""`inr jiio-robust` runs as reported by an exploratory test: which checkpoint a report names, small radii, the
seed and batch of an evaluation-only run, Ctrl-C during the attacks and in the first epoch, and what the caption
and summary say of the attacks."""

import json

import torch
from test_jiio_robust_cli import TINY, inr
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
