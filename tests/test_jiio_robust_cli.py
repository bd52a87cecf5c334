"""`inr jiio-robust` end to end on a tiny classifier (an .npz of labelled camera crops), --resume, the report and
checkpoint it writes, and its one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import in_process, save_png, untrained_decoder_checkpoint
from skimage import data

from inr_cli.app import main
import test_jiio_robust

from training.fitting.checkpoint import serialize

one_thread = test_jiio_robust.one_thread  # the autouse fixture (one CPU thread) for this module too

TINY = ["--preset", "tiny", "--image-size", "16", "--batch-size", "16", "--jiio-iters", "4", "--pgd-steps", "2",
        "--quiet"]


def inr(args, capsys) -> tuple[int, str, str]:
    return in_process(args, capsys, strip=True)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """48 gray 16x16 camera crops in two classes (upper and lower half of the photo) as an .npz."""
    camera = data.camera()
    crops = np.stack([camera[r:r + 16, c:c + 16] for r in (40, 400) for c in range(40, 40 + 24 * 16, 16)])
    labels = np.repeat([0, 1], 24)
    path = tmp_path_factory.mktemp("data") / "crops.npz"
    np.savez(path, images=crops, labels=labels)
    return path


def test_train_resume_and_report(tmp_path, labelled, capsys):
    out = tmp_path / "run"
    common = ["jiio-robust", "--data", labelled, "--train-count", "32", "--test-count", "16", *TINY, "--epsilon", "0.5",
              "--out", out]
    code, text, error = inr([*common, "--epochs", "1"], capsys)
    assert code == 0, error
    assert text.splitlines()[1].split()[:2] == ["clean", "accuracy"]
    # A resume keeps its run's recipe and adversary: an option given to change them is refused, not ignored.
    saved = (out / "classifier.pt").read_bytes()
    code, text, error = inr([*common, "--epochs", "2", "--resume", "--adversary", "pgd", "--epsilon", "0.25"], capsys)
    assert code == 1 and error.count("\n") == 0 and (out / "classifier.pt").read_bytes() == saved
    assert ("a resumed run keeps its own settings, and --adversary pgd (the run has jiio); --epsilon 0.25 (the run "
            "has 0.5) would change them" in error)
    code, text, error = inr([*common, "--epochs", "2", "--resume", "--json"], capsys)
    assert code == 0, error
    report = json.loads(text)
    assert report == json.loads((out / "report.json").read_text())
    assert [h["epoch"] for h in report["classifier"]["history"]] == [1, 2]
    assert report["notes"] == [f"resumed from {out / 'classifier.pt'} after epoch 1"]
    assert report["test"]["count"] == 16 and report["classifier"]["data"]["train_count"] == 32
    for name in ("pgd", "jiio"):
        attack = report["attacks"][name]
        assert attack["delta_norm_max"] <= 0.5 * (1 + 1e-5) and attack["delta_norm_max"] > 0.4
        assert attack["final_residual_max"] <= 1e-4 * 1.01
        assert report["accuracy"][name] == attack["accuracy"] <= report["accuracy"]["clean"] + 1e-9
    payload = torch.load(out / "classifier.pt", weights_only=True)
    assert payload["kind"] == "mdeq-classifier" and payload["epoch"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["adversarial.png", "classifier.pt", "report.json"]


def test_one_line_errors(tmp_path, labelled, capsys):
    mismatched = tmp_path / "mismatched.npz"
    np.savez(mismatched, images=np.zeros((10, 16, 16), np.uint8), labels=np.zeros(9, np.int64))
    decoder = untrained_decoder_checkpoint(tmp_path / "decoder.pt")
    cases = [
        (["--data", mismatched], 1,
         f"inr: error: {mismatched}: 10 images but its 'labels' holds 9 labels; they must match one to one"),
        (["--data", labelled, "--adversary", "fgsm"], 2,
         "inr: error: --adversary must be one of: none, pgd, jiio; got 'fgsm'"),
        (["--data", labelled, "--epsilon", "0"], 2, "inr: error: --epsilon must be a positive radius, got 0.0"),
        (["--data", labelled, "--epsilon", "-1"], 2, "inr: error: --epsilon must be a positive radius, got -1.0"),
        (["--classifier", decoder, "--test-data", labelled], 1,
         f"inr: error: {decoder}: not a classifier checkpoint (it holds a JIIO image decoder (`inr jiio-invert`)); "
         "train one with `inr jiio-robust --data DATA`"),
    ]
    for args, code, line in cases:
        out = tmp_path / "out"
        result = inr(["jiio-robust", *args, *TINY, "--out", out], capsys)
        assert (result[0], result[2]) == (code, line)
        assert not out.exists() or not any(out.iterdir())  # nothing left behind


def _classifier_checkpoint(path):
    from training.jiio.robust.checkpoint import classifier_payload
    from training.jiio.robust.classifier_training import new_state
    from training.jiio.robust.config import RobustConfig

    config = RobustConfig(preset="tiny", image_size=16, classes=2)
    path.write_bytes(serialize(classifier_payload(new_state(config), config, {"source": "test"})))
    return path


def test_sample_refuses_a_classifier(tmp_path, capsys):
    path = _classifier_checkpoint(tmp_path / "classifier.pt")
    code, _, error = inr(["sample", path], capsys)
    assert code == 1
    assert error == (f"inr: error: {path}: holds a robust MDEQ classifier (`inr jiio-robust`), which draws "
                     "nothing; attack it with `inr jiio-robust --classifier`")


def test_jiio_invert_names_a_classifier_it_is_given_as_the_decoder(tmp_path, labelled, capsys):
    path = _classifier_checkpoint(tmp_path / "classifier.pt")
    out = tmp_path / "out"
    code, _, error = inr(["jiio-invert", "--decoder", path, "--images", labelled, "--quiet", "--out", out], capsys)
    assert code == 1
    assert error == (f"inr: error: {path}: not a decoder checkpoint (it holds a robust MDEQ classifier "
                     "(`inr jiio-robust`)); train one with `inr jiio-invert --data DATA`")
    assert not out.exists()


def _edit(name, value):
    return lambda p: p.__setitem__(name, value)


@pytest.mark.parametrize("edit, problem", [
    (_edit("data", "junk"), "classifier checkpoint data is a str, not a description of the training data"),
    (lambda p: p["data"].__setitem__("train_count", "x"),
     "classifier checkpoint data.train_count is 'x'; it must be a whole number of at least 1"),
    (_edit("optimizer_state", "garbage"),
     "classifier checkpoint optimizer_state is not a table of the optimizer's state"),
    (lambda p: p["config"].__setitem__("image_size", 400000),  # 596 GiB for the test images before
     "classifier checkpoint config setting image_size must be at most 512, got 400000"),
], ids=["data-text", "train-count-text", "optimizer-state-text", "image-size-huge"])
def test_an_edited_classifier_record_is_refused_in_one_line(tmp_path, labelled, capsys, edit, problem):
    path = _classifier_checkpoint(tmp_path / "classifier.pt")
    payload = torch.load(path, weights_only=True)
    edit(payload)
    path.write_bytes(serialize(payload))
    code, _, error = inr(["jiio-robust", "--classifier", path, "--test-data", labelled, *TINY, "--out",
                          tmp_path / "out"], capsys)
    assert (code, error) == (1, f"inr: error: {path}: {problem}")
    assert not (tmp_path / "out").exists()


def test_nan_training_images_are_refused_before_training(tmp_path, capsys):
    """The reported row: a NaN classifier.pt, then an AssertionError traceback."""
    images = np.full((24, 16, 16), np.nan, np.float32)
    np.savez(tmp_path / "nan.npz", images=images, labels=np.repeat([0, 1], 12))
    out = tmp_path / "out"
    code, _, error = inr(["jiio-robust", "--data", tmp_path / "nan.npz", "--train-count", "16", "--test-count", "8",
                          "--epochs", "1", *TINY, "--out", out], capsys)
    assert (code, error) == (1, f"inr: error: {tmp_path / 'nan.npz'}: 24 of 24 images hold NaN or infinite values (the "
                                "first is image 0); replace or drop them")
    assert not out.exists() or not any(out.iterdir())


def test_colour_test_images_are_converted_for_a_gray_classifier(tmp_path, capsys):
    """The reported row: a conv-channel RuntimeError traceback."""
    path = _classifier_checkpoint(tmp_path / "classifier.pt")
    colour = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "colour.npz", images=colour, labels=np.array([0, 1, 0, 1]))
    code, text, error = inr(["jiio-robust", "--classifier", path, "--test-data", tmp_path / "colour.npz",
                             "--test-count", "4", "--attacks", "pgd", *TINY, "--out", tmp_path / "out", "--json"],
                            capsys)
    assert code == 0, error
    report = json.loads(text)
    assert report["notes"] == ["test images converted to gray (the classifier is single-channel)"]
    assert report["test"]["channels"] == 1


def test_missing_data_is_named_for_what_is_missing(tmp_path, capsys):
    """--data that does not exist is no classifier's training data; and continuing a classifier whose data is not
    recorded needs --data, not --test-data."""
    path = _classifier_checkpoint(tmp_path / "classifier.pt")
    payload = torch.load(path, weights_only=True)
    payload["data"] = {}
    path.write_bytes(serialize(payload))
    # (The resume gives no training settings: it keeps the checkpoint's, and would refuse others.)
    for args, line in [([*TINY, "--data", tmp_path / "nope.npz"], f"{tmp_path / 'nope.npz'}: no such file or folder"),
                       (["--quiet", "--classifier", path, "--resume", "--epochs", "2", "--test-data",
                         tmp_path / "nope.npz"],
                        "give the training data with --data (the classifier's training data is not recorded)")]:
        code, _, error = inr(["jiio-robust", *args, "--out", tmp_path / "out"], capsys)
        assert (code, error) == (1, f"inr: error: {line}")


def test_resume_refuses_other_images_of_the_same_count(tmp_path, labelled, capsys):
    """It continued training on the other images and recorded them as the run's data."""
    out, other = tmp_path / "run", tmp_path / "other.npz"
    with np.load(labelled) as saved:
        np.savez(other, images=255 - saved["images"], labels=saved["labels"])
    common = ["jiio-robust", "--train-count", "32", "--test-count", "8", *TINY, "--attacks", "pgd", "--out", out]
    code, _, error = inr([*common, "--data", labelled, "--epochs", "1"], capsys)
    assert code == 0, error
    saved = (out / "classifier.pt").read_bytes()
    code, _, error = inr([*common, "--data", other, "--epochs", "2", "--resume"], capsys)
    assert (code, error) == (1, f"inr: error: {other}: these are not the images the run being resumed trained on "
                                f"({labelled}); use the same --data and --train-count")
    assert (out / "classifier.pt").read_bytes() == saved


