"""What `inr jiio-invert` reports about what it wrote: the spread of its PSNRs, PSNRs recomputed from the written
8-bit PNGs, the pictures' captions, and replacing a run with --overwrite. Runs restore with an untrained 16 px
decoder in this process (seconds)."""

import json
import statistics

import numpy as np
import pytest
from helpers import untrained_decoder_checkpoint
from skimage import data

from inr_cli.app import main


def _inr(args, capsys) -> tuple[int, str, str]:
    """Run the command line in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as stopped:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return stopped.value.code, captured.out, captured.err.strip()


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """8 gray 16x16 crops of the camera photo as an .npz (uint8)."""
    camera = data.camera()
    crops = np.stack([camera[12 * i:12 * i + 16, 40 + 9 * i:56 + 9 * i] for i in range(8)])
    path = tmp_path_factory.mktemp("data") / "crops.npz"
    np.savez(path, images=crops)
    return path


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
