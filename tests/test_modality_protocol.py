"""A new modality is one class: defined here, registered, then fitted and re-rendered through the very code paths
`inr fit` and `inr sample` use (inr_cli.fitting.run_fit_command, inr_cli.sample.run_sample), with no other module
changed.

The modality: a 1-D function sampled on a regular grid, stored as a .npy array of values in [-amplitude,
amplitude]; its one option is that amplitude.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from inr_cli.fitting import OutputOptions, run_fit_command
from inr_cli.modalities import (FitCommandConfig, FittedNetwork, LoadedSignal, Modality, ModalityOptions, Outputs,
                                SampleRequest, SampleTarget, get_modality, register_modality)
from inr_cli.sample import run_sample
from inr_core.errors import InvalidSetting, UserError, check
from training.fitting.config import FitConfig
from training.fitting.recipes import Recipe, frequency_for_bandwidth, papers_learning_rate
from training.fitting.signal import GridSignal, SubGrid

POINTS = 200
AMPLITUDE = 2.0


def wave(t: np.ndarray) -> np.ndarray:
    return AMPLITUDE * (0.6 * np.sin(3 * np.pi * t) + 0.3 * np.sin(7 * np.pi * t + 0.5))


@dataclass(frozen=True)
class SinesOptions(ModalityOptions):
    amplitude: float = 1.0  # the file's values lie in [-amplitude, amplitude]

    def validate(self) -> None:
        check(self.amplitude > 0, "amplitude", f"must be positive, got {self.amplitude}")


@dataclass
class LoadedSines(LoadedSignal):
    values: np.ndarray  # as read
    amplitude: float


class SinesModality(Modality):
    name = "sines"
    options_type = SinesOptions
    sample_settings = ("scale",)

    def load(self, source: str, options: SinesOptions, seed: int) -> LoadedSines:
        values = np.load(source).astype(np.float32)
        count = len(values)
        signal = GridSignal(torch.from_numpy(values / options.amplitude)[:, None], (count,),
                            SubGrid(torch.arange(count), (count,)))
        return LoadedSines(signal, {"kind": self.name, "points": count}, [], values, options.amplitude)

    def recipe(self, model: str, signal: GridSignal) -> Recipe:
        return Recipe(papers_learning_rate(model), frequency_for_bandwidth(model, signal.values))

    def write_outputs(self, loaded: LoadedSines, result, out_dir: Path, rendered=None) -> Outputs:
        reconstruction = (result.final.reconstruction[:, 0].numpy() * 2 - 1) * loaded.amplitude
        np.save(out_dir / "reconstruction.npy", reconstruction)
        return Outputs({"reconstruction": "reconstruction.npy"},
                       {"max_error": float(np.abs(reconstruction - loaded.values).max())})

    def sample_target(self, info: dict, request: SampleRequest) -> SampleTarget:
        count = round(info["points"] * (request.scale or 1.0))
        return SampleTarget((count,), f"sample-{count}.npy", (".npy",))

    def write_sample(self, network: FittedNetwork, target: SampleTarget, path: Path) -> None:
        # The options come back whole from the checkpoint: the amplitude undoes the scaling of the fit.
        np.save(path, (network.render(target.grid)[:, 0].numpy() * 2 - 1) * network.config.options.amplitude)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A registered sines modality, fitted once through the fit command's code path."""
    register_modality(SinesModality())
    folder = tmp_path_factory.mktemp("sines")
    np.save(folder / "wave.npy", wave(np.linspace(-1, 1, POINTS)))
    config = FitCommandConfig("sines", FitConfig(model="fourier-mfn", hidden=32, layers=1, steps=300, device="cpu",
                                                 eval_every=0), SinesOptions(amplitude=AMPLITUDE))
    code = run_fit_command(config, [str(folder / "wave.npy")],
                           OutputOptions(out=folder / "run", as_json=True, show_progress=False))
    assert code == 0
    return folder, json.loads((folder / "run" / "report.json").read_text())


