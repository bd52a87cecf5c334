"""Damaged or hand-edited checkpoints and decoders, impossible sample sizes and non-finite training data, through
the command line: each ends with the exit code of its kind (1: a bad file or failed work, 2: a bad option value),
exactly one stderr line starting ``inr: error:``, no traceback, and no file left behind.

Most cases call the CLI's entry point in this process (a subprocess costs seconds of torch import each); the rows
a user reported are also run as subprocesses, so that everything that would reach a terminal is checked.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
import torch
from helpers import run_cli, run_here

import training.jiio.decoder_training as decoder_training
from inr_cli.app import main
from inr_cli.modalities.base import FitCommandConfig
from inr_cli.modalities.image import IMAGE, ImageOptions
from training.fitting.checkpoint import checkpoint_payload, serialize
from training.fitting.config import FitConfig
from training.fitting.fit import fit
from training.fitting.signal import image_signal
from training.jiio.decoder_checkpoint import decoder_payload
from training.jiio.decoder_training import DecoderConfig, new_training_state

HEIGHT, WIDTH = 10, 12
SIGNAL_INFO = {"kind": "image", "height": HEIGHT, "width": WIDTH, "channels": 3, "channel_names": "RGB",
               "bit_depth": 8}
REFIT = "train again (a smaller --lr keeps a run from diverging)"
SIREN = "the siren network its architecture describes (hidden 8, layers 1)"
TINY_DECODER = ["--image-size", "16", "--latent-dim", "8", "--train-batch-size", "2", "--quiet"]


@pytest.fixture(scope="module")
def fitted() -> dict:
    """A checkpoint payload as `inr fit image` writes it: a SIREN, 8 wide, fitted 3 steps to a 10x12 RGB image."""
    signal = image_signal(torch.rand(HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(0)))
    config = FitConfig(model="siren", hidden=8, layers=1, steps=3, device="cpu", eval_every=0, seed=0)
    result = fit(signal, config, IMAGE.recipe)
    run_config = FitCommandConfig("image", result.config, ImageOptions())
    return checkpoint_payload(result, SIGNAL_INFO, in_features=2, out_features=3, config=run_config.to_dict())


@pytest.fixture(scope="module")
def decoder() -> dict:
    """An untrained JIIO decoder's checkpoint (16 px, latent size 8, 4 latents): loading never needs training."""
    config = DecoderConfig(image_size=16, latent_dim=8, batch_size=2, epochs=1)
    state = new_training_state(config, torch.zeros(4, 1, 16, 16))
    state.latents.normal_(generator=torch.Generator().manual_seed(0))
    return decoder_payload(state, config, {"source": "test"})


def edited(payload: dict, edit) -> dict:
    changed = copy.deepcopy(payload)
    edit(changed)
    return changed


