"""Restorations a user keeps: an inpainted image holds every observed pixel exactly and takes only the hidden ones
from the decoding (which is written too); every PSNR stands beside the corrupted input's own. Inputs and outputs as
a user gives them: `--images` takes single image files, `inr sample DECODER --out` a folder."""

import json

import numpy as np
import pytest
import torch
from helpers import run_here, save_png
from PIL import Image
from skimage import data

from inr_cli.jiio.decoder_runs import observed_masks, sizes_of_test_images
from inr_cli.jiio.decoder_sample import sample_files
from inr_cli.jiio.invert import summary_text
from inr_cli.media.datasets import load_images
from inr_cli.media.images import quantize
from inr_core.errors import UserError
from training.jiio.inverse_tasks import Corruption, composite, corrupt
from training.jiio.settings import CorruptionSettings
from training.metrics import psnr

RESTORE = ["--iters", "4", "--quiet"]
TINY = ["--image-size", "16", "--latent-dim", "8", "--train-batch-size", "8", *RESTORE]  # training options with them
HELD_OUT = 4


def _pngs(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def _report(folder) -> dict:
    return json.loads((folder / "report.json").read_text())


@pytest.fixture(scope="module")
def inpainted(tmp_path_factory):
    """One tiny decoder trained for an epoch on 16 camera crops (16 px), which then inpaints the 4 held out: the
    run folder and the crops (uint8)."""
    root = tmp_path_factory.mktemp("restorations")
    camera = data.camera()
    crops = np.stack([camera[100 + 10 * i:116 + 10 * i, 60 + 14 * i:76 + 14 * i] for i in range(20)])
    np.savez(root / "crops.npz", images=crops)
    out = root / "inpaint"
    result = run_here(["jiio-invert", "--task", "inpaint", "--data", root / "crops.npz", "--epochs", "1", *TINY,
                      "--count", str(HELD_OUT), "--out", out], root, timeout=300)
    assert result.returncode == 0, result.stderr
    return out, crops, result.stdout


def _hidden(count: int) -> np.ndarray:
    """The run's hidden squares (the default mask, seed 0): the corruption depends on the seed and shape alone."""
    mask = corrupt(torch.zeros(count, 1, 16, 16), "inpaint", generator=torch.Generator().manual_seed(0)).mask
    return mask[:, 0].numpy() == 0


def test_composite_keeps_observed_values_bit_exact_and_changes_only_hidden_ones():
    images = torch.rand(3, 2, 12, 12) * 2 - 1
    hidden = corrupt(images, "inpaint", CorruptionSettings(mask_size=5), generator=torch.Generator().manual_seed(3))
    decoded = torch.rand_like(images) * 2 - 1
    decoded[0, 0, 0, 0] = float("nan")  # whatever the decoding holds at an observed pixel, it never leaks through
    decoded[1, 1, 3, 3] = float("inf")
    kept = composite(decoded, hidden)
    observed, missing = hidden.mask == 1, hidden.mask == 0
    assert torch.equal(kept[observed], hidden.observed[observed]) and torch.equal(kept[observed], images[observed])
    assert torch.equal(kept[missing], decoded[missing])
    assert int(missing.sum()) == 3 * 2 * 25
    # Nothing observed: the decoding as it is; everything observed (a denoising mask): the observation.
    finite = torch.rand_like(images)
    assert torch.equal(composite(finite, Corruption(images, torch.zeros_like(images))), finite)
    assert torch.equal(composite(decoded, Corruption(images, torch.ones_like(images))), images)


def test_inpainting_writes_the_composite_and_the_raw_decoding_and_scores_both(inpainted):
    out, crops, stdout = inpainted
    originals = crops[-HELD_OUT:]
    restored, decoded = _pngs(out / "restored" / "jiio"), _pngs(out / "decoded" / "jiio")
    hidden = _hidden(HELD_OUT)
    assert restored.shape == decoded.shape == (HELD_OUT, 16, 16) and hidden.sum() == HELD_OUT * 25
    # Observed pixels are the original 8-bit values exactly; hidden ones are the decoding's exactly.
    assert np.array_equal(restored[~hidden], originals[~hidden])
    assert np.array_equal(restored[hidden], decoded[hidden])
    assert not np.array_equal(decoded[~hidden], originals[~hidden])  # the decoding alone would have lost them

    report = _report(out)
    assert report["composited"] and report["config"]["composite"]
    assert report["files"]["decoded_jiio"] == "decoded/jiio/" and report["files"]["restored_jiio"] == "restored/jiio/"
    assert report["grid_rows"] == ["corrupted", "jiio, decoded", "jiio, composited", "original"]
    jiio = report["methods"]["jiio"]
    for i, image in enumerate(report["per_image"]):
        scores = image["jiio"]
        # Recomputed from the written files: the composite's and the decoding's PSNR, whole and hidden.
        for key, written in (("psnr", restored[i]), ("decoded_psnr", decoded[i])):
            reference = psnr(torch.from_numpy(written / 255.0), torch.from_numpy(originals[i] / 255.0))
            assert scores[key] == pytest.approx(reference, abs=0.1)
        # The hidden pixels are the same in both; the composite loses nothing where the decoding lost something.
        assert scores["psnr_masked"] == pytest.approx(scores["decoded_psnr_masked"], abs=1e-9)
        assert scores["psnr"] > scores["decoded_psnr"]
        assert {"corrupted_psnr", "corrupted_psnr_masked"} <= image.keys()
    means = {key: np.mean([image["jiio"][key] for image in report["per_image"]])
             for key in ("psnr", "psnr_masked", "decoded_psnr", "decoded_psnr_masked")}
    assert {key: jiio[key] for key in means} == pytest.approx(means, rel=1e-9)
    assert jiio["psnr_gain"] == pytest.approx(jiio["psnr"] - report["corrupted_psnr"], rel=1e-9)
    assert jiio["psnr_masked_gain"] == pytest.approx(jiio["psnr_masked"] - report["corrupted_psnr_masked"], rel=1e-9)
    assert "raw decoding PSNR" in stdout and "over the corrupted input" in stdout
    # four rows of 16 px images shown at 64 px, a line of PSNRs under each of the first three
    assert Image.open(out / "grid.png").size[1] > 4 * 64 + 3 * 4 + 3 * 12


def test_no_composite_writes_the_decoding_as_the_restoration(inpainted, tmp_path):
    out, _, _ = inpainted
    plain = tmp_path / "plain"
    result = run_here(["jiio-invert", "--task", "inpaint", "--decoder", out / "decoder.pt", *RESTORE,
                      "--count", str(HELD_OUT), "--no-composite", "--out", plain, "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert not report["composited"] and not (plain / "decoded").exists()
    assert report["grid_rows"] == ["corrupted", "jiio, restored", "original"]
    assert "decoded_psnr" not in report["methods"]["jiio"]
    # The same seed restores the same way on the CPU: these are the composited run's raw decodings.
    assert np.array_equal(_pngs(plain / "restored" / "jiio"), _pngs(out / "decoded" / "jiio"))


def test_denoising_single_image_files_reports_the_noisy_inputs_psnr(inpainted, tmp_path, camera_u8):
    out, _, _ = inpainted
    first = save_png(tmp_path / "one.png", camera_u8[200:216, 200:216])
    second = save_png(tmp_path / "two.png", np.stack([camera_u8[:48, :64]] * 3, axis=2))  # RGB, 64x48: resized
    run = tmp_path / "denoise"
    result = run_here(["jiio-invert", "--task", "denoise", "--decoder", out / "decoder.pt", *RESTORE, "--count", "2",
                      "--images", first, "--images", second, "--out", run], tmp_path)
    assert result.returncode == 0, result.stderr
    report = _report(run)
    assert report["images"]["source"] == [str(first), str(second)] and report["images"]["count"] == 2
    assert report["notes"] == ["test images converted to gray (the decoder is single-channel)"]
    assert not report["composited"] and report["grid_rows"] == ["noisy", "jiio, restored", "original"]
    # The noisy input's own PSNR, recomputed from the same images and the same seed's noise.
    target = torch.cat([load_images(str(first), 16), load_images(str(second), 16).mean(1, keepdim=True)])
    noisy = corrupt(target, "denoise", CorruptionSettings(sigma=0.4), generator=torch.Generator().manual_seed(0))
    # Scored as written: the noisy images rounded to the 8-bit levels of their PNGs.
    written = torch.from_numpy(quantize((noisy.observed + 1) / 2, 8)).double() / 255
    expected = [psnr(written[i], (target[i].double() + 1) / 2) for i in range(2)]
    assert [image["corrupted_psnr"] for image in report["per_image"]] == pytest.approx(expected, abs=1e-3)
    jiio = report["methods"]["jiio"]
    assert jiio["psnr_gain"] == pytest.approx(jiio["psnr"] - report["corrupted_psnr"], rel=1e-9)
    assert f"noisy input PSNR {report['corrupted_psnr']:.2f} dB" in result.stdout
    assert f"{jiio['psnr_gain']:+.2f} dB over the noisy input" in result.stdout


def _mask_png(path, rows: slice, cols: slice):
    """A 32x32 mask: white (missing) on ``rows`` x ``cols``, black elsewhere."""
    mask = np.zeros((32, 32), np.uint8)
    mask[rows, cols] = 255
    return save_png(path, mask)


def test_masks_say_which_pixels_are_filled_one_per_image_or_one_for_all(inpainted, tmp_path, camera_u8):
    out, _, _ = inpainted
    photos = [save_png(tmp_path / f"photo{i}.png", camera_u8[150 + 40 * i:182 + 40 * i, 200:232]) for i in range(2)]
    # 32 px files, seen at the decoder's 16 px: 2x2 blocks of the mask become its pixels.
    masks = [_mask_png(tmp_path / "left.png", slice(8, 24), slice(4, 12)),
             _mask_png(tmp_path / "top.png", slice(0, 6), slice(0, 32))]
    expected = np.zeros((2, 16, 16), bool)
    expected[0, 4:12, 2:6] = True
    expected[1, 0:3, :] = True
    for given, hidden in ((masks, expected), (masks[:1], expected[[0, 0]])):
        run = tmp_path / f"masked{len(given)}"
        result = run_here(["jiio-invert", "--task", "inpaint", "--decoder", out / "decoder.pt", *RESTORE, "--count", "2",
                          *[a for p in photos for a in ("--images", p)], *[a for m in given for a in ("--mask", m)],
                          "--out", run], tmp_path)
        assert result.returncode == 0, result.stderr
        report = _report(run)
        assert report["corruption"] == {"masks": [str(m) for m in given], "hidden_fraction": hidden.mean()}
        assert report["config"]["masks"] == [str(m) for m in given] and report["config"]["mask_size"] is None
        restored, decoded = _pngs(run / "restored" / "jiio"), _pngs(run / "decoded" / "jiio")
        # Exactly the marked pixels come from the decoding; every other one is the photo's, as observed.
        assert np.array_equal(restored[hidden], decoded[hidden])
        originals = ((load_images(str(photos[0]), 16), load_images(str(photos[1]), 16)))
        observed = np.stack([np.round((o[0, 0].numpy() + 1) * 127.5) for o in originals])
        assert np.abs(restored[~hidden].astype(float) - observed[~hidden]).max() <= 1
        assert not np.array_equal(decoded[~hidden], restored[~hidden])
        for image in report["per_image"]:
            assert image["jiio"]["psnr_masked"] == pytest.approx(image["jiio"]["decoded_psnr_masked"], abs=1e-9)


def test_masks_that_cannot_be_used_are_refused_in_one_line(inpainted, tmp_path, camera_u8):
    black = save_png(tmp_path / "black.png", np.zeros((32, 32), np.uint8))
    speck = _mask_png(tmp_path / "speck.png", slice(0, 1), slice(0, 1))  # one pixel of 32: gone at 16 px
    square = _mask_png(tmp_path / "square.png", slice(8, 16), slice(8, 16))
    (tmp_path / "mask.txt").write_text("white means missing")
    with pytest.raises(UserError, match="black.png: the mask marks no pixel to fill at the decoder's 16 px"):
        observed_masks([str(black)], 16, 2)
    with pytest.raises(UserError, match="speck.png: the mask marks no pixel to fill"):
        observed_masks([str(speck)], 16, 2)
    with pytest.raises(UserError, match="mask.txt: a mask is an image file"):
        observed_masks([str(tmp_path / "mask.txt")], 16, 2)
    with pytest.raises(UserError, match="give one mask for all 2 test images or one for each, not 3"):
        observed_masks([str(square)] * 3, 16, 2)
    photo = save_png(tmp_path / "photo.png", camera_u8[:32, :32])
    wide = save_png(tmp_path / "wide.png", camera_u8[:32, :48])
    with pytest.raises(UserError, match="square.png: the mask is 32x32 but its image .*wide.png is 48x32"):
        observed_masks([str(square)], 16, 2, sizes_of_test_images([str(photo), str(wide)], 2))
    same = sizes_of_test_images([str(photo), str(photo)], 2)
    assert observed_masks([str(square)], 16, 2, same).shape == (1, 1, 16, 16)
    out, _, _ = inpainted
    cases = [(["--task", "denoise", "--mask", square], "--mask marks the pixels to fill: it needs --task inpaint", 2),
             (["--task", "inpaint", "--mask-size", "4", "--mask", square],
              "--mask gives the hidden pixels itself: drop --mask-size", 2),
             (["--task", "inpaint", "--mask", black], "the mask marks no pixel to fill", 1)]
    for args, message, code in cases:
        result = run_here(["jiio-invert", "--decoder", out / "decoder.pt", *RESTORE, "--images", photo, *args,
                          "--out", tmp_path / "refused"], tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == code and len(lines) == 1 and message in lines[0], (args, result.stderr)
    assert not (tmp_path / "refused").exists()


def test_an_image_source_that_is_no_image_is_refused_in_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(UserError) as refused:
        load_images(str(tmp_path / "notes.txt"), 16)
    assert str(refused.value) == (f"{tmp_path / 'notes.txt'}: give an image file, a folder of images, an IDX file "
                                  "(*-ubyte[.gz]) or an .npz/.npy array")
    with pytest.raises(UserError, match="missing.png: no such file or folder"):
        load_images(str(tmp_path / "missing.png"), 16)


def test_sample_into_a_folder_writes_grid_report_and_one_png_per_sample(inpainted, tmp_path):
    out, _, _ = inpainted
    folder = tmp_path / "draws"
    result = run_here(["sample", out / "decoder.pt", "-n", "5", "--out", folder, "--individual"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["grid.png", "report.json", "samples"]
    assert sorted(p.name for p in (folder / "samples").iterdir()) == [f"000{i}.png" for i in range(5)]
    report = _report(folder)
    assert report["samples"] == 5 and report["individual"] == str(folder / "samples")
    assert report["grid"] == str(folder / "grid.png")
    # Each single sample is its grid tile: 16 px shown at 64 px, nearest neighbour, 4 px apart.
    grid = np.asarray(Image.open(folder / "grid.png").convert("L"))
    singles = _pngs(folder / "samples")
    for i in range(5):
        assert np.array_equal(grid[-64::4, i * 68:i * 68 + 64:4], singles[i])  # (the caption above them)


def test_sample_file_layouts(tmp_path):
    checkpoint = tmp_path / "run" / "decoder.pt"
    default = sample_files(None, checkpoint, 64, individual=True)
    assert (default.grid, default.report, default.individual, default.shown) == (
        tmp_path / "run" / "samples-64.png", tmp_path / "run" / "samples-64.json", tmp_path / "run" / "samples-64",
        tmp_path / "run" / "samples-64.png")
    named = sample_files(tmp_path / "a.PNG", checkpoint, 8, individual=False)
    assert (named.grid, named.report, named.individual) == (tmp_path / "a.PNG", tmp_path / "a.json", None)
    (tmp_path / "existing.d").mkdir()
    folder = sample_files(tmp_path / "existing.d", checkpoint, 8, individual=False)
    assert (folder.grid, folder.report, folder.individual) == (
        tmp_path / "existing.d" / "grid.png", tmp_path / "existing.d" / "report.json", None)
    with pytest.raises(UserError) as refused:
        sample_files(tmp_path / "draws.gif", checkpoint, 8, individual=False)
    assert str(refused.value) == (f"{tmp_path / 'draws.gif'}: decoder samples are written as a PNG grid or into a "
                                  "folder; give a .png file name or a folder")


@pytest.mark.parametrize("count, words", [(1, "1 image 16px"), (3, "3 images 16px")])
def test_the_summary_counts_the_images_in_words(count, words):
    report = {"task": "reconstruct", "images": {"count": count, "size": 16}, "corrupted_psnr": None, "methods": {},
              "composited": False, "output_dir": "runs/x"}
    assert summary_text(report).splitlines()[0] == f"jiio-invert reconstruct: {words}"


def test_the_report_and_page_list_the_trained_decoder_and_show_its_history_as_a_table(inpainted):
    """decoder.pt, what a training run produces first, was missing from `files` and unlinked on the page, whose
    Decoder section showed the history as raw Python dictionaries."""
    out, _, _ = inpainted
    report = _report(out)
    assert report["files"]["decoder"] == "decoder.pt"
    page = (out / "index.html").read_text()
    assert 'href="decoder.pt"' in page and "{&#x27;" not in page and "{'" not in page
    assert '<th class="num" scope="col">cost_per_image</th>' in page
    assert '<th class="num" scope="col">psnr_std (population)</th>' in page  # which spread it is, as elsewhere


def test_a_mask_hiding_everything_is_refused_and_transparency_marks_nothing(tmp_path):
    """An all-white mask ran with nothing observed; an RGBA mask of opaque strokes on transparent white hid every
    pixel."""
    white = save_png(tmp_path / "white.png", np.full((16, 16), 255, np.uint8))
    with pytest.raises(UserError, match="white.png: the mask marks every pixel to fill at the decoder's 16 px, "
                                        "leaving nothing observed"):
        observed_masks([str(white)], 16, 1)
    strokes = np.zeros((16, 16, 4), np.uint8)
    strokes[..., :3] = 255
    strokes[4:8, 4:8, 3] = 255
    mask = observed_masks([str(save_png(tmp_path / "strokes.png", strokes))], 16, 1)
    assert mask[0, 0, 4:8, 4:8].sum() == 0 and mask.sum() == 16 * 16 - 16
