"""A CPU training step in pieces of its batch: the same update as the whole batch at once, for every kind of
network (explicit, implicit amortized or solved, implicit run explicitly), eager and compiled; the piece size."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from inr_cli.modalities.image import IMAGE
from models import build_model
from models.fixpoint import SolverStats
from training.fitting import fit as fit_module
from training.fitting import step as step_module
from training.fitting.amortized import FixpointCache
from training.fitting.config import FitConfig
from training.fitting.devices import cpu_piece_points, render_chunk_size
from training.fitting.fit import fit
from training.fitting.signal import LOSSES, image_signal
from training.fitting.step import TrainingStep, piece_bounds

CPU = torch.device("cpu")
MINIBATCH = torch.randperm(2500, generator=torch.Generator().manual_seed(2))[:1900]


def test_pieces_cover_the_batch_in_order():
    assert piece_bounds(2500, 1000) == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert piece_bounds(2000, 1000) == [(0, 1000), (1000, 2000)]
    assert piece_bounds(2500, None) == piece_bounds(2500, 2500) == piece_bounds(2500, 4096) == [(0, 2500)]


def test_pieces_hold_8_mib_tensors_and_cpu_renders_use_them():
    assert (cpu_piece_points(256), cpu_piece_points(512), cpu_piece_points(64)) == (8192, 4096, 32768)
    assert cpu_piece_points(1 << 14) == 1024  # never fewer
    assert render_chunk_size(256, 3, CPU) == 8192 and render_chunk_size(64, 1, CPU) == 32768


def two_steps(name: str, loss: str, piece_rows: int | None, compile: bool = False, amortized: bool = False,
              one_pass: bool = False, batch: torch.Tensor | None = None):
    """Parameters and buffers, losses, (amortized) cached states and the step's fallback note after two steps on
    2,500 random points (rows ``batch`` of them; None = all), from the same start. Plain gradient descent: an
    update proportional to the gradient shows how close two gradients are, where Adam's first steps (about lr
    times the gradient's sign) would turn rounding noise in a near-zero gradient into a full step. (Here every
    piece's first solve converges in as many iterations as the whole batch's, so the states start the same.)"""
    torch.manual_seed(0)
    coords, target = torch.rand(2500, 2) * 2 - 1, torch.rand(2500, 1)
    if loss == "bce":
        target = (target > 0.5).float()
    torch.manual_seed(1)
    model = build_model(name, 2, 1, hidden=32, layers=2, frequency=10.0, one_pass=one_pass)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    cache = FixpointCache(2500, 32, CPU) if amortized else None
    step = TrainingStep(model, optimizer, LOSSES[loss], cache, CPU, compile, piece_rows=piece_rows)
    rows = slice(None) if batch is None else batch
    losses = [float(step(coords[rows], target[rows], batch)) for _ in range(2)]
    tensors = [p.detach().clone() for p in model.parameters()] + [b.clone() for b in model.buffers()]
    return tensors, losses, (None if cache is None else cache.z.clone()), step.note


@pytest.mark.parametrize("name, loss, variant", [
    ("siren", "mse", {}), ("gabor-mfn", "mse", {}), ("fourier-mfn", "bce", {}),
    ("gabor-imfn", "mse", {"amortized": True}), ("isiren", "mse", {"amortized": True}),
    ("fourier-imfn", "mse", {"amortized": True, "batch": MINIBATCH}),
    ("fourier-imfn", "mse", {}), ("gabor-imfn", "mse", {"one_pass": True})])
def test_a_step_in_pieces_updates_the_network_as_the_whole_batch_does(name, loss, variant):
    """Explicit networks; implicit ones amortized (the whole cache, and a minibatch of it), solved at every step,
    and run explicitly. Their spectral-norm estimates (buffers, compared too) advance once per step either way."""
    whole, whole_losses, whole_states, _ = two_steps(name, loss, None, **variant)
    pieces, piece_losses, piece_states, _ = two_steps(name, loss, 700, **variant)  # pieces of 700, the last shorter
    assert piece_losses == pytest.approx(whole_losses, rel=1e-5)
    for a, b in zip(whole, pieces):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    if whole_states is not None:
        torch.testing.assert_close(piece_states, whole_states, rtol=1e-4, atol=1e-5)
    again = two_steps(name, loss, 700, **variant)[0]
    assert all(torch.equal(a, b) for a, b in zip(pieces, again))  # deterministic: a resumed fit ends the same


@pytest.mark.parametrize("name, variant", [("siren", {}), ("fourier-imfn", {"amortized": True})])
def test_a_compiled_step_runs_in_pieces_too(monkeypatch, name, variant):
    monkeypatch.setenv("INR_COMPILE_BACKEND", "aot_eager")
    monkeypatch.setattr(step_module, "_COMPILED", {})
    monkeypatch.setattr(step_module, "_COMPILE_FAILURES", {})
    """The compiled pieces run the step as the eager pieces do, to rounding: shapes change within a step (pieces
    of 1,000 points and a last one of 500; an amortized fit's first solve over all 2,500), so torch.compile
    recompiles for dynamic shapes, whose kernels round differently from the eager ones.
    Parameters only: a power iteration's vectors (the implicit network's buffers) amplify rounding where the
    top two singular values of a small random matrix lie close; the norm they estimate does not."""
    eager, eager_losses, _, _ = two_steps(name, "mse", 1000, **variant)
    compiled, compiled_losses, _, note = two_steps(name, "mse", 1000, compile=True, **variant)
    assert note is None  # compiled to the end, not fallen back to eager mode
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    parameters = len(list(build_model(name, 2, 1, hidden=32, layers=2, frequency=10.0).parameters()))
    for a, b in zip(eager[:parameters], compiled[:parameters]):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["siren", "fourier-imfn"])
def test_a_cpu_fit_in_pieces_ends_where_the_whole_batch_fit_does(camera_crop, monkeypatch, model):
    signal = image_signal(camera_crop[:32, :32])
    config = FitConfig(model=model, hidden=32, layers=2 if model == "siren" else 1, steps=40, device="cpu",
                       eval_every=20)
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
    monkeypatch.setattr(fit_module, "cpu_piece_points", lambda hidden: 1 << 20)
    whole = fit(signal, config, IMAGE.recipe)
    assert set(calls) == {1}
    assert in_pieces.final.psnr == pytest.approx(whole.final.psnr, abs=0.01)


def test_a_batch_solved_in_pieces_converges_everywhere_and_keeps_one_record():
    """An amortized cache solves a batch's first-seen points piece by piece, each piece stopping at its own
    convergence: every state ends within the solver's tolerance, and the batch keeps one record of its solve."""
    torch.manual_seed(0)
    coords = torch.rand(2500, 2) * 2 - 1
    model = build_model("gabor-imfn", 2, 1, hidden=32, layers=2, frequency=10.0)
    cache = FixpointCache(2500, 32, CPU)
    cache.ensure_solved(model, coords, None, piece_bounds(2500, 700))
    assert bool(cache.valid.all()) and len(cache.solves) == 1 and cache.solves[0].rel_residual.shape == (2500,)
    assert cache.residuals(model, coords, 1000)["max_rel_residual"] <= model.settings.tol


