"""A CPU training step in pieces of its batch: the same update as the whole batch at once, for the networks that
can take it, eager and compiled; how large the pieces are."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from inr_cli.modalities.image import IMAGE
from models import build_model
from training.fitting import fit as fit_module
from training.fitting import step as step_module
from training.fitting.config import FitConfig
from training.fitting.devices import cpu_piece_points, render_chunk_size
from training.fitting.fit import fit
from training.fitting.signal import LOSSES, image_signal
from training.fitting.step import TrainingStep, piece_bounds, runs_in_pieces

CPU = torch.device("cpu")


def test_pieces_cover_the_batch_in_order():
    assert piece_bounds(2500, 1000) == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert piece_bounds(2000, 1000) == [(0, 1000), (1000, 2000)]
    assert piece_bounds(2500, None) == piece_bounds(2500, 2500) == piece_bounds(2500, 4096) == [(0, 2500)]


def test_pieces_hold_8_mib_tensors_and_cpu_renders_use_them():
    assert (cpu_piece_points(256), cpu_piece_points(512), cpu_piece_points(64)) == (8192, 4096, 32768)
    assert cpu_piece_points(1 << 14) == 1024  # never fewer
    assert render_chunk_size(256, 3, CPU) == 8192 and render_chunk_size(64, 1, CPU) == 32768


def test_only_networks_that_treat_points_alone_with_fixed_weights_run_in_pieces():
    def network(name):
        return build_model(name, 2, 1, hidden=16, layers=1, frequency=30.0)

    assert all(runs_in_pieces(network(name), None) for name in ("siren", "fourier-mfn", "gabor-mfn"))
    # Spectral normalisation advances its power iteration with every training forward: not in pieces.
    assert not any(runs_in_pieces(network(name), None) for name in ("isiren", "fourier-imfn", "gabor-imfn"))
    assert not runs_in_pieces(network("siren"), object())  # an amortized cache rewrites all its states


def two_steps(name: str, loss: str, piece_rows: int | None, compile: bool = False):
    """Parameters and losses after two Adam steps on 2,500 random points, from the same start."""
    torch.manual_seed(0)
    coords, target = torch.rand(2500, 2) * 2 - 1, torch.rand(2500, 1)
    if loss == "bce":
        target = (target > 0.5).float()
    torch.manual_seed(1)
    model = build_model(name, 2, 1, hidden=32, layers=2, frequency=10.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = TrainingStep(model, optimizer, LOSSES[loss], None, CPU, compile, piece_rows=piece_rows)
    losses = [float(step(coords, target, None)) for _ in range(2)]
    return [p.detach().clone() for p in model.parameters()], losses


@pytest.mark.parametrize("name, loss", [("siren", "mse"), ("gabor-mfn", "mse"), ("fourier-mfn", "bce")])
def test_a_step_in_pieces_updates_the_network_as_the_whole_batch_does(name, loss):
    whole, whole_losses = two_steps(name, loss, None)
    pieces, piece_losses = two_steps(name, loss, 700)  # three pieces of 700 and one of 400
    assert piece_losses == pytest.approx(whole_losses, rel=1e-5)
    for a, b in zip(whole, pieces):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    moved = two_steps(name, loss, 700)[0]
    assert all(torch.equal(a, b) for a, b in zip(pieces, moved))  # deterministic: a resumed fit ends the same


def test_a_compiled_step_runs_in_pieces_too(monkeypatch):
    monkeypatch.setenv("INR_COMPILE_BACKEND", "aot_eager")
    monkeypatch.setattr(step_module, "_COMPILED", {})
    monkeypatch.setattr(step_module, "_COMPILE_FAILURES", {})
    eager, eager_losses = two_steps("siren", "mse", 1000)
    compiled, compiled_losses = two_steps("siren", "mse", 1000, compile=True)
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_a_cpu_fit_in_pieces_ends_where_the_whole_batch_fit_does(camera_crop, monkeypatch):
    signal = image_signal(camera_crop[:32, :32])
    config = FitConfig(model="siren", hidden=32, layers=2, steps=40, device="cpu", eval_every=20)
    calls = []
    original_run = TrainingStep._run

    def counting_run(self, coords, target, batch):
        calls.append(len(piece_bounds(len(coords), self.piece_rows)))
        return original_run(self, coords, target, batch)

    monkeypatch.setattr(TrainingStep, "_run", counting_run)
    monkeypatch.setattr(fit_module, "cpu_piece_points", lambda hidden: 300)  # 1,024 points: four pieces
    in_pieces = fit(signal, config, IMAGE.recipe)
    assert set(calls) == {4}
    calls.clear()
    monkeypatch.setattr(fit_module, "runs_in_pieces", lambda model, cache: False)
    whole = fit(signal, replace(config), IMAGE.recipe)
    assert set(calls) == {1}
    assert in_pieces.final.psnr == pytest.approx(whole.final.psnr, abs=0.01)
