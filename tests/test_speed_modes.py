"""Precision modes, the compiled training step and its fallback, sync-free solvers, and outputs written while
the next input trains — all on the CPU.

The compiled path runs with the ``aot_eager`` backend: it traces, splits forward and backward and replays them
exactly as ``inductor`` does, without spending a minute generating C++ on a two-core machine.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import psnr_np, save_png
from inr_cli.fitting import OutputOptions, run_fit_command
from inr_cli.modalities.base import FitCommandConfig
from inr_cli.modalities.image import IMAGE, ImageOptions
from models import build_model
from models.base import coordinate_linear
from models.fixpoint import SolverSettings, solve
from models.fixpoint import stats as stats_module
from training.fitting import step as step_module
from training.fitting.config import FitConfig
from training.fitting.fit import fit
from training.fitting.precision import autocast
from training.fitting.signal import image_signal

CPU = torch.device("cpu")

# PSNR of these fits as the code before precision modes and compiled steps gave them (PyTorch 2.13 CPU, seed 0):
# 64x64 camera (area-downscaled), hidden 64, one hidden layer (SIREN three), 60 steps, default recipe. (Gabor
# filters and implicit models are left out: their envelope clamp and spectral-norm schedule changed on purpose.)
BEFORE = {"siren": 31.931495812924, "fourier-mfn": 24.13199501420347}


@pytest.fixture(scope="module")
def camera_64() -> torch.Tensor:
    from skimage import data

    pixels = torch.from_numpy(data.camera().astype(np.float32) / 255.0)[None, None]
    return torch.nn.functional.interpolate(pixels, size=(64, 64), mode="area")[0].permute(1, 2, 0)


def small_config(model: str, **changes) -> FitConfig:
    return replace(FitConfig(model=model, hidden=64, layers=3 if model == "siren" else 1, steps=60, device="cpu",
                             eval_every=30), **changes)


@pytest.mark.parametrize("model", list(BEFORE))
def test_fp32_gives_the_psnr_of_the_code_before_precision_modes(camera_64, model):
    result = fit(image_signal(camera_64), small_config(model, precision="fp32"), IMAGE.recipe)
    assert result.config.precision == "fp32" and not result.compiled
    # Same arithmetic in the same order: only rounding-level differences are allowed, never a change of method.
    assert result.final.psnr == pytest.approx(BEFORE[model], abs=1e-4)


def test_cpu_defaults_are_fp32_and_eager(camera_64):
    config = fit(image_signal(camera_64[:16, :16]), small_config("siren", steps=2), IMAGE.recipe).config
    assert config.precision == "fp32" and config.compile is False


def test_the_default_compiles_long_fits_and_on_a_cpu_only_large_steps():
    from training.fitting.step import compile_by_default

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert compile_by_default(cuda, 400, 512 * 512) and not compile_by_default(cuda, 300, 128 * 128)
    assert compile_by_default(cuda, 30_000, 64 * 64)  # many small steps earn it back on a GPU
    assert compile_by_default(cpu, 1600, 256 * 256)  # 1.05e8 point-steps of 65,536 points
    assert not compile_by_default(cpu, 30_000, 64 * 64)  # as many point-steps, but steps too small to gain
    assert not compile_by_default(cpu, 1000, 256 * 256)  # large steps, too few of them
    # A CPU fit of one model runs its large steps in pieces, where compiling speeds up only some models.
    assert compile_by_default(cpu, 1600, 256 * 256, "siren") and compile_by_default(cpu, 1600, 256 * 256, "fourier-mfn")
    assert not compile_by_default(cpu, 1600, 256 * 256, "gabor-imfn")
    assert compile_by_default(cuda, 400, 512 * 512, "gabor-imfn")


def test_bf16_runs_hidden_products_in_bf16_and_phases_in_fp32():
    coords = torch.rand(100, 2) * 2 - 1
    weight, bias = torch.randn(16, 2) * 300, torch.randn(16)  # phases of hundreds of radians
    with autocast("bf16", CPU):
        phases = coordinate_linear(coords, weight, bias)
        hidden = torch.nn.functional.linear(torch.sin(phases), torch.randn(8, 16))
    assert phases.dtype == torch.float32 and hidden.dtype == torch.bfloat16
    assert torch.allclose(phases, coords @ weight.t() + bias, rtol=0, atol=1e-4)


def test_the_tf32_check_compiles_into_one_graph_and_follows_the_switch():
    """Every coordinate product of a CUDA fit asks whether TF32 is on (models.base.reduced_precision_active).
    Asked through torch.get_float32_matmul_precision(), each question broke a compiled forward's graph (a SIREN
    forward fell into 6 graphs on CUDA). The CPU never asks, so the check is compiled here as CUDA code would be."""
    import torch._dynamo

    from models.base import reduced_precision_active

    def phase_or_not(x):
        return x.sin() if reduced_precision_active("cuda") else x.cos()

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(phase_or_not, backend="aot_eager")
    x = torch.randn(8)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert torch.equal(compiled(x), x.cos())
        torch.set_float32_matmul_precision("high")
        assert torch.equal(compiled(x), x.sin())  # recompiled for the switch, not served the stale graph
    finally:
        torch.set_float32_matmul_precision(before)
        torch._dynamo.reset()
    assert sum(torch._dynamo.utils.counters["graph_break"].values()) == 0


@pytest.mark.parametrize("model", ["siren", "gabor-imfn"])
def test_bf16_fit_learns_close_to_fp32(camera_64, model):
    signal = image_signal(camera_64)
    fp32 = fit(signal, small_config(model, precision="fp32"), IMAGE.recipe)
    bf16 = fit(signal, small_config(model, precision="bf16"), IMAGE.recipe)
    assert bf16.config.precision == "bf16"
    assert bf16.batch_psnr[-1] > bf16.batch_psnr[0] + 5.0
    # bf16 keeps 8 mantissa bits: close to fp32 after 60 steps, not equal (measured within 0.05 dB here).
    assert abs(bf16.final.psnr - fp32.final.psnr) < 0.5
    assert bf16.final.psnr != fp32.final.psnr


def test_tf32_on_the_cpu_says_it_changes_nothing(camera_64):
    result = fit(image_signal(camera_64[:16, :16]), small_config("siren", steps=3, precision="tf32"), IMAGE.recipe)
    assert any("tf32 has no effect on the CPU" in note for note in result.notes)


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setenv("INR_COMPILE_BACKEND", "aot_eager")
    monkeypatch.setattr(step_module, "_COMPILED", {})
    monkeypatch.setattr(step_module, "_COMPILE_FAILURES", {})


@pytest.mark.parametrize("model", ["siren", "fourier-imfn"])
def test_compiled_step_trains_like_the_eager_one(camera_64, aot_eager, model):
    signal = image_signal(camera_64[:32, :32])
    eager = fit(signal, small_config(model, steps=20, compile=False), IMAGE.recipe)
    compiled = fit(signal, small_config(model, steps=20, compile=True), IMAGE.recipe)
    assert compiled.compiled and not compiled.notes
    assert compiled.compile_seconds > 0 and eager.compile_seconds == 0
    assert compiled.timed_steps == 19 and eager.timed_steps == 20
    # The implicit backward (a hook taking vector-Jacobian products) works through the compiled layers.
    assert compiled.final.psnr == pytest.approx(eager.final.psnr, abs=1e-3)


def test_compilation_is_paid_once_for_same_shaped_inputs(camera_64, monkeypatch):
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(step_module, "_COMPILED", {})
    monkeypatch.setattr(step_module, "compile_function", lambda function: torch.compile(function, backend=counter))
    signal = image_signal(camera_64[:32, :32])
    fit(signal, small_config("gabor-imfn", steps=3, compile=True), IMAGE.recipe)
    after_first = counter.frame_count
    fit(image_signal(camera_64[32:, 32:]), small_config("gabor-imfn", steps=3, compile=True, seed=1), IMAGE.recipe)
    assert after_first >= 2  # prepare and the layers of f, at least
    assert counter.frame_count == after_first  # a new model and image of the same shape: nothing recompiled


@pytest.mark.parametrize("model", ["fourier-imfn", "gabor-imfn"])
def test_an_implicit_fit_of_a_second_shape_stays_compiled(camera_64, aot_eager, model):
    """A second input of another shape compiles the layers again for dynamic shapes; the implicit backward takes
    several vector-Jacobian products through that graph, which AOTAutograd's donated buffers would refuse (the
    fit then fell back to eager mode with a note)."""
    for size in (32, 24):
        result = fit(image_signal(camera_64[:size, :size]), small_config(model, steps=3, compile=True), IMAGE.recipe)
        assert result.compiled and not result.notes, (size, result.notes)


def compiled_code_raises(monkeypatch, message: str) -> None:
    """Every compiled function raises ``RuntimeError(message)`` when called (a fresh process's compile caches)."""
    def compile_function(function):
        def fail(*args, **kwargs):
            raise RuntimeError(message)
        return fail

    monkeypatch.setattr(step_module, "_COMPILED", {})
    monkeypatch.setattr(step_module, "_COMPILE_FAILURES", {})
    monkeypatch.setattr(step_module, "compile_function", compile_function)


def test_a_failing_compiler_falls_back_to_eager_with_a_note(tmp_path, camera_u8, monkeypatch, capsys):
    compiled_code_raises(monkeypatch, "no compiler here\nsecond line")
    save_png(tmp_path / "cam.png", camera_u8[::16, ::16])
    fit_config = FitConfig(model="siren", hidden=16, layers=1, steps=5, device="cpu", compile=True)
    code = run_fit_command(FitCommandConfig("image", fit_config, ImageOptions()), [str(tmp_path / "cam.png")],
                           OutputOptions(out=tmp_path / "run", as_json=True, show_progress=False))
    assert code == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["compiled"] is False and report["config"]["fit"]["compile"] is True
    assert report["notes"] == ["torch.compile failed (RuntimeError: no compiler here); the training step ran eagerly"]
    assert report["steps_per_second"] > 0 and report["history"][-1]["psnr"] > report["history"][0]["psnr"]
    assert json.loads(capsys.readouterr().out)["notes"] == report["notes"]


@pytest.mark.parametrize("grouped", [False, True])
def test_a_compiled_step_out_of_memory_is_not_taken_for_a_compiler_failure(camera_64, monkeypatch, grouped):
    """Running out of memory in a compiled step is the step's size, not the compiler's fault: it reaches the user
    as out of memory (one line, from the command line), not as an eager retry that needs as much memory again, and
    later fits of the model still compile."""
    from training.fitting.grouped import fit_group

    compiled_code_raises(monkeypatch, "CUDA error: out of memory")
    config = small_config("siren", steps=3, compile=True)
    with pytest.raises(RuntimeError, match="out of memory"):
        if grouped:
            fit_group([image_signal(camera_64[:16, :16]), image_signal(camera_64[16:32, :16])], config, IMAGE.recipe)
        else:
            fit(image_signal(camera_64[:16, :16]), config, IMAGE.recipe)
    assert step_module._COMPILE_FAILURES == {}


def test_outputs_written_while_the_next_input_trains_are_complete(tmp_path, camera_u8, astronaut_u8, capsys):
    from skimage import data

    images = {"cam": camera_u8[::16, ::16], "astro": astronaut_u8[::16, ::16], "coins": data.coins()[::10, ::10]}
    paths = [str(save_png(tmp_path / f"{name}.png", array)) for name, array in images.items()]
    fit_config = FitConfig(model="siren", hidden=16, layers=1, steps=25, device="cpu", eval_every=0)
    code = run_fit_command(FitCommandConfig("image", fit_config, ImageOptions()), paths,
                           OutputOptions(out=tmp_path / "runs", as_json=True, show_progress=False,
                                         write_in_background=True))  # as on CUDA
    assert code == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in printed] == paths  # in input order
    for (name, array), report in zip(images.items(), printed):
        run = tmp_path / "runs" / name
        assert json.loads((run / "report.json").read_text()) == json.loads(json.dumps(report))
        written = np.asarray(Image.open(run / "reconstruction.png"), dtype=np.float64) / 255.0
        target = array.astype(np.float64) / 255.0
        # Each report's PSNR is that of the reconstruction written beside it (to 8-bit rounding).
        assert psnr_np(written.reshape(target.shape), target) == pytest.approx(report["psnr"], abs=0.05), name
        assert report["startup_seconds"] > 0 and report["compile_seconds"] == 0
        assert {"checkpoint.pt", "comparison.png", "psnr.png"} <= {p.name for p in run.iterdir()}