def call_main(args: list, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as raised:
        main([str(a) for a in args])
    return raised.value.code, capsys.readouterr().err


def inr(args: list, folder, capsys, monkeypatch, *, subprocess: bool) -> tuple[int, str]:
    """(exit code, stderr) of `inr ARGS` run in ``folder``: as a subprocess, or through the entry point here."""
    if subprocess:
        proc = run_cli(args, cwd=folder)
        return proc.returncode, proc.stderr
    monkeypatch.chdir(folder)
    return call_main(args, capsys)


def one_error_line(code: int, stderr: str, expected_code: int) -> str:
    """The single `inr: error:` line of a failed command (asserting there is exactly one and no traceback)."""
    assert code == expected_code, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("inr: error: "), stderr
    return lines[0]


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


# ------------------------------------------------------------------------------------- fitted networks' checkpoints

def _set(section, key, value):
    return lambda p: p[section].__setitem__(key, value)


def _nan_weight(p):
    p["model_state"]["head.weight"][0, 0] = float("nan")


def _inf_weight(p):
    p["model_state"]["head.bias"][1] = float("-inf")


FITTED_CASES = {
    "tensor-reshaped": (lambda p: p["model_state"].__setitem__(
        "body.0.linear.weight", p["model_state"]["body.0.linear.weight"].reshape(2, 8)),
        f"checkpoint weight body.0.linear.weight has shape 2x8, but {SIREN} has 8x2"),
    "architecture-renamed": (_set("architecture", "name", "resnet"),
                             "checkpoint names an unknown architecture 'resnet' (this inr builds siren, fourier-mfn, "
                             "gabor-mfn, isiren, fourier-imfn, gabor-imfn)"),
    "hidden-changed": (_set("architecture", "hidden", 16),
                       "checkpoint weight body.0.linear.weight has shape 8x2, but the siren network its architecture "
                       "describes (hidden 16, layers 1) has 16x2"),
    "hidden-negative": (_set("architecture", "hidden", -8),
                        "checkpoint architecture hidden is -8; it must be a whole number of at least 1"),
    "implicit-without-layers": (lambda p: p["architecture"].update(name="isiren", layers=0),
                                "checkpoint architecture cannot be built (an implicit model needs at least one "
                                "layer)"),
    "model-state-deleted": (lambda p: p.pop("model_state"), "checkpoint lacks model_state (the network's weights)"),
    "negative-height": (_set("signal", "height", -5),
                        "checkpoint signal height is -5; it must be a whole number of at least 1"),
    "channels-not-the-network-s": (_set("signal", "channels", 5),
                                   "checkpoint signal has 5 channels, but its network gives 3 values per point"),
    "bit-depth-not-a-png-s": (_set("signal", "bit_depth", 12),
                              "checkpoint image bit_depth is 12; it must be 8 or 16"),
    "extra-key": (_set("model_state", "extra", torch.zeros(3)),
                  f"checkpoint holds weights {SIREN} does not have: extra"),
    "missing-key": (lambda p: p["model_state"].pop("head.bias"),
                    f"checkpoint weights lack head.bias, which {SIREN} has"),
    "nan-weights": (_nan_weight, f"NaN in checkpoint model_state[head.weight], so nothing meaningful can be made "
                                 f"from it; {REFIT}"),
    "infinite-weights": (_inf_weight, f"infinite values in checkpoint model_state[head.bias], so nothing meaningful "
                                      f"can be made from it; {REFIT}"),
    "frequency-nan": (_set("architecture", "frequency", float("nan")),
                      "checkpoint architecture frequency is nan; it must be a positive number"),
    "unknown-solver-setting": (lambda p: p["architecture"]["solver"].__setitem__("speed", 3),
                               "checkpoint solver settings include unknown speed"),
    "config-disagrees": (lambda p: p["config"]["fit"].__setitem__("hidden", 16),
                         "checkpoint architecture hidden is 8 but its run's config says 16; the file was edited or "
                         "damaged"),
}


@pytest.mark.parametrize("case", list(FITTED_CASES))
def test_inconsistent_checkpoint_is_refused_in_one_line(tmp_path, capsys, fitted, case):
    edit, problem = FITTED_CASES[case]
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(serialize(edited(fitted, edit)))
    code, stderr = call_main(["sample", checkpoint, "--device", "cpu"], capsys)
    assert one_error_line(code, stderr, 1) == f"inr: error: {checkpoint}: {problem}"
    assert files_in(tmp_path) == ["checkpoint.pt"]  # no sample-12x10.png


def test_the_unedited_checkpoint_samples(tmp_path, capsys, fitted):
    """The cases above differ from this one by their edit alone."""
    (tmp_path / "checkpoint.pt").write_bytes(serialize(fitted))
    code, stderr = call_main(["sample", tmp_path / "checkpoint.pt", "--device", "cpu"], capsys)
    assert (code, stderr) == (0, "")
    assert files_in(tmp_path) == ["checkpoint.pt", f"sample-{WIDTH}x{HEIGHT}.png"]


@pytest.mark.parametrize("content", [b"some notes about a fit\n", np.random.default_rng(5).bytes(500)],
                         ids=["text", "random-bytes"])
def test_a_file_that_is_no_checkpoint_says_so(tmp_path, capsys, monkeypatch, content):
    (tmp_path / "model.pt").write_bytes(content)
    code, stderr = inr(["sample", "model.pt"], tmp_path, capsys, monkeypatch, subprocess=content.isascii())
    assert one_error_line(code, stderr, 1) == \
        "inr: error: model.pt: not an inr checkpoint (no inr command wrote it)"
    assert files_in(tmp_path) == ["model.pt"]


def test_a_checkpoint_cut_short_says_it_is_damaged(tmp_path, capsys, fitted):
    whole = serialize(fitted)
    (tmp_path / "checkpoint.pt").write_bytes(whole[:len(whole) // 2])  # a copy, or a full disk, cut it short
    code, stderr = call_main(["sample", tmp_path / "checkpoint.pt", "--device", "cpu"], capsys)
    assert one_error_line(code, stderr, 1) == (
        f"inr: error: {tmp_path / 'checkpoint.pt'}: truncated or damaged: it starts as a checkpoint archive but "
        "cannot be read to its end (a copy or a write that was cut short?)")


def test_nan_weights_through_a_subprocess(tmp_path, fitted):
    """The reported row: exit 0 and a black PNG before."""
    (tmp_path / "checkpoint.pt").write_bytes(serialize(edited(fitted, _nan_weight)))
    proc = run_cli(["sample", "checkpoint.pt", "--scale", "2"], cwd=tmp_path)
    assert "NaN in checkpoint model_state[head.weight]" in one_error_line(proc.returncode, proc.stderr, 1)
    assert files_in(tmp_path) == ["checkpoint.pt"]


def test_a_sample_larger_than_memory_is_refused_before_allocating(tmp_path, capsys, fitted, monkeypatch):
    monkeypatch.setattr("inr_cli.sample.available_host_bytes", lambda: 8 * 10**9)
    (tmp_path / "checkpoint.pt").write_bytes(serialize(fitted))
    code, stderr = call_main(["sample", tmp_path / "checkpoint.pt", "--width", "65536", "--device", "cpu",
                              "--out", tmp_path / "big.png"], capsys)
    # 54613 x 65536 pixels x 3 channels x 4 bytes at the peak of writing them (an image's levels and the PNG
    # encoder's copy), plus the network's working set.
    line = one_error_line(code, stderr, 1)
    assert line.startswith(f"inr: error: {tmp_path / 'big.png'}: this sample (54613 x 65536 points, 3 channels) "
                           "needs about 43.0 GB of memory, 8.0 GB is available; ask for a smaller one (--scale, "
                           "--width, --height)")
    assert files_in(tmp_path) == ["checkpoint.pt"]


# ------------------------------------------------------------------------------------------------------ decoders

@pytest.mark.parametrize("flags, message", [
    (["--fid-count", "32"], "--fid-count limits the real images of the FID: it needs --fid"),
    (["--fid-model", "inception.pt"], "--fid-model is the FID's network: it needs --fid")])
def test_fid_options_without_fid_are_refused_not_ignored(tmp_path, capsys, decoder, flags, message):
    (tmp_path / "decoder.pt").write_bytes(serialize(decoder))
    code, stderr = call_main(["sample", tmp_path / "decoder.pt", "-n", "2", *flags], capsys)
    assert one_error_line(code, stderr, 2) == f"inr: error: {message}"
    assert files_in(tmp_path) == ["decoder.pt"]


@pytest.mark.parametrize("count", ["0", "-1"])
def test_decoder_sample_count_must_be_positive(tmp_path, capsys, monkeypatch, decoder, count):
    """`-n 0` is the reported row (it drew 64 images once); it runs as a subprocess."""
    (tmp_path / "decoder.pt").write_bytes(serialize(decoder))
    code, stderr = inr(["sample", "decoder.pt", "-n", count], tmp_path, capsys, monkeypatch, subprocess=count == "0")
    assert one_error_line(code, stderr, 2) == \
        f"inr: error: --count must be between 1 and 100000, got {count}"
    assert files_in(tmp_path) == ["decoder.pt"]  # no samples-64.png


def _nan_decoder_weight(p):
    next(iter(p["model_state"].values())).view(-1)[0] = float("nan")


def _density(**changes):
    """An edit giving the decoder a latent density (two unit Gaussians at 0) with ``changes`` made to it."""
    mixture = {"weights": torch.full((2,), 0.5), "means": torch.zeros(2, 8),
               "covariances": torch.eye(8).repeat(2, 1, 1), "components": 2}
    return lambda p: p.__setitem__("density", {**mixture, **changes})


DECODER_CASES = {
    "nan-weights": (_nan_decoder_weight, "NaN in checkpoint model_state[inject.0.weight], so nothing meaningful can "
                                         f"be made from it; {REFIT}"),
    "infinite-latents": (lambda p: p["latents"].view(-1).__setitem__(0, float("inf")),
                         f"infinite values in checkpoint latents, so nothing meaningful can be made from it; {REFIT}"),
    "latent-size-changed": (lambda p: p["config"].__setitem__("latent_dim", 9),
                            "checkpoint weight inject.0.weight has shape 256x8, but the decoder its config describes "
                            "(image size 16, latent size 9) has 256x9"),
    "unknown-preset": (lambda p: p["config"].__setitem__("preset", "huge"),
                       "decoder checkpoint config setting preset must be one of: small, large; got 'huge'"),
    "weights-deleted": (lambda p: p.pop("model_state"), "decoder checkpoint lacks model_state"),
    # The reported rows below each ended in a traceback (or, for the image size, an allocation of 1.28 TB).
    "covariances-negated": (_density(covariances=-torch.eye(8).repeat(2, 1, 1)),
                            "decoder checkpoint density covariances are not positive definite"),
    "weights-all-0": (_density(weights=torch.zeros(2)), "decoder checkpoint density weights must be 0 or more, and not "
                                                        "all 0"),
    "weights-negative": (_density(weights=-torch.ones(2)), "decoder checkpoint density weights must be 0 or more, and "
                                                           "not all 0"),
    "no-components": (_density(weights=torch.zeros(0), means=torch.zeros(0, 8), covariances=torch.zeros(0, 8, 8)),
                      "decoder checkpoint density has no components"),
    "one-latent": (lambda p: p.__setitem__("latents", p["latents"][:1]),
                   "decoder checkpoint latents are (1, 8); they must be (images, 8), with 2 images at least"),
    "image-size-huge": (lambda p: p["config"].__setitem__("image_size", 100000),
                        "decoder checkpoint config setting image_size must be at most 512, got 100000"),
    "data-text": (lambda p: p.__setitem__("data", "junk"),
                  "decoder checkpoint data is a str, not a description of the training data"),
    "train-count-text": (lambda p: p["data"].__setitem__("train_count", "lots"),
                         "decoder checkpoint data.train_count is 'lots'; it must be a whole number of at least 1"),
    "source-number": (lambda p: p["data"].__setitem__("source", 123),
                      "decoder checkpoint data.source is 123; it must be a path"),
    "epoch-text": (lambda p: p.__setitem__("epoch", "x"),
                   "decoder checkpoint epoch is 'x'; it must be a whole number of 0 or more"),
    "optimizer-state-text": (lambda p: p.__setitem__("optimizer_state", "garbage"),
                             "decoder checkpoint optimizer_state is not a table of the optimizer's state"),
}


@pytest.mark.parametrize("case", list(DECODER_CASES))
def test_inconsistent_decoder_is_refused_in_one_line(tmp_path, capsys, decoder, case):
    edit, problem = DECODER_CASES[case]
    checkpoint = tmp_path / "decoder.pt"
    checkpoint.write_bytes(serialize(edited(decoder, edit)))
    code, stderr = call_main(["sample", checkpoint, "-n", "2", "--device", "cpu"], capsys)
    assert one_error_line(code, stderr, 1) == f"inr: error: {checkpoint}: {problem}"
    code, stderr = call_main(["jiio-invert", "--decoder", checkpoint, "--count", "2", "--out", tmp_path / "run",
                              "--device", "cpu", "--quiet"], capsys)
    assert one_error_line(code, stderr, 1) == f"inr: error: {checkpoint}: {problem}"
    assert files_in(tmp_path) == ["decoder.pt"]


def test_resuming_from_a_nan_decoder_is_refused_and_keeps_it(tmp_path, capsys, decoder):
    images = tmp_path / "images.npz"
    np.savez(images, images=np.zeros((6, 16, 16), np.uint8))
    run = tmp_path / "run"
    run.mkdir()
    damaged = serialize(edited(decoder, _nan_decoder_weight))
    (run / "decoder.pt").write_bytes(damaged)
    code, stderr = call_main(["jiio-invert", "--data", images, "--resume", "--epochs", "2", "--count", "2",
                              "--out", run, "--device", "cpu", *TINY_DECODER], capsys)
    assert "NaN in checkpoint model_state[inject.0.weight]" in one_error_line(code, stderr, 1)
    assert (run / "decoder.pt").read_bytes() == damaged  # the user's file is theirs to inspect
    assert files_in(run) == ["decoder.pt"]


def test_resuming_with_the_optimizer_state_of_other_weights_is_refused(tmp_path, capsys, decoder):
    np.savez(tmp_path / "images.npz", images=np.zeros((6, 16, 16), np.uint8))
    run = tmp_path / "run"
    run.mkdir()
    (run / "decoder.pt").write_bytes(serialize(edited(decoder, lambda p: p.__setitem__(
        "optimizer_state", {"state": {}, "param_groups": []}))))
    code, stderr = call_main(["jiio-invert", "--data", tmp_path / "images.npz", "--resume", "--epochs", "2", "--count",
                              "2", "--out", run, "--device", "cpu", *TINY_DECODER], capsys)
    assert one_error_line(code, stderr, 1) == f"inr: error: {run / 'decoder.pt'}: decoder checkpoint optimizer_state " \
        "does not match its weights; the file was edited or damaged"
    assert files_in(run) == ["decoder.pt"]


def test_decoder_draws_refuse_outputs_in_the_way_before_writing(tmp_path, capsys, decoder):
    """The reported rows: the grid was written, then its report met a folder (a traceback, and draws left without
    their record); --out /dev/null said "File exists"."""
    (tmp_path / "decoder.pt").write_bytes(serialize(edited(decoder, _density())))
    (tmp_path / "draws.json").mkdir()
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "file").write_text("x")
    for out, problem in [("draws.png", "draws.json: is a folder, where the sample's JSON file would go"),
                         ("folder.png", "folder.png: is a folder, where the sample's PNG file would go"),
                         ("file", "file: is not a folder, where the samples would go")]:
        code, stderr = call_main(["sample", tmp_path / "decoder.pt", "-n", "2", "--device", "cpu", "--out",
                                  tmp_path / out], capsys)
        assert one_error_line(code, stderr, 1) == f"inr: error: {tmp_path}/{problem}; choose another --out"
    assert files_in(tmp_path) == ["decoder.pt", "draws.json", "file", "folder.png"]
    code, stderr = call_main(["sample", tmp_path / "decoder.pt", "-n", "2", "--device", "cpu", "--out",
                              tmp_path / "draws"], capsys)
    assert (code, stderr) == (0, "")  # the density the cases above edit is a sound one
    assert files_in(tmp_path / "draws") == ["grid.png", "report.json"]


def test_identical_latents_without_a_density_sample_with_a_note(tmp_path, capsys, decoder):
    """The reported row: scikit-learn's two-line warning on stderr (fewer distinct codes than components)."""
    (tmp_path / "decoder.pt").write_bytes(serialize(edited(decoder, lambda p: p["latents"].zero_())))
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        code, stderr = call_main(["sample", tmp_path / "decoder.pt", "-n", "2", "--device", "cpu"], capsys)
    assert (code, stderr, escaped) == (0, "", [])
    notes = json.loads((tmp_path / "samples-2.json").read_text())["notes"]
    assert notes[1].startswith("latent density: Number of distinct clusters (1) found smaller than n_clusters (4)")


def test_training_data_with_nan_is_refused_before_training(tmp_path):
    """The reported row: a 61-line traceback and a NaN-trained decoder.pt before."""
    images = np.random.default_rng(0).random((12, 16, 16)).astype(np.float32)
    images[3, 5, 5] = np.nan
    np.savez(tmp_path / "nan.npz", images=images)
    proc = run_here(["jiio-invert", "--data", "nan.npz", "--epochs", "1", "--count", "2", "--out", "run",
                    *TINY_DECODER], cwd=tmp_path)
    assert one_error_line(proc.returncode, proc.stderr, 1) == \
        "inr: error: nan.npz: 1 of 12 images holds NaN or infinite values (the first is image 3); replace or drop them"
    assert files_in(tmp_path) == ["nan.npz"]  # no run folder, no decoder.pt


def test_a_training_run_that_diverges_leaves_no_decoder(tmp_path, capsys, monkeypatch):
    """Epoch 1 is saved (as every epoch is, for --resume); epoch 2 diverges: the run fails and takes its
    decoder.pt and folder with it."""
    saved = []

    def epoch(decoder, images, latents, optimizer, config, generator=None, on_batch=None, **parallel):
        saved.append((tmp_path / "run" / "decoder.pt").exists())
        return {"cost_per_image": float("nan") if saved[1:] else 1.0, "jacobian_penalty": 0.0}

    monkeypatch.setattr(decoder_training, "train_epoch", epoch)
    np.savez(tmp_path / "images.npz", images=np.zeros((6, 16, 16), np.uint8))
    code, stderr = call_main(["jiio-invert", "--data", tmp_path / "images.npz", "--epochs", "3", "--count", "2",
                              "--out", tmp_path / "run", "--device", "cpu", *TINY_DECODER], capsys)
    assert one_error_line(code, stderr, 1) == \
        "inr: error: decoder training diverged in epoch 2 (cost per image nan); try a smaller --lr"
    assert saved == [False, True]  # epoch 1's checkpoint existed while epoch 2 ran
    assert files_in(tmp_path) == ["images.npz"]


def test_a_training_run_that_fails_otherwise_keeps_its_saved_epochs_for_resume(tmp_path, capsys, monkeypatch):
    """Epoch 2's checkpoint cannot be written (a full disk): the run fails, and epoch 1's decoder.pt stays (it was
    deleted with the folder, so that --resume had nothing to continue); the error line is followed by one saying
    so, and --resume then finishes the run."""
    import inr_cli.jiio.decoder_runs as decoder_runs
    from helpers import full_disk_at_write

    real_write = decoder_runs.atomic_write_bytes
    full_disk_at_write(decoder_runs, 2, monkeypatch)
    np.savez(tmp_path / "images.npz", images=np.zeros((6, 16, 16), np.uint8))
    args = ["jiio-invert", "--data", tmp_path / "images.npz", "--epochs", "3", "--count", "2", "--no-fid",
            "--iters", "2", "--out", tmp_path / "run", "--device", "cpu", *TINY_DECODER]
    code, stderr = call_main(args, capsys)
    target = tmp_path / "run" / "decoder.pt"
    assert (code, stderr.splitlines()) == (1, [
        f"inr: error: {target}: cannot write: No space left on device",
        f"inr: {target} holds epoch 1 of this run, saved before the failure; add --resume to continue from it"])
    assert torch.load(target, weights_only=True)["epoch"] == 1
    monkeypatch.setattr(decoder_runs, "atomic_write_bytes", real_write)
    code, stderr = call_main([*args, "--resume"], capsys)
    assert (code, stderr) == (0, "")
    assert torch.load(target, weights_only=True)["epoch"] == 3


def test_test_images_with_nan_are_refused_before_restoring(tmp_path, capsys, decoder):
    (tmp_path / "decoder.pt").write_bytes(serialize(decoder))
    images = np.full((3, 16, 16), 0.5, np.float32)
    images[1, 0, 0] = np.nan
    np.savez(tmp_path / "test.npz", images=images)
    code, stderr = call_main(["jiio-invert", "--decoder", tmp_path / "decoder.pt", "--images", tmp_path / "test.npz",
                              "--count", "3", "--out", tmp_path / "run", "--device", "cpu", "--quiet"], capsys)
    assert one_error_line(code, stderr, 1) == f"inr: error: {tmp_path / 'test.npz'}: 1 of 3 images holds NaN or " \
        "infinite values (the first is image 1); replace or drop them"
    assert files_in(tmp_path) == ["decoder.pt", "test.npz"]


def test_a_shape_checkpoint_without_its_placement_is_refused_before_rendering(tmp_path, capsys):
    from inr_cli.modalities.shape import SHAPE, ShapeOptions
    from training.fitting.signal import Samples, ScatteredSamples

    points = torch.rand(64, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    distances = points.norm(dim=1, keepdim=True) - 0.5
    signal = ScatteredSamples(Samples(points, distances), {"uniform": Samples(points, distances)})
    config = FitConfig(model="siren", hidden=8, layers=1, steps=2, device="cpu", eval_every=0)
    result = fit(signal, config, SHAPE.recipe)
    info = {"kind": "shape", "target": "sdf", "scale": 1.0}  # "center" deleted by hand
    payload = checkpoint_payload(result, info, in_features=3, out_features=1,
                                 config=FitCommandConfig("shape", result.config, ShapeOptions()).to_dict())
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(serialize(payload))
    code, stderr = call_main(["sample", checkpoint, "--device", "cpu"], capsys)
    assert one_error_line(code, stderr, 1) == \
        f"inr: error: {checkpoint}: checkpoint signal lacks 'center', which shape samples need"
    assert files_in(tmp_path) == ["checkpoint.pt"]
