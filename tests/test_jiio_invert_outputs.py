"""What `inr jiio-invert` reports about what it wrote: the spread of its PSNRs, PSNRs recomputed from the written
8-bit PNGs, the pictures' captions, and replacing a run with --overwrite. Runs restore with an untrained 16 px
decoder in this process (seconds)."""

import json
import statistics

import numpy as np
import pytest
import torch
from helpers import camera_crops_npz, in_process, untrained_decoder_checkpoint
from PIL import Image

from inr_cli.app import main
from inr_cli.media.datasets import load_images
from training.jiio.fid import from_eight_bit_levels
from training.jiio.inverse_tasks import corrupt
from training.jiio.settings import CorruptionSettings


def _inr(args, capsys) -> tuple[int, str, str]:
    return in_process(args, capsys, strip=True)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """8 gray 16x16 crops of the camera photo as an .npz (uint8)."""
    return camera_crops_npz(tmp_path_factory.mktemp("data") / "crops.npz", 8)


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    return untrained_decoder_checkpoint(tmp_path_factory.mktemp("decoder") / "decoder.pt")


def _restore(decoder, collection, out, *extra):
    return ["jiio-invert", "--decoder", decoder, "--images", collection, "--count", "4", "--iters", "2", "--no-fid",
            "--quiet", "--out", out, *extra]


def test_psnr_std_is_the_population_std(tmp_path, decoder, collection, capsys):
    """It was torch's sample std (n - 1), where every other spread inr reports is the population's."""
    code, _, error = _inr(_restore(decoder, collection, tmp_path / "run", "--task", "denoise"), capsys)
    assert code == 0, error
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    psnrs = [image["jiio"]["psnr"] for image in report["per_image"]]
    assert report["methods"]["jiio"]["psnr_std"] == pytest.approx(statistics.pstdev(psnrs), rel=1e-12)
    assert report["methods"]["jiio"]["psnr_std"] != pytest.approx(statistics.stdev(psnrs), rel=1e-6)


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64)[None] / 255  # (1, S, S): a gray image


