"""Inputs fitted together as a group: each report's seconds are the group's, and it says how many shared them
(group_size); the run's summary counts each input's share of the group's time, and says so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import save_png
from inr_cli.fitting import OutputOptions, run_fit_command
from inr_cli.modalities.base import FitCommandConfig
from inr_cli.modalities.image import ImageOptions
from inr_cli.summary import markdown, summarize
from training.fitting.config import FitConfig


def test_a_summary_counts_each_grouped_input_s_share_of_its_group_s_seconds(tmp_path):
    reports = {i: {"output_dir": str(tmp_path / name), "psnr": 30.0 + i, "seconds": 6.0, "group_size": 3,
                   "steps": 100} for i, name in enumerate("abc")}
    reports[3] = {"output_dir": str(tmp_path / "d"), "psnr": 33.0, "seconds": 1.5, "group_size": 1, "steps": 100}
    reports[4] = {"output_dir": str(tmp_path / "e"), "psnr": 34.0, "seconds": 2.5, "steps": 100}  # an older report
    summary = summarize(list("abcde"), reports, ("psnr",))
    assert [row["seconds"] for row in summary["rows"]] == [2.0, 2.0, 2.0, 1.5, 2.5]
    assert [row["group_size"] for row in summary["rows"]] == [3, 3, 3, 1, 1]
    assert summary["metrics"]["seconds"]["mean"] == pytest.approx(2.0)
    assert summary["grouped"] == 3
    table = markdown(summary, ("psnr",), "t")
    assert "3 were fitted in groups, as one stacked network: their seconds are each one's share" in table
    alone = summarize(["d"], {0: reports[3]}, ("psnr",))
    assert alone["grouped"] == 0 and "stacked network" not in markdown(alone, ("psnr",), "t")


def test_grouped_reports_give_their_group_size_and_the_summary_each_input_s_share(tmp_path, capsys):
    rng = np.random.default_rng(0)
    paths = [str(save_png(tmp_path / f"{name}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)))
             for name in "abc"]
    fit_config = FitConfig(model="siren", hidden=8, layers=1, steps=5, device="cpu", eval_every=0)
    for label, group in (("together", None), ("alone", 1)):
        code = run_fit_command(FitCommandConfig("image", fit_config, ImageOptions()), paths,
                               OutputOptions(out=tmp_path / label, as_json=True, show_progress=False,
                                             group_size=group))
        assert code == 0
        reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        summary = json.loads((tmp_path / label / "summary.json").read_text())
        size = 3 if group is None else 1
        assert [report["group_size"] for report in reports] == [size] * 3
        assert [row["seconds"] for row in summary["rows"]] == [report["seconds"] / size for report in reports]
        page = (tmp_path / label / "index.html").read_text()
        assert ("stacked network" in page) == (size > 1)
        assert ("stacked network" in (tmp_path / label / "summary.md").read_text()) == (size > 1)
    assert "a group of 3 inputs trained together" in (tmp_path / "together" / "a" / "index.html").read_text()