def test_a_classifier_is_measured_on_its_own_data_from_another_folder_and_refuses_it_changed(tmp_path, labelled,
                                                                                            capsys, monkeypatch):
    """The data path was recorded as typed: run from another folder, the classifier was measured on another file
    of that name there, reported as its held-out images."""
    first, second = tmp_path / "first", tmp_path / "second"
    with np.load(labelled) as saved:
        images, labels = saved["images"], saved["labels"]
    for folder, crops in ((first, images), (second, 255 - images)):
        folder.mkdir()
        np.savez(folder / "crops.npz", images=crops, labels=labels)
    measure = ["--test-count", "8", "--attacks", "pgd", "--pgd-steps", "2", "--quiet", "--json"]
    monkeypatch.chdir(first)
    code, _, error = inr(["jiio-robust", "--data", "crops.npz", "--train-count", "32", *TINY, "--epochs", "1",
                          *measure, "--out", "run"], capsys)
    assert code == 0, error
    monkeypatch.chdir(second)
    code, text, error = inr(["jiio-robust", "--classifier", first / "run" / "classifier.pt", *measure, "--out", "run"],
                            capsys)
    assert code == 0, error
    report = json.loads(text)
    source = report["classifier"]["data"]["source"]
    assert Path(source).resolve() == (first / "crops.npz").resolve() and report["test"]["source"] == \
        f"{source} (held out)"
    np.savez(first / "crops.npz", images=255 - images, labels=labels)  # the data trained on, changed since
    code, _, error = inr(["jiio-robust", "--classifier", first / "run" / "classifier.pt", *measure, "--out", "run2"],
                         capsys)
    assert (code, error) == (1, f"inr: error: {source}: not the images the classifier was trained on (the file has "
                                "changed since); give test images with --test-data")


