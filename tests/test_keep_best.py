"""A fit keeps the best network it measured along the run (``--keep best``), not one a late spike spoiled.

The spike is made, not waited for: an optimizer whose update at a chosen step throws the weights (or one stacked
signal's slice of them) far off, as Adam's late spikes do on their own now and then.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from inr_cli.modalities.image import IMAGE
from training.fitting import fit as fit_module
from training.fitting import grouped as grouped_module
from training.fitting.best import BestNetwork
from training.fitting.config import FitConfig
from training.fitting.control import FitControl, Interrupted
from training.fitting.signal import image_signal

STEPS, EVERY = 30, 5
CONFIG = FitConfig(model="siren", hidden=16, layers=2, steps=STEPS, eval_every=EVERY, device="cpu")


def tiles(camera_u8, count: int = 3) -> list:
    crops = [camera_u8[i * 40:i * 40 + 24, 200:224] for i in range(count)]
    return [image_signal(torch.from_numpy(crop.astype(np.float32) / 255.0)[:, :, None]) for crop in crops]


@pytest.fixture
def spike_at_last_step(monkeypatch):
    """Make every optimizer's update of step STEPS ruin the weights: all of them, or signal ``index``'s slice
    (none while ``on`` is false)."""
    where = {"index": None, "on": True}

    def spiking_optimizer(parameters, config, device):
        optimizer = torch.optim.Adam(parameters, lr=config.lr)
        update = optimizer.step

        def step(*args, **kwargs):
            result = update(*args, **kwargs)
            first = optimizer.param_groups[0]["params"][0]
            if where["on"] and int(optimizer.state[first]["step"]) == STEPS:  # counts on through a resume
                generator = torch.Generator().manual_seed(0)
                with torch.no_grad():
                    for parameter in optimizer.param_groups[0]["params"]:
                        part = parameter if where["index"] is None else parameter[where["index"]]
                        part.add_(torch.randn(part.shape, generator=generator))
            return result

        optimizer.step = step
        return optimizer

    monkeypatch.setattr(fit_module, "make_optimizer", spiking_optimizer)
    monkeypatch.setattr(grouped_module, "make_optimizer", spiking_optimizer)
    return where


def psnr_along_the_run(result) -> dict[int, float]:
    return {entry["step"]: entry["psnr"] for entry in result.evaluations}


def best_before_the_end(history: dict[int, float]) -> int:
    return max((step for step in history if step < STEPS), key=history.get)


def test_a_fit_keeps_its_best_network_when_the_last_step_spoils_it(camera_u8, spike_at_last_step):
    signal = tiles(camera_u8, 1)[0]
    best = fit_module.fit(signal, CONFIG, IMAGE.recipe)
    last = fit_module.fit(signal, replace(CONFIG, keep="last"), IMAGE.recipe)

    history = psnr_along_the_run(best)
    assert history == psnr_along_the_run(last)  # the same run, measured alike; only the network returned differs
    assert sorted(history) == list(range(EVERY, STEPS + 1, EVERY))
    assert best.kept_step == best_before_the_end(history) and last.kept_step is None
    # The kept network is the one measured then (re-evaluated from scratch), far above the spoiled last one.
    assert best.final.psnr == pytest.approx(history[best.kept_step], abs=1e-6)
    assert last.final.psnr == pytest.approx(history[STEPS], abs=1e-6)
    assert best.final.psnr > last.final.psnr + 5
    assert any(f"kept the network of step {best.kept_step}" in note for note in best.notes)
    assert not any("kept the network" in note for note in last.notes)
    # The checkpoint holds the kept network and says which step's it is.
    from training.fitting.checkpoint import checkpoint_payload

    payload = checkpoint_payload(best, {}, in_features=2, out_features=1, config={})
    assert payload["kept_step"] == best.kept_step and payload["step"] == STEPS
    assert all(torch.equal(payload["model_state"][name], value) for name, value in best.model.state_dict().items())


def test_without_evaluations_along_the_run_the_last_network_stays(camera_u8, spike_at_last_step):
    signal = tiles(camera_u8, 1)[0]
    result = fit_module.fit(signal, replace(CONFIG, eval_every=0), IMAGE.recipe)
    assert result.kept_step is None and [entry["step"] for entry in result.evaluations] == [STEPS]


def test_a_resumed_fit_remembers_its_best_network(camera_u8, spike_at_last_step):
    signal = tiles(camera_u8, 1)[0]
    whole = fit_module.fit(signal, CONFIG, IMAGE.recipe)
    saved = {}
    control = FitControl(save=lambda state: saved.update(state=state), save_every_steps=STEPS - 3,
                         stop_requested=lambda: "state" in saved)
    with pytest.raises(Interrupted):
        fit_module.fit(signal, CONFIG, IMAGE.recipe, control=control)
    resumed = fit_module.fit(signal, CONFIG, IMAGE.recipe, control=FitControl(resume=saved["state"]))
    assert resumed.kept_step == whole.kept_step < STEPS
    assert resumed.final.psnr == whole.final.psnr


def test_each_signal_of_a_group_keeps_its_own_best(camera_u8, spike_at_last_step):
    spike_at_last_step["index"] = 1  # only the middle signal's weights are spoiled
    signals = tiles(camera_u8)
    together = grouped_module.fit_group(signals, CONFIG, IMAGE.recipe)
    spike_at_last_step["on"] = False
    for index, (signal, outcome) in enumerate(zip(signals, together)):
        mine = outcome.result
        history = psnr_along_the_run(mine)
        assert sorted(history) == list(range(EVERY, STEPS + 1, EVERY))
        if index == 1:
            assert mine.kept_step == best_before_the_end(history)
            assert mine.final.psnr == pytest.approx(history[mine.kept_step], abs=1e-6)
            assert mine.final.psnr > history[STEPS] + 5
        else:  # untouched by the spike: what its own fit keeps and records
            alone = fit_module.fit(signal, CONFIG, IMAGE.recipe)
            assert mine.kept_step == alone.kept_step
            assert mine.final.psnr == pytest.approx(alone.final.psnr, abs=0.05)
            assert history == pytest.approx(psnr_along_the_run(alone), abs=0.05)


def test_the_best_is_chosen_per_signal_on_the_device_and_never_a_nan():
    weights = torch.zeros(3, 2)
    keeper = BestNetwork(lambda: {"w": weights}, signals=3)
    weights[:] = 1.0
    keeper.offer(torch.tensor([10.0, float("nan"), 30.0]), step=5)
    weights[:] = 2.0
    keeper.offer(torch.tensor([20.0, 5.0, 25.0]), step=10)
    assert keeper.step.tolist() == [10, 10, 5]
    assert keeper.values()["w"][:, 0].tolist() == [2.0, 2.0, 1.0]
    # Kept over the last network where strictly better, or where the last measured NaN.
    assert keeper.beats(torch.tensor([20.0, float("nan"), 26.0])).tolist() == [False, True, True]


def test_the_run_page_says_which_step_its_network_is_of():
    from inr_cli.pages.run_page import _run_facts

    report = {"model": "siren", "params": 1000, "steps": 300, "kept_step": 276, "seconds": 1.0,
              "steps_per_second": 300.0, "eval_seconds": 0.1, "device": "cpu", "precision": "fp32",
              "compiled": False, "input": "a.png", "config": {"fit": {"layers": 2, "hidden": 16, "lr": 5e-4}}}
    assert "300 (network of step 276, the best measured)" in _run_facts(report)
    assert "the best measured" not in _run_facts({**report, "kept_step": 300})


def test_the_psnr_plot_marks_the_kept_network(tmp_path):
    from PIL import Image

    from inr_cli.figures import write_psnr_plot
    from inr_cli.figures.charts import PALETTE

    batch = [10.0 + step / 10 for step in range(30)]
    evaluations = [{"step": 10, "psnr": 11.0}, {"step": 20, "psnr": 25.0}, {"step": 30, "psnr": 12.0}]
    kept_colour = np.array(PALETTE[3])

    def marked_pixels(kept_step) -> int:
        write_psnr_plot(tmp_path / "psnr.png", batch, evaluations, "t", kept_step=kept_step)
        pixels = np.asarray(Image.open(tmp_path / "psnr.png").convert("RGB")).astype(int)
        return int((np.abs(pixels - kept_colour).sum(axis=2) < 30).sum())

    assert marked_pixels(None) == 0
    assert marked_pixels(20) > 50  # the marker on the chart and its legend entry


def test_a_dataset_summary_counts_the_inputs_that_kept_an_earlier_network():
    from inr_cli.summary import markdown, summarize

    reports = {0: {"output_dir": "a", "psnr": 40.0, "seconds": 1.0, "steps": 300, "kept_step": 276},
               1: {"output_dir": "b", "psnr": 41.0, "seconds": 1.0, "steps": 300, "kept_step": 300},
               2: {"output_dir": "c", "psnr": 42.0, "seconds": 1.0, "steps": 300}}  # a report from before --keep
    summary = summarize(["a.png", "b.png", "c.png"], reports, ("psnr",))
    assert summary["kept_earlier"] == 1 and [row["kept_step"] for row in summary["rows"]] == [276, 300, 300]
    assert "3 of 3 inputs fitted. 1 kept an earlier network than their last step's" in markdown(summary, ("psnr",), "t")
    reports[0]["kept_step"] = 300
    assert "kept an earlier network" not in markdown(summarize(["a.png", "b.png", "c.png"], reports, ("psnr",)),
                                                     ("psnr",), "t")
    # One that stopped short of its steps (its loss ran away after every rollback) is counted as that, not as
    # having kept an earlier network.
    reports[1] |= {"kept_step": 50, "stopped_early": {"step": 51, "loss": 1e9, "kept_step": 50, "message": "m"}}
    summary = summarize(["a.png", "b.png", "c.png"], reports, ("psnr",))
    assert summary["kept_earlier"] == 0 and summary["stopped_early"] == 1
    assert ("3 of 3 inputs fitted. 1 stopped short of their steps, their loss running away after every rollback"
            in markdown(summary, ("psnr",), "t"))


def test_an_amortized_fit_whose_solves_stop_short_measures_its_history_one_way_and_says_so(camera_u8):
    """With --max-iter 1 the progress measure (solved from the cached training states) and the final one (solved
    from zero) part by ~10 dB. The history is one series of the first kind, the kept network is chosen on it, and
    a note gives both figures of the network written; alone and in a group alike."""
    signals = tiles(camera_u8, 2)
    config = replace(CONFIG, model="gabor-imfn", hidden=16, layers=1, steps=24, eval_every=6,
                     solver=replace(CONFIG.solver, max_iter=1))
    alone = fit_module.fit(signals[0], config, IMAGE.recipe)
    grouped = [outcome.result for outcome in grouped_module.fit_group(signals, config, IMAGE.recipe)]
    for result in (alone, grouped[0], grouped[1]):
        steps = [entry["step"] for entry in result.evaluations]
        along = [entry["psnr"] for entry in result.evaluations]
        assert steps == [6, 12, 18, 24]
        assert along[-1] > result.final.psnr + 3.0  # the last point is measured as the others, not from zero
        kept = result.kept_step or 24
        kept_psnr = along[steps.index(kept)]
        assert kept_psnr == max(along)  # --keep best chose on the one series
        [note] = [note for note in result.notes if "solving from zero" in note]
        assert f"step {kept}" in note and f"{kept_psnr:.2f} dB" in note and f"{result.final.psnr:.2f} dB" in note


def test_a_converged_amortized_fit_ends_its_history_at_its_final_psnr_without_a_note(camera_u8):
    config = replace(CONFIG, model="gabor-imfn", hidden=16, layers=1, steps=24, eval_every=6)
    result = fit_module.fit(tiles(camera_u8, 1)[0], config, IMAGE.recipe)
    assert result.evaluations[-1]["psnr"] == pytest.approx(result.final.psnr, abs=0.01)
    assert not [note for note in result.notes if "solving from zero" in note]