def test_a_new_modality_fits_through_the_command_path(fitted):
    folder, report = fitted
    assert get_modality("sines").command == "sines"
    assert report["sines"] == {"kind": "sines", "points": POINTS}
    assert report["config"]["modality"] == "sines" and report["config"]["options"] == {"amplitude": AMPLITUDE}
    # Its recipe was used: MFN learning rate 1e-3, input scale 2 pi k99, where k99 = 8 (an rfft bin counts from 1):
    # the faster sine makes 7 cycles over [-1, 1].
    assert report["config"]["fit"]["lr"] == 1e-3
    assert report["config"]["fit"]["frequency"] == pytest.approx(2 * np.pi * 8)
    # Measured 48.1 dB after 300 steps; the error of the written file is the one the PSNR implies.
    assert report["psnr"] > 45.0
    written = np.load(folder / "run" / "reconstruction.npy")
    truth = wave(np.linspace(-1, 1, POINTS))
    assert report["max_error"] == pytest.approx(np.abs(written - truth).max(), rel=1e-5)
    mse_unit = np.mean(((written - truth) / (2 * AMPLITUDE)) ** 2)
    assert -10 * np.log10(mse_unit) == pytest.approx(report["psnr"], abs=0.01)
    assert sorted(report["files"]) == ["checkpoint", "page", "psnr_plot", "reconstruction", "report"]


def test_the_new_modality_re_renders_through_the_sample_path(fitted, tmp_path):
    folder, report = fitted
    checkpoint = folder / "run" / "checkpoint.pt"
    same = run_sample(checkpoint, SampleRequest(), out=tmp_path / "same.npy", device="cpu")
    np.testing.assert_allclose(np.load(same), np.load(folder / "run" / "reconstruction.npy"), atol=1e-6)
    finer = run_sample(checkpoint, SampleRequest(scale=2.0), device="cpu")
    assert finer == folder / "run" / f"sample-{2 * POINTS}.npy"
    values = np.load(finer)
    # The same function on a grid twice as fine: between the fitted points it follows the wave as closely as at
    # them (measured: RMS error 0.016 at the fitted points, 0.015 on the finer grid; the worst, 0.10, at the ends).
    assert values.shape == (2 * POINTS,)
    error = values - wave(np.linspace(-1, 1, 2 * POINTS))
    fitted_error = np.load(folder / "run" / "reconstruction.npy") - wave(np.linspace(-1, 1, POINTS))
    assert np.sqrt(np.mean(error ** 2)) < 1.1 * np.sqrt(np.mean(fitted_error ** 2))
    assert np.abs(error).max() < 1.1 * report["max_error"]


def test_sample_settings_the_new_modality_does_not_take_are_refused(fitted):
    folder, _ = fitted
    with pytest.raises(UserError, match="--rate does not apply to sines checkpoints"):
        run_sample(folder / "run" / "checkpoint.pt", SampleRequest(rate=8000), device="cpu")


def test_its_options_are_validated_once_before_any_input_is_read(tmp_path):
    register_modality(SinesModality())
    config = FitCommandConfig("sines", FitConfig(device="cpu"), SinesOptions(amplitude=0.0))
    with pytest.raises(InvalidSetting, match="amplitude"):
        run_fit_command(config, [str(tmp_path / "missing.npy")], OutputOptions(out=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


class TwiceMeasured(SinesModality):
    """Measures PSNR a second way while writing: the report must not pick one by merge order."""

    name = "sines-twice"

    def write_outputs(self, loaded, result, out_dir: Path, rendered=None) -> Outputs:
        return Outputs({}, {"psnr": 0.0})


def test_a_metric_measured_twice_is_an_error_not_a_merge(tmp_path):
    register_modality(TwiceMeasured())
    np.save(tmp_path / "wave.npy", wave(np.linspace(-1, 1, 20)))
    config = FitCommandConfig("sines-twice", FitConfig(model="fourier-mfn", hidden=8, layers=1, steps=2,
                                                       device="cpu"), SinesOptions(amplitude=AMPLITUDE))
    with pytest.raises(ValueError, match="measured twice: psnr"):
        run_fit_command(config, [str(tmp_path / "wave.npy")], OutputOptions(out=tmp_path / "run",
                                                                             show_progress=False))


def test_a_sample_asked_for_a_scale_and_a_size_is_a_usage_error():
    """Both at once is a mistake in the command line itself (exit code 2, as for any bad option value), caught
    before the checkpoint is read."""
    from inr_cli.modalities.base import SampleRequest
    from inr_core.errors import InvalidSetting

    with pytest.raises(InvalidSetting, match="cannot be given with --width or --height"):
        SampleRequest(scale=0.5, width=10).validate()
    SampleRequest(scale=0.5).validate()
    SampleRequest(width=10, height=4).validate()