def test_test_class_folders_are_matched_to_the_classifiers_classes_by_name(tmp_path, capsys):
    """Class folders were numbered in sorted order whatever their names, so a folder of other classes (or of some
    of the classifier's) was scored against whichever classes had those numbers."""
    from training.jiio.robust.checkpoint import classifier_payload
    from training.jiio.robust.classifier_training import new_state
    from training.jiio.robust.config import RobustConfig

    config = RobustConfig(preset="tiny", image_size=16, classes=3)
    path = tmp_path / "classifier.pt"
    path.write_bytes(serialize(classifier_payload(new_state(config), config, {"classes": ["shirt", "sock", "boot"]})))
    camera = data.camera()
    for name, row in (("boot", 40), ("shirt", 400), ("a", 40), ("b", 400)):
        folder = tmp_path / ("named" if name in ("boot", "shirt") else "other") / name
        folder.mkdir(parents=True)
        for i in range(2):
            save_png(folder / f"{i}.png", camera[row:row + 16, 16 * i:16 * i + 16])
    common = ["jiio-robust", "--classifier", path, "--test-count", "4", "--attacks", "pgd", *TINY, "--json"]
    code, text, error = inr([*common, "--test-data", tmp_path / "named", "--out", tmp_path / "named-run"], capsys)
    assert code == 0, error
    report = json.loads(text)
    assert report["test"]["classes"] == ["shirt", "sock", "boot"]
    assert report["notes"] == ["test classes matched to the classifier's by name (2 of its 3)"]
    code, _, error = inr([*common, "--test-data", tmp_path / "other", "--out", tmp_path / "other-run"], capsys)
    assert (code, error) == (1, f"inr: error: {tmp_path / 'other'}: classes a, b are not among the classifier's 3 "
                                "classes (shirt, sock, boot); name the test classes as its training data did")
    # Trained on data that named no classes (an .npz of labels alone): numbers only, so the order is kept, noted.
    path.write_bytes(serialize(classifier_payload(new_state(config), config, {"classes": ["0", "1", "2"]})))
    code, text, error = inr([*common, "--test-data", tmp_path / "other", "--out", tmp_path / "numbered-run"], capsys)
    assert code == 0, error
    assert json.loads(text)["notes"] == ["the classifier's classes have no names: the test classes (a, b) are taken "
                                         "in that order as its classes 0, 1, ..."]