def _decibels(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    error = (a - b) ** 2
    return float(-10 * np.log10(error.mean() if region is None else (error * region).sum() / region.sum()))


def test_psnrs_are_those_of_the_written_8_bit_images(tmp_path, decoder, collection, capsys, monkeypatch):
    """The PSNRs were of the float images before they were rounded to 8 bits for their PNGs (up to 0.016 dB apart
    per image), though the README says they are of what was written; the grid's captions likewise."""
    import inr_cli.jiio.invert as invert

    drawn = {}
    original = invert.write_image_grid
    monkeypatch.setattr(invert, "write_image_grid", lambda path, rows, **kw: (drawn.update(kw),
                                                                               original(path, rows, **kw))[1])
    out = tmp_path / "run"
    code, _, error = _inr(_restore(decoder, collection, out, "--task", "inpaint", "--mask-size", "6"), capsys)
    assert code == 0, error
    report = json.loads((out / "report.json").read_text())
    target = (load_images(str(collection), 16, limit=4).double().numpy() + 1) / 2  # what the run compared with
    corruption = corrupt(load_images(str(collection), 16, limit=4), "inpaint", CorruptionSettings(mask_size=6),
                         generator=torch.Generator().manual_seed(0))
    hole = 1 - corruption.mask.double().numpy()
    # The corrupted input as the grid shows it: rounded to 8 bits as write_png rounds.
    shown = np.rint(((corruption.observed + 1) / 2).clamp(0, 1).numpy().astype(np.float64) * 255) / 255
    for kind in ("restored", "decoded"):
        prefix = "" if kind == "restored" else "decoded_"
        for i, entry in enumerate(report["per_image"]):
            written = _png(out / kind / "jiio" / f"{i:04d}.png")
            assert abs(entry["jiio"][f"{prefix}psnr"] - _decibels(written, target[i])) < 1e-9
            assert abs(entry["jiio"][f"{prefix}psnr_masked"] - _decibels(written, target[i], hole[i])) < 1e-9
        mean = statistics.fmean(entry["jiio"][f"{prefix}psnr"] for entry in report["per_image"])
        assert abs(report["methods"]["jiio"][f"{prefix}psnr"] - mean) < 1e-9
    for i, entry in enumerate(report["per_image"]):
        assert abs(entry["corrupted_psnr"] - _decibels(shown[i], target[i])) < 1e-9
        assert abs(entry["corrupted_psnr_masked"] - _decibels(shown[i], target[i], hole[i])) < 1e-9
    assert abs(report["corrupted_psnr"] - statistics.fmean(e["corrupted_psnr"] for e in report["per_image"])) < 1e-9
    # The grid's captions are the report's numbers: corrupted, decoded, composited (the original has none).
    per_row = [[e["corrupted_psnr"] for e in report["per_image"]], [e["jiio"]["decoded_psnr"] for e in
               report["per_image"]], [e["jiio"]["psnr"] for e in report["per_image"]], None]
    assert drawn["psnrs"] == per_row


def test_reconstruction_fid_is_of_the_written_images(tmp_path, decoder, collection, capsys, monkeypatch):
    """FID's convention rounds to 8 bits too, but in float32: a few pixels landed on another level than in the
    PNGs. It is now given the written levels themselves."""
    import inr_cli.jiio.invert as invert

    given = {}
    monkeypatch.setattr(invert, "load_fid_model", lambda path: (object(), None))
    monkeypatch.setattr(invert, "fid_reports", lambda model, reason, real, generated, *a, **kw: (
        given.update(generated), {name: {"fid": None, "fid_unavailable": "test"} for name in generated})[1])
    out = tmp_path / "run"
    args = [a for a in _restore(decoder, collection, out, "--task", "reconstruct") if a != "--no-fid"]
    code, _, error = _inr(args, capsys)
    assert code == 0, error
    written = np.stack([_png(out / "restored" / "jiio" / f"{i:04d}.png") for i in range(4)])
    levels = torch.from_numpy(np.rint(written * 255).astype(np.uint8))
    assert torch.equal(given["jiio"], from_eight_bit_levels(levels))


def test_the_grid_says_what_it_shows(tmp_path, decoder, collection, capsys):
    """grid.png had no caption stored as its PNG Description, where every other picture has one."""
    from inr_cli.figures.layout import png_caption

    out = tmp_path / "run"
    code, _, error = _inr(_restore(decoder, collection, out, "--task", "inpaint", "--method", "both"), capsys)
    assert code == 0, error
    report = json.loads((out / "report.json").read_text())
    jiio, adam = report["methods"]["jiio"], report["methods"]["adam"]

    def db(value):
        return f"{value:.2f} dB"

    assert png_caption(out / "grid.png") == " · ".join([
        "jiio-invert inpaint", "4 test images of 16 px",
        "rows: corrupted / jiio, decoded / jiio, composited / adam, decoded / adam, composited / original",
        f"corrupted input mean PSNR {db(report['corrupted_psnr'])} (hidden region "
        f"{db(report['corrupted_psnr_masked'])})",
        f"jiio composited mean PSNR {db(jiio['psnr'])} (hidden region {db(jiio['psnr_masked'])})",
        f"adam composited mean PSNR {db(adam['psnr'])} (hidden region {db(adam['psnr_masked'])})",
        "under each image: its PSNR against the original"])



def test_the_grid_shows_the_first_images_and_says_so(tmp_path, decoder, collection, capsys, monkeypatch):
    """`--count 10000` drew all 10,000 restorations into one 1502 x 182,511 px grid.png (3.6 GB to draw): the grid
    holds the first GRID_IMAGES, its caption says of how many, and restored/ and the report still have them all."""
    import inr_cli.jiio.invert as invert
    from inr_cli.figures.layout import png_caption

    drawn = {}
    original = invert.write_image_grid
    monkeypatch.setattr(invert, "write_image_grid", lambda path, rows, **kw: (drawn.update(kw, rows=rows),
                                                                               original(path, rows, **kw))[1])
    monkeypatch.setattr(invert, "GRID_IMAGES", 3)
    out = tmp_path / "run"
    code, _, error = _inr(_restore(decoder, collection, out, "--task", "denoise"), capsys)
    assert code == 0, error
    report = json.loads((out / "report.json").read_text())
    assert [len(row) for row in drawn["rows"]] == [3, 3, 3]
    assert drawn["psnrs"][1] == [entry["jiio"]["psnr"] for entry in report["per_image"][:3]]
    assert "the first 3 of 4 test images of 16 px (all in restored/ and the report)" in png_caption(out / "grid.png")
    assert len(report["per_image"]) == 4 and len(list((out / "restored" / "jiio").glob("*.png"))) == 4


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != ".inr.lock"}


def test_overwrite_replaces_a_finished_run(tmp_path, decoder, collection, capsys):
    """jiio-invert had no --overwrite: a finished run's folder could only be deleted by hand."""
    out = tmp_path / "run"
    code, _, error = _inr(_restore(decoder, collection, out, "--task", "denoise"), capsys)
    assert code == 0, error
    code, _, error = _inr(_restore(decoder, collection, out, "--task", "inpaint", "--count", "2"), capsys)
    assert (code, error) == (1, f"inr: error: {out} already holds a run; add --overwrite to replace it, or choose "
                                "another --out (a --decoder run trains nothing, so it has nothing to --resume)")
    code, _, error = _inr(_restore(decoder, collection, out, "--task", "inpaint", "--count", "2", "--overwrite"),
                          capsys)
    assert code == 0, error
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "inpaint" and report["images"]["count"] == 2
    assert sorted(p.name for p in (out / "restored" / "jiio").iterdir()) == ["0000.png", "0001.png"]
    assert not (out / ".inr-replaced").exists()  # the old run is gone once the new one has finished


