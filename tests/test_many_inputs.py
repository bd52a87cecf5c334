"""Runs over several inputs: the dataset summary, and torchrun sharing the inputs between processes (gloo, CPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import cli_env, run_cli, save_png
from inr_cli.fitting import OutputOptions, run_fit_command
from inr_cli.modalities.base import FitCommandConfig
from inr_cli.modalities.image import ImageOptions
from training.fitting.config import FitConfig

SMALL_FIT = ["--steps", "15", "--hidden", "16", "--layers", "1", "--device", "cpu", "--quiet", "--json"]


@pytest.fixture(scope="module")
def six_images(tmp_path_factory, camera_u8, astronaut_u8):
    from skimage import data

    folder = tmp_path_factory.mktemp("six")
    arrays = [camera_u8[::32, ::32], astronaut_u8[::32, ::32], data.coins()[::20, ::20], data.moon()[::32, ::32],
              camera_u8[100:116, 200:216], astronaut_u8[300:316, 100:116]]
    names = [save_png(folder / f"img{i}.png", array).name for i, array in enumerate(arrays)]
    return folder, names


def test_summary_tabulates_fits_and_failures(tmp_path, six_images, capsys):
    folder, names = six_images
    paths = [str(folder / names[0]), str(tmp_path / "missing.png"), str(folder / names[1])]
    fit_config = FitConfig(model="siren", hidden=16, layers=1, steps=10, device="cpu", eval_every=0)
    code = run_fit_command(FitCommandConfig("image", fit_config, ImageOptions()), paths,
                           OutputOptions(out=tmp_path / "run", as_json=True, show_progress=False))
    assert code == 1  # one input failed; the others were fitted
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["inputs"], summary["fitted"], summary["failed"]) == (3, 2, 1)
    assert [row["status"] for row in summary["rows"]] == ["fitted", "failed", "fitted"]
    assert "missing.png" in summary["rows"][1]["error"]
    assert [summary["rows"][i]["psnr"] for i in (0, 2)] == [r["psnr"] for r in reports]
    assert summary["metrics"]["psnr"]["count"] == 2
    table = (tmp_path / "run" / "summary.md").read_text()
    assert "2 of 3 inputs fitted, 1 failed" in table and "failed:" in table
    assert "psnr_holdout" not in table  # no input has it: kept in the JSON, left out of the table
    assert (tmp_path / "run" / "summary.png").stat().st_size > 1000


def torchrun(args: list[str], cwd, stdin: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "inr_cli", *args]
    return subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300,
                          env=cli_env())


def test_torchrun_shares_the_inputs_and_writes_what_one_process_writes(six_images):
    folder, names = six_images
    stdin = "\n".join(names) + "\n"
    single = run_cli(["fit", "image", "-", "--out", "single", *SMALL_FIT], cwd=folder, stdin=stdin)
    assert single.returncode == 0, single.stderr
    shared = torchrun(["fit", "image", "-", "--out", "shared", *SMALL_FIT], cwd=folder, stdin=stdin)
    assert shared.returncode == 0, shared.stderr
    one = [json.loads(line) for line in single.stdout.splitlines()]
    two = [json.loads(line) for line in shared.stdout.splitlines()]
    # Every input fitted exactly once, printed once, in input order, into the same folder names.
    assert [r["input"] for r in two] == names == [r["input"] for r in one]
    assert sorted(p.name for p in (folder / "shared").iterdir()) == sorted(p.name for p in (folder / "single").iterdir())
    for mine, theirs in zip(two, one):
        assert mine["output_dir"].replace("shared", "single") == theirs["output_dir"]
        assert mine["psnr"] == pytest.approx(theirs["psnr"], abs=1e-3)  # thread counts differ: rounding only
        assert mine["config"] == theirs["config"]
        saved = json.loads((folder / mine["output_dir"] / "report.json").read_text())
        assert saved["psnr"] == mine["psnr"]
    summary = json.loads((folder / "shared" / "summary.json").read_text())
    assert summary["fitted"] == 6 and [row["input"] for row in summary["rows"]] == names


def test_torchrun_reports_a_failed_input_and_fits_the_rest(six_images):
    folder, names = six_images
    stdin = "\n".join([names[0], "nope.png", names[1]]) + "\n"
    shared = torchrun(["fit", "image", "-", "--out", "shared-bad", *SMALL_FIT], cwd=folder, stdin=stdin)
    assert shared.returncode != 0
    assert "nope.png" in shared.stderr
    assert [json.loads(line)["input"] for line in shared.stdout.splitlines()] == [names[0], names[1]]
    assert json.loads((folder / "shared-bad" / "summary.json").read_text())["failed"] == 1