def test_the_record_of_pieces_joins_them():
    def part(steps, trace, residuals, converged=True):
        residuals = torch.tensor(residuals)
        return SolverStats("fixed-point", steps, residuals * 2, residuals, converged, trace)

    joined = SolverStats.joined([part(3, [0.5, 0.1, 0.01], [0.01, 0.002]),
                                 part(5, [0.4, 0.2, 0.05, 0.02, 0.009], [0.009], converged=False)])
    assert (joined.steps, joined.converged) == (5, False)
    assert joined.trace == [0.5, 0.2, 0.05, 0.02, 0.01]  # the first piece's last value stays once it stopped
    assert joined.rel_residual.tolist() == pytest.approx([0.01, 0.002, 0.009])
    single = part(2, [0.3, 0.001], [0.001])
    assert SolverStats.joined([single]) is single


def _ball(radius: float, seed: int):
    from training.fitting.signal import Samples, ScatteredSamples

    generator = torch.Generator().manual_seed(seed)
    points, held = torch.rand(1600, 3, generator=generator) * 2 - 1, torch.rand(100, 3, generator=generator) * 2 - 1
    distance = lambda p: p.norm(dim=1, keepdim=True) - radius  # noqa: E731
    return ScatteredSamples(Samples(points, distance(points)), {"uniform": Samples(held, distance(held))})


