"""Implicit models: one f evaluation per amortized step, cache vs re-solved fixpoint, fitting quality."""

import pytest
import torch
from skimage import data

from inr_cli.modalities.image import IMAGE
from models import build_model, count_parameters
from models.fixpoint import SolverSettings
from models.implicit import ImplicitINR
from training.fitting.amortized import FixpointCache
from training.fitting.config import FitConfig
from training.fitting.fit import fit
from training.fitting.signal import image_signal

IMPLICIT = ["isiren", "fourier-imfn", "gabor-imfn"]


def crop(size=32):
    image = data.camera()[200:200 + 2 * size:2, 200:200 + 2 * size:2] / 255.0
    return torch.tensor(image, dtype=torch.float32)[:, :, None]


@pytest.mark.parametrize("name", IMPLICIT)
def test_explicit_counterpart_has_identical_parameters(name):
    torch.manual_seed(0)
    implicit = build_model(name, 2, 3, hidden=32, layers=2, frequency=16.0)
    torch.manual_seed(0)
    explicit = build_model(name, 2, 3, hidden=32, layers=2, frequency=16.0, one_pass=True)
    assert count_parameters(implicit) == count_parameters(explicit)
    for (key, a), (_, b) in zip(implicit.state_dict().items(), explicit.state_dict().items()):
        assert torch.equal(a, b), key
    x = torch.rand(10, 2) * 2 - 1
    with torch.no_grad():
        one_pass = explicit(x)
        solved = implicit(x)
    assert not torch.allclose(one_pass, solved)  # a fixpoint is not one pass


@pytest.mark.parametrize("name", ["fourier-imfn", "gabor-imfn"])
def test_one_pass_imfn_is_the_explicit_mfn_recursion(name):
    torch.manual_seed(0)
    model = build_model(name, 2, 1, hidden=16, layers=2, frequency=8.0, one_pass=True).eval()
    x = torch.rand(7, 2) * 2 - 1
    with torch.no_grad():
        prepared = model.prepare(x)
        z = prepared.filters[0]
        for weight, bias, g in zip(prepared.weights, prepared.biases, prepared.filters[1:]):
            z = g * (z @ weight.T + bias)
        assert torch.allclose(model(x), model.head(z), atol=1e-6)


def test_spectral_norm_makes_each_layer_a_contraction():
    torch.manual_seed(0)
    model = build_model("fourier-imfn", 2, 1, hidden=64, layers=1, frequency=8.0)
    with torch.no_grad():
        model.linears[0].weight.mul_(20.0)  # far above 1 before normalisation
    model.train()
    for _ in range(5):
        weight = model.prepare(torch.zeros(1, 2)).weights[0]
    # Power iteration approaches sigma from below, so allow a hair over the target: still a contraction.
    assert torch.linalg.matrix_norm(weight.detach(), 2) <= 0.975
    small = torch.eye(64) * 0.5
    assert torch.allclose(model.norms[0](small), small)  # shrink only: never scales up


def test_spectral_bound_holds_while_the_weight_grows_during_training():
    """W roughly doubles over an image fit; the estimate refined each training forward must keep up with it."""
    torch.manual_seed(1)
    model = build_model("gabor-imfn", 2, 1, hidden=64, layers=1, frequency=8.0)
    model.train()
    worst = 0.0
    for _ in range(150):
        with torch.no_grad():  # growth and rotation of W, as Adam steps would give it
            weight = model.linears[0].weight
            weight.mul_(1.005).add_(0.003 * torch.randn_like(weight) * weight.abs().mean())
        normalised = model.prepare(torch.zeros(1, 2)).weights[0].detach()
        worst = max(worst, float(torch.linalg.matrix_norm(normalised, 2)))
    assert float(torch.linalg.matrix_norm(model.linears[0].weight.detach(), 2)) > 2.0  # it did grow
    assert worst <= 0.975  # a contraction at every step


