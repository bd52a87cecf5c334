"""`inr jiio-invert` and `inr sample DECODER`: training with per-epoch checkpoints and --resume, restored images
whose PSNR matches the report, the JIIO-vs-Adam comparison, decoder sampling, and one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import camera_crops_npz, in_process, run_here, save_png, untrained_decoder_checkpoint
from PIL import Image
from skimage import data

from inr_cli.commands.jiio_invert import phrase_setting
from inr_core.errors import InvalidSetting
from training.fitting.checkpoint import deserialize, serialize
from training.jiio.decoder_checkpoint import decoder_payload, training_state_from_payload
from training.jiio.decoder_training import DecoderConfig, epochs_within, train_decoder
from training.jiio.invert_config import DecoderSource, InvertConfig
from training.jiio.settings import CorruptionSettings, RestorationSettings

TINY = ["--image-size", "16", "--latent-dim", "8", "--train-batch-size", "8"]


def _inr(args, capsys) -> tuple[int, str, str]:
    return in_process(args, capsys, strip=True)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """40 gray 16x16 crops of the camera photo as an .npz (uint8): 32 to train on, 8 held out."""
    return camera_crops_npz(tmp_path_factory.mktemp("data") / "crops.npz", 40)


def _report(folder):
    return json.loads((folder / "report.json").read_text())


def test_resume_continues_exactly_as_the_uninterrupted_run():
    images = torch.from_numpy(data.camera()[:192:12, :192:12].astype(np.float32) / 127.5 - 1)  # one 16x16 image
    images = torch.stack([images.roll(k, dims=1) for k in range(12)])[:, None]
    config = DecoderConfig(image_size=16, latent_dim=8, batch_size=4, epochs=3, jiio_iterations=5)
    straight = train_decoder(config, images)
    saved = {}

    def stop_after_two(state):  # a run killed after its second epoch's checkpoint
        saved["payload"] = serialize(decoder_payload(state, config, {"source": "test"}))
        if state.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_decoder(config, images, on_epoch=stop_after_two)
    payload = deserialize(saved["payload"])
    state, saved = training_state_from_payload(payload, "test")
    resumed = train_decoder(config, images, state)
    assert resumed.epoch == 3 and len(resumed.history) == 3
    for a, b in zip(straight.decoder.state_dict().values(), resumed.decoder.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(straight.latents, resumed.latents, atol=1e-6)


def test_train_then_inpaint_writes_images_grid_report_and_checkpoint(tmp_path, collection):
    out = tmp_path / "run"
    result = run_here(["jiio-invert", "--task", "inpaint", "--data", collection, "--epochs", "2", *TINY,
                      "--count", "8", "--iters", "10", "--out", out, "--quiet", "--json"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == _report(out)
    assert report["decoder"]["trained_here"] and report["decoder"]["epochs"] == 2
    assert report["decoder"]["data"]["train_count"] == 32 and report["images"]["held_out_from_training"]
    assert report["corruption"] == {"mask_size": 5}  # 20 px at 64 px, in proportion: round(16 * 20 / 64)
    payload = deserialize((out / "decoder.pt").read_bytes())
    assert payload["epoch"] == 2 and payload["latents"].shape == (32, 8)
    assert payload["density"]["means"].shape[1] == 8
    written = sorted((out / "restored" / "jiio").glob("*.png"))
    assert len(written) == 8
    # The report's PSNR is recomputed from the written 8-bit images and the held-out originals.
    originals = np.load(collection)["images"][-8:].astype(np.float64) / 255
    restored = np.stack([np.asarray(Image.open(p), dtype=np.float64) / 255 for p in written])
    mse = ((restored - originals) ** 2).reshape(8, -1).mean(1)
    assert np.allclose(-10 * np.log10(mse), [im["jiio"]["psnr"] for im in report["per_image"]], atol=0.1)
    grid = Image.open(out / "grid.png")
    # 8 images of 16 px shown at 64 px, right of the row labels; 4 rows (corrupted, decoded, composited, original),
    # a line of PSNRs under each of the first three, and the line saying so above
    assert grid.size[0] > 8 * 64 + 7 * 4 and grid.size[1] > 4 * 64 + 3 * 4 + 3 * 12
    assert sum(im["jiio"]["seconds"] for im in report["per_image"]) == pytest.approx(
        report["methods"]["jiio"]["seconds"], rel=1e-6)
    summary = report["methods"]["jiio"]
    assert summary["iterations"] == 10 and summary["psnr_masked"] is not None
    assert summary["final_state_residual_max"] < 1e-3


def test_resume_through_the_cli_and_refusal_to_overwrite(tmp_path, collection, capsys):
    out = tmp_path / "run"
    # Extending a run to more epochs equals the longer run straight through when the rate does not depend on the
    # total (a cosine schedule stretches over the new total instead; stopping and resuming is exact either way).
    shared = ["jiio-invert", "--data", collection, *TINY, "--count", "4", "--iters", "3", "--quiet", "--no-fid",
              "--lr-schedule", "constant"]
    common = [*shared, "--out", out]
    assert run_here([*common, "--epochs", "1"], tmp_path, timeout=300).returncode == 0
    again = run_here([*common, "--epochs", "1"], tmp_path)
    assert again.returncode == 1 and ("already holds a finished run; add --overwrite to replace it, add --resume to "
                                      "continue it" in again.stderr)
    # A resume keeps its run's architecture and recipe: an option given to change them is refused, not ignored.
    finished = (out / "decoder.pt").read_bytes()
    from inr_cli.app import main  # in this process: a refusal needs no interpreter start-up

    with pytest.raises(SystemExit) as stopped:
        main([str(a) for a in [*shared, "--out", out, "--epochs", "2", "--resume", "--lr", "0.01", "--lr-schedule",
                               "cosine"]])
    error = capsys.readouterr().err
    assert stopped.value.code == 1 and error.count("\n") == 1, error
    assert ("a resumed run keeps its own settings, and --lr 0.01 (the run has 0.003); --lr-schedule cosine (the run "
            "has constant) would change them" in error)
    assert (out / "decoder.pt").read_bytes() == finished
    save_png(out / "restored" / "jiio" / "0009.png", np.zeros((4, 4), np.uint8))  # as from a run of more images
    resumed = run_here([*common, "--epochs", "2", "--resume", "--json"], tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    decoder = json.loads(resumed.stdout)["decoder"]
    assert decoder["epochs"] == 2 and decoder["epochs_trained_now"] == 1 and len(decoder["history"]) == 2
    assert sorted(p.name for p in (out / "restored" / "jiio").iterdir()) == [f"{i:04d}.png" for i in range(4)]

    straight = tmp_path / "straight"
    assert run_here([*shared, "--out", straight, "--epochs", "2"], tmp_path, timeout=300).returncode == 0
    a = deserialize((out / "decoder.pt").read_bytes())["model_state"]
    b = deserialize((straight / "decoder.pt").read_bytes())["model_state"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    kept = (out / "decoder.pt").read_bytes()  # continuing another run's decoder here would replace this one
    other = run_here([*common, "--epochs", "3", "--resume", "--decoder", straight / "decoder.pt"], tmp_path)
    assert other.returncode == 1 and "holds another run's checkpoint" in other.stderr
    assert (out / "decoder.pt").read_bytes() == kept


def test_train_minutes_lowers_the_epochs_to_what_fits(tmp_path, collection):
    assert epochs_within(60, 10, 0, cap=100) == 6  # the timed epoch and five more
    assert epochs_within(60, 10, 3, cap=100) == 9  # resumed after 3: counted from there
    assert epochs_within(60, 10, 0, cap=4) == 4  # never past --epochs
    assert epochs_within(5, 10, 0, cap=100) == 1  # the timed epoch is kept even when it overran
    out = tmp_path / "run"
    # 0.01 s of training: the first epoch overruns it, so 1 of the 5 epochs is trained, and the checkpoint's
    # schedule is that of a 1-epoch run (what --resume would continue).
    result = run_here(["jiio-invert", "--data", collection, "--epochs", "5", "--train-minutes", "0.0002", *TINY,
                      "--count", "4", "--iters", "3", "--no-fid", "--out", out, "--quiet", "--json"], tmp_path,
                     timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["decoder"]["epochs"] == 1 and report["decoder"]["epochs_trained_now"] == 1
    assert any(note.startswith("--train-minutes 0.0002: the first epoch took ")
               and note.endswith(" s, so 1 of the 5 epochs asked for were trained") for note in report["notes"])
    assert deserialize((out / "decoder.pt").read_bytes())["config"]["epochs"] == 1
    for flags, message in [(["--data", str(collection), "--train-minutes", "0"],
                            "--train-minutes must be a positive, finite number, got 0.0"),
                           (["--decoder", str(out / "decoder.pt"), "--train-minutes", "1"],
                            "--train-minutes limits training: it needs --data")]:
        refused = run_here(["jiio-invert", *flags, "--out", tmp_path / "x"], tmp_path)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr


def test_both_methods_report_time_ratios_and_sample_draws_a_grid(tmp_path, collection):
    out = tmp_path / "run"
    result = run_here(["jiio-invert", "--task", "denoise", "--data", collection, "--epochs", "1", *TINY,
                      "--count", "4", "--iters", "5", "--method", "both", "--out", out, "--quiet"], tmp_path,
                     timeout=300)
    assert result.returncode == 0, result.stderr
    assert "JIIO vs Adam" in result.stdout
    report = _report(out)
    jiio, adam = report["methods"]["jiio"], report["methods"]["adam"]
    equal_iterations, equal_loss = report["comparison"]["equal_iterations"], report["comparison"]["equal_loss"]
    # Equal iterations: the methods' own runs, with the ratio of their own seconds and their own costs.
    assert equal_iterations["iterations"] == 5 and adam["iterations"] == 5 and jiio["iterations"] == 5
    assert equal_iterations["jiio_seconds"] == pytest.approx(jiio["seconds"], rel=1e-12)
    assert equal_iterations["adam_seconds"] == pytest.approx(adam["seconds"], rel=1e-12)
    assert equal_iterations["time_ratio"] == pytest.approx(adam["seconds"] / jiio["seconds"], rel=1e-12)
    assert equal_iterations["jiio_cost"] == pytest.approx(jiio["cost_mean"], rel=1e-12)
    assert equal_iterations["adam_cost"] == pytest.approx(adam["cost_mean"], rel=1e-12)
    # Equal loss: Adam chases JIIO's mean cost (one batch here) for at most 10 x --iters steps.
    assert report["config"]["adam_max_steps"] == 50
    assert equal_loss["target_cost"] == pytest.approx(jiio["cost_mean"], rel=1e-12)
    assert equal_loss["jiio_seconds"] == equal_iterations["jiio_seconds"]
    assert equal_loss["time_ratio"] == pytest.approx(equal_loss["adam_seconds"] / jiio["seconds"], rel=1e-12)
    [steps] = equal_loss["adam_steps"]
    assert 1 <= steps <= 50 and (equal_loss["note"] is None) == equal_loss["reached"]
    if not equal_loss["reached"]:
        assert steps == 50
    elif adam["cost_mean"] > 1.01 * jiio["cost_mean"]:  # Adam had not got there in 5 steps: the chase ran longer
        assert steps > 5
    ratio = f"{equal_iterations['time_ratio']:.1f}x faster at equal iterations"
    assert ratio in result.stdout
    assert len(list((out / "restored" / "adam").glob("*.png"))) == 4

    sample = run_here(["sample", out / "decoder.pt", "-n", "10", "--json"], tmp_path)
    assert sample.returncode == 0, sample.stderr
    info = json.loads(sample.stdout)
    assert info["samples"] == 10 and info["density_components"] == 10
    grid = Image.open(out / "samples-10.png")
    assert grid.size[0] == 10 * 64 + 9 * 4 and grid.size[1] > 64  # the tiles, under their caption
    pixels = np.asarray(grid.convert("L"), dtype=np.float64)[-64:]
    assert pixels.std() > 5  # draws differ from one another: not one flat image

    run_report = (out / "report.json").read_text()
    into_run = run_here(["sample", out / "decoder.pt", "-n", "2", "--out", out], tmp_path)
    assert into_run.returncode == 1 and "holds another run (report.json is not an `inr sample` report)" in \
        into_run.stderr and (out / "report.json").read_text() == run_report
    for count in ("6", "3"):  # drawn again into one folder: no draws of the first time are left among the new
        drawn = run_here(["sample", out / "decoder.pt", "-n", count, "--out", tmp_path / "draws", "--individual"],
                        tmp_path)
        assert drawn.returncode == 0, drawn.stderr
    assert sorted(p.name for p in (tmp_path / "draws" / "samples").iterdir()) == ["0000.png", "0001.png", "0002.png"]


def test_errors_are_one_line(tmp_path, collection):
    # Exit code 2: a setting no run can use (as for any bad option value); 1: an input or run that failed.
    cases = [
        (["jiio-invert"], "give a trained decoder with --decoder", 2),
        (["jiio-invert", "--data", tmp_path / "missing.npz"], "no such file", 1),
        (["jiio-invert", "--task", "deblur", "--data", collection], "--task", 2),
        (["jiio-invert", "--data", collection, "--count", "40"], "leave none for training", 1),
        # It named a generated runs/jiio-.../decoder.pt the user never gave.
        (["jiio-invert", "--data", collection, "--resume"],
         "--resume needs --out (the run folder whose decoder.pt it continues) or --decoder", 2),
        (["jiio-invert", "--decoder", tmp_path / "nope.pt"], "no such file", 1),
        (["sample", tmp_path / "nope.pt", "-n", "4"], "no such file", 1),
    ]
    for args, message, code in cases:
        result = run_here([*args, "--quiet"] if args[0] == "jiio-invert" else args, tmp_path)
        assert result.returncode == code, (args, result.returncode, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, (args, result.stderr)
    assert not (tmp_path / "runs").exists()  # failed runs leave no output folders behind


@pytest.mark.parametrize("config, message", [
    (InvertConfig(decoder=DecoderSource(data="d", training=DecoderConfig(batch_size=0))),
     "--train-batch-size must be at least 1, got 0"),
    (InvertConfig(decoder=DecoderSource(data="d", training=DecoderConfig(lr=-1.0))),
     "--lr must be a positive, finite number, got -1.0"),
    (InvertConfig(decoder=DecoderSource(data="d", training=DecoderConfig(preset="huge"))),
     "--preset must be one of: small, large; got 'huge'"),
    (InvertConfig(decoder=DecoderSource(data="d", train_count=0)),
     "--train-count must be at least 2 (training needs 2 images at least), got 0"),
    # It passed validation and failed with exit 1 once the data was read.
    (InvertConfig(decoder=DecoderSource(data="d", train_count=1)),
     "--train-count must be at least 2 (training needs 2 images at least), got 1"),
    (InvertConfig(decoder=DecoderSource(checkpoint=Path("a.pt"), resume=True)),
     "--resume continues training: it needs --data"),
    (InvertConfig(decoder=DecoderSource(checkpoint=Path("a.pt"), data="d")),
     "--decoder with --data trains nothing new: add --resume to continue its training, or drop --data to use it "
     "as it is"),
    (InvertConfig(decoder=DecoderSource(data="d"), restoration=RestorationSettings(adam_max_steps=0)),
     "--adam-max-steps must be at least 1, got 0"),
    (InvertConfig(decoder=DecoderSource(data="d"), corruption=CorruptionSettings(sigma=0.0)),
     "--sigma must be a positive, finite number, got 0.0"),
    (InvertConfig(decoder=DecoderSource(data="d"), corruption=CorruptionSettings(sigma=float("inf"))),
     "--sigma must be a positive, finite number, got inf"),
    # Sides the decoder's branches cannot halve exactly failed with a shape mismatch after the data was read.
    (InvertConfig(decoder=DecoderSource(data="d", training=DecoderConfig(image_size=13))),
     "--image-size must be a multiple of 2 for the small preset, got 13"),
    (InvertConfig(decoder=DecoderSource(data="d", training=DecoderConfig(preset="large", image_size=28))),
     "--image-size must be a multiple of 8 for the large preset, got 28"),
    # Sizes that went to the allocator (37 GiB, 313 GB) before.
    (InvertConfig(decoder=DecoderSource(data="d", training=DecoderConfig(image_size=100000))),
     "--image-size must be at most 512, got 100000"),
    (InvertConfig(decoder=DecoderSource(data="d", training=DecoderConfig(latent_dim=10**8))),
     "--latent-dim must be at most 4096, got 100000000"),
    (InvertConfig(decoder=DecoderSource(data="d", training=DecoderConfig(image_size=512, latent_dim=4096))),
     "--latent-dim 4096 at image size 512 gives the latent's injection maps 3,221,225,472 weights, more than "
     "1,000,000,000; lower it or the image size"),
    (InvertConfig(decoder=DecoderSource(data="d"), device="tpu"),
     "--device must be one of: auto, cpu, cuda (or cuda:N); got 'tpu'"),
])
def test_settings_are_checked_below_the_cli_and_phrased_as_its_flags(config, message):
    with pytest.raises(InvalidSetting) as raised:
        config.validate()
    assert "--" not in str(raised.value)  # below the CLI, settings are named by their fields
    assert phrase_setting(raised.value) == message


def test_resume_refuses_other_images_of_the_same_count_and_a_changed_seed(tmp_path, collection, capsys):
    """It continued training on the other images (from the first ones' latents) and recorded them as its data;
    a changed --seed was ignored by training yet reported as the run's."""
    out, other = tmp_path / "run", tmp_path / "other.npz"
    np.savez(other, images=255 - np.load(collection)["images"])
    common = ["jiio-invert", *TINY, "--count", "4", "--iters", "2", "--quiet", "--no-fid", "--out", out]
    code, _, error = _inr([*common, "--data", collection, "--epochs", "1"], capsys)
    assert code == 0, error
    saved = (out / "decoder.pt").read_bytes()
    for args, message in [(["--data", other], f"inr: error: {other}: these are not the images the run being resumed "
                                              f"trained on ({collection}); use the same --data and --train-count"),
                          (["--data", collection, "--seed", "5"], "--seed 5 (the run has 0)")]:
        code, _, error = _inr([*common, *args, "--epochs", "2", "--resume"], capsys)
        assert code == 1 and error.count("\n") == 0 and message in error, error
        assert (out / "decoder.pt").read_bytes() == saved


def test_a_resume_without_seed_keeps_the_runs_seed_for_its_corruptions(tmp_path, collection, capsys):
    """A resume that left --seed out trained on with the checkpoint's seed but corrupted its test images with
    seed 0, so its PSNRs did not compare with the first run's."""
    common = ["jiio-invert", "--data", collection, *TINY, "--task", "denoise", "--count", "4", "--iters", "2",
              "--quiet", "--no-fid", "--json", "--out", tmp_path / "run"]
    code, text, error = _inr([*common, "--epochs", "1", "--seed", "5"], capsys)
    assert code == 0, error
    first = json.loads(text)
    code, text, error = _inr([*common, "--epochs", "2", "--resume"], capsys)
    assert code == 0, error
    resumed = json.loads(text)
    assert resumed["config"]["seed"] == 5 and resumed["decoder"]["epochs_trained_now"] == 1
    assert resumed["corrupted_psnr"] == first["corrupted_psnr"]


def test_a_decoder_scores_on_its_own_data_from_another_folder_and_refuses_it_changed(tmp_path, collection, capsys,
                                                                                    monkeypatch):
    """The data path was recorded as typed: run from another folder, the decoder was scored on another file of
    that name there, reported as its held-out images."""
    first, second = tmp_path / "first", tmp_path / "second"
    images = np.load(collection)["images"]
    for folder, crops in ((first, images), (second, 255 - images)):
        folder.mkdir()
        np.savez(folder / "crops.npz", images=crops)
    restore = ["--count", "4", "--iters", "2", "--quiet", "--no-fid", "--json"]
    monkeypatch.chdir(first)
    code, _, error = _inr(["jiio-invert", "--data", "crops.npz", *TINY, "--epochs", "1", *restore, "--out", "run"],
                          capsys)
    assert code == 0, error
    monkeypatch.chdir(second)
    code, text, error = _inr(["jiio-invert", "--decoder", first / "run" / "decoder.pt", *restore, "--out", "run"],
                             capsys)
    assert code == 0, error
    report = json.loads(text)
    assert Path(report["decoder"]["data"]["source"]).resolve() == (first / "crops.npz").resolve()
    assert report["images"]["held_out_from_training"] and report["images"]["source"] == [
        report["decoder"]["data"]["source"]]
    np.savez(first / "crops.npz", images=255 - images)  # the data trained on, changed since
    code, _, error = _inr(["jiio-invert", "--decoder", first / "run" / "decoder.pt", *restore, "--out", "run2"],
                          capsys)
    assert (code, error) == (1, f"inr: error: {report['images']['source'][0]}: not the images the decoder was "
                                "trained on (the file has changed since); give test images with --images")


def test_test_images_and_masks_are_checked_before_the_decoder_trains(tmp_path, collection, capsys):
    """A misspelled --images or an unusable --mask was reported only after the whole training, whose decoder.pt
    then stood in the way of running the command again."""
    black = save_png(tmp_path / "black.png", np.zeros((16, 16), np.uint8))
    for args, line in [(["--images", tmp_path / "nope"], f"{tmp_path / 'nope'}: no such file or folder"),
                       (["--task", "inpaint", "--mask", tmp_path / "nope.png"],
                        f"{tmp_path / 'nope.png'}: no such file or folder"),
                       (["--task", "inpaint", "--mask", black],
                        f"{black}: the mask marks no pixel to fill at the decoder's 16 px (white marks what is "
                        "missing)")]:
        out = tmp_path / "run"
        code, _, error = _inr(["jiio-invert", "--data", collection, *TINY, "--epochs", "1", "--count", "4", "--iters",
                               "2", "--no-fid", "--quiet", *args, "--out", out], capsys)
        assert (code, error) == (1, f"inr: error: {line}")
        assert not (out / "decoder.pt").exists()


def test_resume_refuses_another_number_of_processes(tmp_path, collection, capsys, monkeypatch):
    """--train-batch-size is per process: a decoder trained under torchrun in 2 processes, resumed in 1, went on
    with half its global batch."""
    out = tmp_path / "run"
    common = ["jiio-invert", "--data", collection, *TINY, "--count", "4", "--iters", "2", "--quiet", "--no-fid",
              "--out", out]
    code, _, error = _inr([*common, "--epochs", "1"], capsys)
    assert code == 0, error
    payload = deserialize((out / "decoder.pt").read_bytes())
    payload["data"]["world_size"] = 2  # as `torchrun --nproc_per_node=2` records it
    (out / "decoder.pt").write_bytes(serialize(payload))
    code, _, error = _inr([*common, "--epochs", "2", "--resume"], capsys)
    assert (code, error) == (1, f"inr: error: {out / 'decoder.pt'}: the run being resumed trained in 2 processes, "
                                "this one runs 1, which would change its global batch (--train-batch-size is per "
                                "process); resume it with torchrun --nproc_per_node=2")
    assert deserialize((out / "decoder.pt").read_bytes())["epoch"] == 1
    # Every rank of a launch meets the refusal alike: it was printed once per rank; rank 0 alone says it now.
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr("inr_cli.errors.RANK_ZERO_SPEAKS_SECONDS", 0.0)  # no rank 0 here to wait for
    assert _inr([*common, "--epochs", "2", "--resume"], capsys)[::2] == (1, "")


def test_ctrl_c_in_training_says_which_epoch_is_kept(tmp_path, collection, capsys, monkeypatch):
    """Ctrl-C during decoder training said only "inr: interrupted": not that the last finished epoch is saved, nor
    that --resume goes on from it (as inr fit and jiio-robust say)."""
    from inr_cli.interrupts import CtrlC
    from inr_cli.jiio import decoder_runs

    out = tmp_path / "run"
    common = ["jiio-invert", "--data", collection, *TINY, "--count", "4", "--iters", "2", "--quiet", "--no-fid",
              "--out", out]

    def interrupted(*args, **kwargs):
        raise CtrlC()

    with monkeypatch.context() as patched:
        patched.setattr(decoder_runs, "train_decoder", interrupted)
        assert _inr([*common, "--epochs", "1"], capsys)[::2] == (
            130, "inr: interrupted in the first epoch (nothing saved yet)")
    assert _inr([*common, "--epochs", "1"], capsys)[0] == 0
    monkeypatch.setattr(decoder_runs, "train_decoder", interrupted)
    assert _inr([*common, "--epochs", "3", "--resume"], capsys)[::2] == (
        130, f"inr: interrupted ({out / 'decoder.pt'} holds epoch 1); resume with --resume")


TRAINS = "trains a decoder: it needs --data (the one in --decoder is used as it was trained, at its own image size)"
NEEDS_JIIO = "is JIIO's: it needs --method jiio or both"
FID_ONLY = "--fid-model measures reconstruction FID: it needs --task reconstruct, without --no-fid"


@pytest.mark.parametrize("args, message", [
    (["--image-size", "64", "--preset", "large"], f"--preset {TRAINS}"),  # restored at the decoder's 28 px
    (["--image-size", "64"], f"--image-size {TRAINS}"),
    (["--lr", "0.1"], f"--lr {TRAINS}"),
    (["--epochs", "50"], f"--epochs {TRAINS}"),
    (["--train-count", "5"], f"--train-count {TRAINS}"),
    (["--train-batch-size", "4"], f"--train-batch-size {TRAINS}"),
    (["--task", "inpaint", "--sigma", "0.1"], "--sigma adds the denoising noise: it needs --task denoise"),
    (["--task", "denoise", "--mask-size", "5"], "--mask-size hides the square to fill: it needs --task inpaint"),
    (["--task", "denoise", "--no-composite"],
     "--composite/--no-composite keeps an inpainting's observed pixels: it needs --task inpaint"),
    (["--method", "jiio", "--adam-lr", "0.5"], "--adam-lr is the Adam baseline's: it needs --method adam or both"),
    (["--method", "adam", "--adam-max-steps", "7"],
     "--adam-max-steps caps Adam's run to JIIO's loss: it needs --method both"),
    (["--method", "adam", "--step-size", "0.5"], f"--step-size {NEEDS_JIIO}"),
    (["--method", "adam", "--anderson-memory", "4"], f"--anderson-memory {NEEDS_JIIO}"),
    (["--task", "denoise", "--fid-model", "nope.pt"], FID_ONLY),
    (["--no-fid", "--fid-model", "nope.pt"], FID_ONLY),
])
def test_options_the_run_would_not_use_are_refused(tmp_path, capsys, args, message):
    """Each was accepted and did nothing, while the analogous --train-minutes without --data was refused."""
    code, _, error = _inr(["jiio-invert", "--decoder", tmp_path / "decoder.pt", *args, "--quiet", "--out",
                           tmp_path / "run"], capsys)
    assert (code, error) == (2, f"inr: error: {message}")


def test_each_method_is_warmed_up_untimed_before_the_timed_restorations(monkeypatch):
    """JIIO ran first and its timed run carried the process's first-call costs, biasing --method both's ratios."""
    from types import SimpleNamespace

    import inr_cli.jiio.invert as invert
    from training.jiio.inverse_tasks import Corruption

    calls = []
    monkeypatch.setattr(invert, "restore", lambda decoder, part, settings: calls.append(("jiio", settings.iterations,
                                                                                         len(part.observed))))
    monkeypatch.setattr(invert, "restore_adam", lambda decoder, part, settings, **_: calls.append(
        ("adam", settings.steps, len(part.observed))))
    monkeypatch.setattr(invert, "compare_on_batch", lambda *args: calls.append("timed") or SimpleNamespace(
        jiio=None, adam=None))
    corruption = Corruption(torch.zeros(5, 1, 16, 16), torch.ones(5, 1, 16, 16))
    invert._restore_all(None, corruption, RestorationSettings(method="both", iters=10, batch_size=2),
                        torch.device("cpu"), show_progress=False)
    assert calls == [("jiio", 2, 2), ("adam", 2, 2), "timed", "timed", "timed"]


def test_a_mask_square_of_the_whole_image_is_refused(tmp_path, collection, capsys):
    """It was clamped to the side: nothing was observed, nothing inferred, and the report gave the size asked for."""
    untrained_decoder_checkpoint(tmp_path / "decoder.pt")
    line = "inr: error: --mask-size 16 hides the whole 16 px image, leaving nothing observed to restore from; give a " \
           "side below 16"
    for args in (["--decoder", tmp_path / "decoder.pt", "--images", collection],
                 ["--data", collection, *TINY, "--epochs", "1"]):  # refused before training
        out = tmp_path / "run"
        code, _, error = _inr(["jiio-invert", *args, "--task", "inpaint", "--mask-size", "16", "--count", "2",
                               "--iters", "2", "--quiet", "--out", out], capsys)
        assert (code, error) == (1, line)
        assert not (out / "decoder.pt").exists()


def test_a_run_that_trains_nothing_is_not_told_to_resume_into_a_used_folder(tmp_path, collection, capsys):
    """The refusal said "add --resume to continue it", which a --decoder run then refused: it trains nothing."""
    decoder = untrained_decoder_checkpoint(tmp_path / "decoder.pt")
    args = ["jiio-invert", "--decoder", decoder, "--images", collection, "--count", "2", "--iters", "2", "--no-fid",
            "--quiet", "--out", tmp_path / "run"]
    code, _, error = _inr(args, capsys)
    assert code == 0, error
    code, _, error = _inr(args, capsys)
    assert (code, error) == (1, f"inr: error: {tmp_path / 'run'} already holds a run; add --overwrite to replace "
                                "it, or choose another --out (a "
                                "--decoder run trains nothing, so it has nothing to --resume)")


def test_mask_count_and_size_are_checked_before_the_decoder_trains(tmp_path, collection, capsys):
    """Both were found only after training; and a mask of another size was refused beside image files but resized
    without a word beside a folder or an array of the same images."""
    folder = tmp_path / "photos"
    folder.mkdir()
    crops = np.load(collection)["images"]
    for k in range(3):
        save_png(folder / f"{k}.png", crops[k])
    square = np.zeros((16, 16), np.uint8)
    square[4:10, 4:10] = 255
    mask, small = save_png(tmp_path / "mask.png", square), save_png(tmp_path / "small.png", square[:10, :10])
    for args, line in [(["--images", folder, "--mask", mask, "--mask", mask],
                        "--mask: give one mask for all 3 test images or one for each, not 2"),
                       (["--mask", mask, "--mask", mask],  # the 4 held out from --data
                        "--mask: give one mask for all 4 test images or one for each, not 2"),
                       (["--images", folder, "--mask", small],
                        f"{small}: the mask is 10x10 but its image {folder / '0.png'} is 16x16; a mask must have its "
                        "image's size"),
                       (["--images", collection, "--mask", small],
                        f"{small}: the mask is 10x10 but its image image 0 of {collection} is 16x16; a mask must "
                        "have its image's size")]:
        out = tmp_path / "run"
        code, _, error = _inr(["jiio-invert", "--task", "inpaint", "--data", collection, *TINY, "--epochs", "1",
                               "--count", "4", "--iters", "2", "--no-fid", "--quiet", *args, "--out", out], capsys)
        assert (code, error) == (1, f"inr: error: {line}")
        assert not (out / "decoder.pt").exists()