def test_the_adversarial_picture_says_what_it_shows(tmp_path, labelled, capsys):
    """adversarial.png had no caption, drawn or stored as its PNG Description, where every other picture has."""
    from inr_cli.figures.layout import png_caption

    out = tmp_path / "run"
    code, text, error = inr(["jiio-robust", "--classifier", _classifier_checkpoint(tmp_path / "classifier.pt"),
                             "--test-data", labelled, "--test-count", "4", "--jiio-iters", "2", "--pgd-steps", "2",
                             "--epsilon", "0.5", "--quiet", "--json", "--out", out], capsys)
    assert code == 0, error
    report = json.loads(text)
    caption = png_caption(out / "adversarial.png")
    assert caption.startswith("jiio-robust: JIIO-trained tiny MDEQ classifier · L2 attacks of radius ε = 0.5 · "
                              "4 test images · rows: original / pgd adversarial / pgd perturbation / "
                              "jiio adversarial / jiio perturbation · ")
    accuracy = report["accuracy"]
    assert (f"accuracy clean {accuracy['clean']:.2%} · PGD-2 (step 2.5ε/2) {accuracy['pgd']:.2%} · "
            f"JIIO-2 (step 6ε/2) {accuracy['jiio']:.2%}" in caption)


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != ".inr.lock"}