def amortized_setup(name: str, layers: int):
    """A 32-wide implicit model, a 16x16 camera crop, its coordinates and an empty fixpoint cache."""
    torch.manual_seed(0)
    model = build_model(name, 2, 1, hidden=32, layers=layers, frequency=16.0)
    signal = image_signal(crop(16))
    coords = signal.coordinates()
    return model, signal, coords, FixpointCache(len(coords), 32, torch.device("cpu"))


def count_f_evaluations(monkeypatch) -> list[int]:
    """Count evaluations of every ImplicitINR's map f (its layers after the injection) from now on."""
    calls = [0]
    layers = ImplicitINR._layers

    def counted(self, z, prepared):
        calls[0] += 1
        return layers(self, z, prepared)

    monkeypatch.setattr(ImplicitINR, "_layers", counted)
    return calls


def test_amortized_step_evaluates_f_exactly_once(monkeypatch):
    model, signal, coords, cache = amortized_setup("gabor-imfn", layers=2)
    calls = count_f_evaluations(monkeypatch)
    cache.predict(model, coords, None).sum().backward()  # first step: a full solve, then one evaluation
    first_step = calls[0]
    assert first_step == cache.initial_solves[0]["steps"] + 1
    for _ in range(3):
        model.zero_grad()
        prediction = cache.predict(model, coords, None)
        ((prediction - signal.values) ** 2).mean().backward(inputs=list(model.parameters()))
    assert calls[0] - first_step == 3


def test_training_without_amortization_solves_every_step(monkeypatch):
    signal = image_signal(crop(16))
    calls = count_f_evaluations(monkeypatch)
    result = fit(signal, FitConfig(model="fourier-imfn", hidden=32, layers=1, steps=3, amortize=False, eval_every=0),
                 IMAGE.recipe)
    evaluation = result.solver["evaluation"]
    training_calls = calls[0] - evaluation["solves"] * evaluation["iterations_mean"]
    assert training_calls > 3 * 3  # each step a full solve (several evaluations) and one with the graph
    assert result.solver["training"]["amortized"] is False


@pytest.mark.parametrize("name,bar", [("isiren", 27.0), ("fourier-imfn", 27.0), ("gabor-imfn", 27.0)])
def test_implicit_models_fit_a_real_image_and_their_evaluation_converges(name, bar):
    signal = image_signal(crop(32))
    result = fit(signal, FitConfig(model=name, hidden=64, layers=1, steps=200, eval_every=0), IMAGE.recipe)
    assert result.final.psnr > bar
    evaluation = result.solver["evaluation"]
    assert evaluation["converged"]
    assert evaluation["max_rel_residual"] <= 1e-3
    # After training, the amortized cache stays close to the re-solved fixpoint.
    assert result.solver["training"]["max_rel_residual"] < 0.05


def test_minibatch_cache_is_addressed_by_index():
    signal = image_signal(crop(16))
    result = fit(signal, FitConfig(model="fourier-imfn", hidden=32, layers=1, steps=40, batch_size=64, eval_every=0),
                 IMAGE.recipe)
    training = result.solver["training"]
    assert training["initial_solves"] == 256 // 64  # each point solved once, on its first visit
    # Each point is revisited only once an epoch while the weights move every step: a looser bound than full batch.
    assert training["max_rel_residual"] < 0.15
    assert isinstance(result.model, ImplicitINR)