def group_after_two_steps(monkeypatch, signals, config, recipe, piece_points: int):
    """Every signal's parameters and buffers after two group steps (plain gradient descent, as ``two_steps``), the
    group's steps run in pieces of ``piece_points`` points shared among its signals; and the pieces' counts."""
    from training.fitting import grouped

    counts = []

    def counted_bounds(rows, piece_rows):
        counts.append(len(piece_bounds(rows, piece_rows)))
        return piece_bounds(rows, piece_rows)

    monkeypatch.setattr(grouped, "piece_bounds", counted_bounds)
    monkeypatch.setattr(grouped, "cpu_piece_points", lambda hidden: piece_points)
    monkeypatch.setattr(grouped, "make_optimizer",
                        lambda parameters, config, device: torch.optim.SGD(parameters, lr=0.05))
    outcomes = grouped.fit_group(signals, config, recipe)
    assert all(outcome.error is None for outcome in outcomes)
    return [[t.detach().clone() for t in outcome.result.model.state_dict().values()] for outcome in outcomes], counts


@pytest.mark.parametrize("name, options", [
    ("siren", {}), ("gabor-mfn", {}), ("gabor-imfn", {}), ("isiren", {}),
    ("fourier-imfn", {"batch_size": 1300}),  # minibatches: the amortized cache indexed per batch
    ("fourier-imfn", {"amortize": False}), ("fourier-imfn", {"samples": True})])
def test_a_group_step_in_pieces_updates_every_signal_as_the_whole_group_step_does(camera_crop, monkeypatch, name,
                                                                                 options):
    """A group fit on a CPU runs its steps in pieces along the points, shared among its signals (three grids of
    1,600 points; or shapes, each on its own points): every signal's network, its spectral-norm estimates and
    (amortized) states included, ends the steps as in the whole group step."""
    from inr_cli.modalities.shape import SHAPE

    options = dict(options)
    if options.pop("samples", False):
        signals, recipe = [_ball(0.5, 1), _ball(0.7, 2)], SHAPE.recipe
    else:
        signals, recipe = [image_signal(camera_crop[i * 8:i * 8 + 40, :40]) for i in range(3)], IMAGE.recipe
    config = FitConfig(model=name, hidden=16, layers=1 if "imfn" in name or name == "isiren" else 2,
                       steps=2, device="cpu", eval_every=0, keep="last", compile=False, **options)
    whole, counts = group_after_two_steps(monkeypatch, signals, config, recipe, 1 << 20)
    assert set(counts) == {1}
    pieces, counts = group_after_two_steps(monkeypatch, signals, config, recipe, 500 * len(signals))
    assert set(counts) == {3 if options.get("batch_size", 1600) < 1600 else 4}  # of 500 points per signal
    for signal_whole, signal_pieces in zip(whole, pieces):
        for a, b in zip(signal_whole, signal_pieces):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_a_compiled_group_step_runs_in_pieces_too(camera_crop, monkeypatch):
    monkeypatch.setenv("INR_COMPILE_BACKEND", "aot_eager")
    monkeypatch.setattr(step_module, "_COMPILE_FAILURES", {})
    signals = [image_signal(camera_crop[i * 8:i * 8 + 40, :40]) for i in range(3)]
    config = FitConfig(model="siren", hidden=16, layers=2, steps=2, device="cpu", eval_every=0, keep="last",
                       compile=False)
    eager, _ = group_after_two_steps(monkeypatch, signals, config, IMAGE.recipe, 1500)
    from training.fitting import grouped

    compiled_outcomes = grouped.fit_group(signals, replace(config, compile=True), IMAGE.recipe)
    assert all(o.result.compiled and not any("eagerly" in note for note in o.result.notes) for o in compiled_outcomes)
    for signal_eager, outcome in zip(eager, compiled_outcomes):
        for a, b in zip(signal_eager, outcome.result.model.state_dict().values()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