def test_an_overwrite_that_fails_after_training_puts_the_old_run_back(tmp_path, labelled, capsys, monkeypatch):
    """The failed replacement left its new classifier.pt in the folder and the old run hidden in .inr-replaced."""
    import inr_cli.jiio.robust_runs as robust_runs

    out = tmp_path / "run"
    common = ["jiio-robust", "--data", labelled, "--train-count", "32", "--test-count", "16", *TINY, "--epochs", "1",
              "--attacks", "pgd", "--out", out]
    code, _, error = inr(common, capsys)
    assert code == 0, error
    before = _files(out)

    def disk_full(*args):  # the new run fails after its classifier trained, before its report
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(robust_runs, "to_json", disk_full)
    with pytest.raises(OSError):
        main([str(a) for a in [*common, "--seed", "1", "--overwrite"]])
    capsys.readouterr()
    assert _files(out) == before


def test_overwrite_over_the_folder_of_its_own_classifier_is_refused(tmp_path, capsys):
    """The claim set the classifier aside, and the run then said it had no such file."""
    out = tmp_path / "run"
    out.mkdir()
    _classifier_checkpoint(out / "classifier.pt")
    saved = (out / "classifier.pt").read_bytes()
    code, _, error = inr(["jiio-robust", "--classifier", out / "classifier.pt", "--test-data", tmp_path / "x.npz",
                          "--out", out, "--overwrite", "--quiet"], capsys)
    assert (code, error) == (1, f"inr: error: --overwrite would set aside {out / 'classifier.pt'}, the --classifier "
                                f"this run attacks, with the run in {out}; choose another --out")
    assert (out / "classifier.pt").read_bytes() == saved


def test_test_labels_beyond_the_classes_trained_on_are_refused(tmp_path, labelled, capsys):
    """Every classifier has at least 10 outputs: one trained on 2 classes was scored on labels 0..9 without a
    word."""
    out, other = tmp_path / "run", tmp_path / "three.npz"
    code, _, error = inr(["jiio-robust", "--data", labelled, "--train-count", "32", "--test-count", "16", *TINY,
                          "--epochs", "1", "--attacks", "pgd", "--out", out], capsys)
    assert code == 0, error
    arrays = np.load(labelled)
    np.savez(other, images=arrays["images"][:6], labels=np.array([0, 1, 2, 0, 1, 2]))
    code, _, error = inr(["jiio-robust", "--classifier", out / "classifier.pt", "--test-data", other, "--attacks",
                          "pgd", *TINY, "--out", tmp_path / "eval"], capsys)
    assert (code, error) == (1, f"inr: error: {other}: label 2 is not one of the 2 classes the classifier was "
                                "trained on (labels 0 to 1); test it on those classes only")


def test_numbered_test_labels_for_named_classes_are_noted():
    from inr_cli.jiio.robust_runs import _by_class_name
    from inr_cli.media.labelled import LabelledImages

    notes = []
    test = LabelledImages(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), ["0", "1"], "t.npz")
    assert _by_class_name(test, ["boot", "shirt"], notes) is test
    assert notes == ["the test labels name no classes: they are taken as the classifier's classes 0, 1, ... (boot, "
                     "shirt)"]