def test_cli_implicit_fit_reports_solver_and_samples_at_another_size(tmp_path):
    import json

    from PIL import Image

    from helpers import run_here, save_png

    save_png(tmp_path / "cam.png", data.camera()[::16, ::16])  # 32 x 32
    proc = run_here(["fit", "image", "cam.png", "--model", "gabor-imfn", "--hidden", "32", "--layers", "1",
                    "--steps", "60", "--solver", "anderson", "--out", "run", "--json", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    solver = report["solver"]
    assert solver["solver"] == "anderson" and solver["training"]["amortized"] is True
    assert solver["evaluation"]["converged"] is True
    assert solver["evaluation"]["max_rel_residual"] <= 1e-3
    assert report["config"]["fit"]["model"] == "gabor-imfn" and report["config"]["fit"]["solver"]["neumann_steps"] == 1
    sampled = run_here(["sample", "run/checkpoint.pt", "--scale", "2"], cwd=tmp_path)
    assert sampled.returncode == 0, sampled.stderr
    assert Image.open(tmp_path / "run" / "sample-64x64.png").size == (64, 64)


def test_cli_warns_when_the_evaluation_solve_does_not_converge(tmp_path):
    from helpers import run_here, save_png

    save_png(tmp_path / "cam.png", data.camera()[::16, ::16])
    proc = run_here(["fit", "image", "cam.png", "--model", "isiren", "--hidden", "16", "--steps", "5",
                    "--max-iter", "2", "--out", "run", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0
    assert "did not converge" in proc.stderr and "(raise --max-iter or try --solver anderson)" in proc.stderr


def test_a_bf16_fit_that_cannot_reach_its_tolerance_is_told_the_tolerance_bf16_can_reach(tmp_path):
    from helpers import run_here, save_png

    # bf16 rounds f(z) by ~4e-3: at the default --tol 1e-3 no solve converges, and more iterations cannot help.
    save_png(tmp_path / "cam.png", data.camera()[200:224, 200:224])
    args = ["fit", "image", "cam.png", "--model", "gabor-imfn", "--hidden", "16", "--layers", "1", "--steps", "40",
            "--precision", "bf16", "--quiet"]
    proc = run_here([*args, "--out", "run"], cwd=tmp_path)
    assert proc.returncode == 0 and "(give --tol 1e-2 with --precision bf16, or fit in fp32)" in proc.stderr
    advised = run_here([*args, "--out", "advised", "--tol", "1e-2"], cwd=tmp_path)
    assert advised.returncode == 0 and advised.stderr == ""


def test_implicit_model_exact_gradient_matches_finite_differences():
    """Through the whole model: solve, differentiate at the fixpoint w.r.t. the injected state, backward exact."""
    torch.manual_seed(0)
    settings = SolverSettings(solver="anderson", tol=1e-13, max_iter=500, backward="exact", backward_tol=1e-13,
                              backward_max_iter=500)
    model = build_model("fourier-imfn", 2, 1, hidden=6, layers=2, frequency=3.0, settings=settings).double().eval()
    with torch.no_grad():
        model(torch.zeros(1, 2, dtype=torch.float64))  # warm the spectral-norm estimate once
    x = torch.rand(5, 2, dtype=torch.float64) * 2 - 1
    weights = torch.randn(5, 1, dtype=torch.float64)
    (weights * model(x)).sum().backward()
    for parameter in (model.linears[0].bias, model.filters[1].linear.weight):
        analytic = parameter.grad.clone()
        numeric = torch.zeros_like(parameter)
        for index in range(parameter.numel()):
            values = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    parameter.view(-1)[index] += sign * 1e-6
                    values.append((weights * model(x)).sum().item())
                    parameter.view(-1)[index] -= sign * 1e-6
            numeric.view(-1)[index] = (values[0] - values[1]) / 2e-6
        assert torch.allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_cache_stays_close_to_the_re_solved_fixpoint_after_training():
    model, signal, coords, cache = amortized_setup("fourier-imfn", layers=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(100):
        optimizer.zero_grad()
        torch.mean((cache.predict(model, coords, None) - signal.values) ** 2).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        z_star, stats = model.solve(model.prepare(coords), model.zeros(coords))
    assert stats.converged and stats.max_rel_residual <= model.settings.tol
    distance = torch.linalg.norm(cache.z - z_star, dim=-1) / torch.linalg.norm(z_star, dim=-1)
    assert distance.max() < 0.05


def test_no_cache_when_it_would_crowd_out_memory(monkeypatch):
    import training.fitting.fit as fit_module

    monkeypatch.setattr(fit_module, "memory_budget_bytes", lambda device: 1 << 20)  # 1 MiB: the cache cannot fit
    signal = image_signal(crop(32))
    result = fit(signal, FitConfig(model="fourier-imfn", hidden=128, layers=1, steps=3, batch_size=1024,
                                   eval_every=0), IMAGE.recipe)
    training = result.solver["training"]
    assert training["amortized"] is False and "GiB" in training["note"]
    assert result.solver["evaluation"]["converged"]