def test_an_overwrite_that_fails_leaves_the_old_run_in_place(tmp_path, decoder, collection, capsys, monkeypatch):
    import inr_cli.jiio.invert as invert

    out = tmp_path / "run"
    code, _, error = _inr(_restore(decoder, collection, out, "--task", "denoise"), capsys)
    assert code == 0, error
    before = _files(out)
    assert len([name for name in before if name.startswith("restored/")]) == 4

    def disk_full(*args):  # the new run fails once its images are written, before its report
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(invert, "write_invert_page", disk_full)
    with pytest.raises(OSError):
        main([str(a) for a in _restore(decoder, collection, out, "--task", "inpaint", "--count", "2", "--overwrite")])
    capsys.readouterr()
    assert _files(out) == before
    # An unfinished training run (its decoder.pt alone) is set aside too, and comes back when the replacement fails
    # before its first save.
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "decoder.pt").write_bytes(decoder.read_bytes())
    code, _, error = _inr(["jiio-invert", "--data", collection, "--train-count", "100", "--count", "2", "--quiet",
                           "--out", unfinished, "--overwrite"], capsys)
    assert code == 1 and "--train-count 100 exceeds" in error, error
    assert _files(unfinished) == {"decoder.pt": decoder.read_bytes()}


def test_overwrite_is_refused_with_resume_and_over_its_own_decoder(tmp_path, decoder, collection, capsys):
    code, _, error = _inr(["jiio-invert", "--data", collection, "--resume", "--overwrite", "--out", tmp_path / "run"],
                          capsys)
    assert (code, error) == (2, "inr: error: --resume and --overwrite exclude each other: choose one")
    # The run in --out holds the decoder: setting the run aside would take the decoder with it before it was read.
    out = tmp_path / "trained"
    out.mkdir()
    (out / "decoder.pt").write_bytes(decoder.read_bytes())
    code, _, error = _inr(_restore(out / "decoder.pt", collection, out, "--overwrite"), capsys)
    assert (code, error) == (1, f"inr: error: --overwrite would set aside {out / 'decoder.pt'}, the --decoder this "
                                f"run restores with, with the run in {out}; choose another --out")
    assert (out / "decoder.pt").read_bytes() == decoder.read_bytes()


def test_an_overwrite_that_fails_after_training_puts_the_old_run_back(tmp_path, decoder, collection, capsys,
                                                                      monkeypatch):
    """The failed replacement left its new decoder.pt with the old run's restored PNGs in the folder (the old
    decoder and report hidden in .inr-replaced); the retry's --overwrite then deleted that set-aside and left the
    stale PNGs beside its report."""
    import inr_cli.jiio.invert as invert

    out = tmp_path / "run"
    train = ["jiio-invert", "--data", collection, "--image-size", "16", "--latent-dim", "8", "--train-batch-size", "4",
             "--epochs", "1", "--iters", "2", "--no-fid", "--quiet", "--task", "denoise", "--out", out]
    code, _, error = _inr([*train, "--count", "3"], capsys)
    assert code == 0, error
    before = _files(out)
    assert len([name for name in before if name.startswith("restored/")]) == 3

    def disk_full(*args):  # the new run fails after its decoder trained, before its report
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(invert, "write_invert_page", disk_full)
        with pytest.raises(OSError):
            main([str(a) for a in [*train, "--count", "2", "--seed", "1", "--overwrite"]])
    capsys.readouterr()
    assert _files(out) == before
    # Stopped (Ctrl-C) once trained, it keeps its decoder for --resume, and the old run stays set aside whole: none
    # of its PNGs is left beside the new decoder.
    with monkeypatch.context() as patched:
        patched.setattr(invert, "write_invert_page", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
        code, _, _ = _inr([*train, "--count", "2", "--seed", "1", "--overwrite"], capsys)
    assert code == 130 and sorted(_files(out)) == [".inr-replaced/" + name for name in sorted(before)] + ["decoder.pt"]
    code, _, error = _inr([*train, "--count", "2", "--overwrite"], capsys)
    assert code == 0, error
    assert sorted(p.name for p in (out / "restored" / "jiio").iterdir()) == ["0000.png", "0001.png"]
    assert not (out / ".inr-replaced").exists()
