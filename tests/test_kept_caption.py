"""A picture's caption names the step of the network it shows where --keep best kept an earlier one than the
last: its numbers are that network's, not the last step's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from helpers import save_png
from inr_cli.figures.captions import fit_caption
from inr_cli.figures.layout import png_caption
from inr_cli.modalities.image import IMAGE, ImageOptions
from training.fitting.config import FitConfig
from training.fitting.fit import fit


def test_the_caption_says_which_step_s_network_it_shows():
    assert fit_caption("a.png", "siren", 3, 32, 200, ["PSNR 44.74 dB"], kept_step=175)[2] == "step 175 of 200"
    assert fit_caption("a.png", "siren", 3, 32, 2000, [], kept_step=2000)[2] == "2,000 steps"
    assert fit_caption("a.png", "siren", 3, 32, 2000, [])[2] == "2,000 steps"
    assert fit_caption("a.png", "siren", 3, 32, 2000, [], kept_step=1750)[2] == "step 1,750 of 2,000"


def test_an_image_fit_that_kept_an_earlier_network_says_so_in_its_comparison_caption(tmp_path):
    save_png(tmp_path / "a.png", np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    loaded = IMAGE.load(str(tmp_path / "a.png"), ImageOptions(), seed=0)
    result = fit(loaded.signal, FitConfig(model="siren", hidden=8, layers=1, steps=6, eval_every=0), IMAGE.recipe)
    for kept_step, steps_part in ((None, "6 steps"), (4, "step 4 of 6")):
        out = tmp_path / f"run-{kept_step}"
        out.mkdir()
        IMAGE.write_outputs(loaded, replace(result, kept_step=kept_step), out)
        caption = png_caption(out / "comparison.png")
        assert caption.startswith(f"a.png · siren 1L-8D · {steps_part} · PSNR "), caption