def test_solver_reading_residuals_every_fourth_iteration_returns_the_best_iterate(monkeypatch):
    torch.manual_seed(0)
    matrix = torch.randn(8, 8)
    matrix = 0.8 * matrix / torch.linalg.matrix_norm(matrix, ord=2)
    offset = torch.randn(5, 8)

    def contraction(z):
        return z @ matrix.t() + offset

    settings = SolverSettings(tol=1e-5, max_iter=200)
    every_step, stats_1 = solve(contraction, torch.zeros(5, 8), settings)
    monkeypatch.setattr(stats_module, "CPU_CHECK_EVERY", 4)  # as on a GPU
    every_fourth, stats_4 = solve(contraction, torch.zeros(5, 8), settings)
    assert stats_1.converged and stats_4.converged
    assert stats_4.steps % 4 == 0 and 0 <= stats_4.steps - stats_1.steps < 4
    assert len(stats_4.trace) == stats_4.steps and stats_4.trace[:stats_1.steps] == stats_1.trace
    # At most three more iterations, and the returned iterate is the best seen: no worse than stopping at once.
    assert stats_4.max_rel_residual <= stats_1.max_rel_residual
    assert torch.allclose(every_fourth, every_step, atol=1e-4)


def test_progress_of_an_amortized_fit_starts_from_the_cache_and_measures_the_same_psnr(camera_64):
    from training.fitting.amortized import FixpointCache

    signal = image_signal(camera_64[:32, :32], holdout="grid")
    torch.manual_seed(0)
    model = build_model("fourier-imfn", 2, 1, hidden=32, layers=1, frequency=16.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    coords, targets = signal.train_coordinates(), signal.train_targets()
    cache = FixpointCache(len(coords), 32, CPU)
    for _ in range(30):
        loss = ((cache.predict(model, coords, None) - targets) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    measure = signal.progress(CPU, chunk_points=100)
    warm, cold = measure(model, cache.z), measure(model)
    assert set(warm) == {"psnr", "psnr_holdout"} and all(isinstance(v, torch.Tensor) for v in warm.values())
    assert float(warm["psnr"]) == pytest.approx(float(cold["psnr"]), abs=0.02)  # both solved to tolerance
    assert float(warm["psnr_holdout"]) == float(cold["psnr_holdout"])  # held-out points always start from zero
    final = signal.evaluate(model, CPU, 100)
    assert float(cold["psnr"]) == pytest.approx(final.psnr, abs=1e-3)  # chunked differently, same tolerance


def test_a_bf16_fit_that_reaches_a_high_psnr_says_what_bf16_costs_there():
    """bf16 cost SIREN about 18 dB at 83 dB (fp32's PSNR) with nothing in the report; the docs' fraction of a dB
    holds only lower down."""
    from training.fitting.precision import BF16_NOTE_DB, bf16_ceiling_note

    assert bf16_ceiling_note("bf16", BF16_NOTE_DB - 1) is None and bf16_ceiling_note("fp32", 80.0) is None
    assert bf16_ceiling_note("bf16", None) is None and bf16_ceiling_note("bf16", float("nan")) is None
    pixel = image_signal(torch.full((1, 1, 1), 128 / 255))  # one value: fitted far past 50 dB in a few steps
    config = FitConfig(model="siren", hidden=8, layers=1, steps=100, device="cpu", precision="bf16")
    result = fit(pixel, config, IMAGE.recipe)
    assert result.final.psnr > BF16_NOTE_DB
    assert [note for note in result.notes if note.startswith("bf16 rounds hidden activations")], result.notes
    assert not [note for note in fit(pixel, replace(config, precision="fp32"), IMAGE.recipe).notes if "bf16" in note]
