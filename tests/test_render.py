"""render_grid: chunked rendering equals one forward pass over the whole grid, for any chunk size and shape."""

from __future__ import annotations

import pytest
import torch

from models import build_model
from training.fitting.render import (grid_axes, grid_coordinates, predict_points_with_stats, render_grid,
                                     render_grid_with_stats, reporting_render_progress)


def full_forward(model, shape, channels):
    with torch.no_grad():
        return model(grid_coordinates(shape)).reshape(*shape, channels)


@pytest.mark.parametrize("name", ["siren", "gabor-mfn"])
@pytest.mark.parametrize("shape,chunk", [
    ((9, 13), 5),       # chunk smaller than one row: every row split into pieces
    ((9, 13), 13),      # exactly one row per chunk
    ((9, 13), 30),      # two rows per chunk, the last chunk shorter
    ((9, 13), 10_000),  # everything in one chunk
    ((13, 9), 7),       # the transposed shape
    ((1, 17), 4),       # a single row
])
def test_chunked_render_equals_single_forward(name, shape, chunk):
    torch.manual_seed(0)
    model = build_model(name, 2, 3, hidden=16, layers=2, frequency=8.0)
    out = render_grid(model, shape, 3, torch.device("cpu"), chunk_points=chunk)
    assert out.shape == (*shape, 3)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, full_forward(model, shape, 3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,chunk", [((50,), 7), ((4, 5, 6), 7), ((4, 5, 6), 1)])
def test_chunked_render_other_dimensions(shape, chunk):
    torch.manual_seed(1)
    model = build_model("siren", len(shape), 2, hidden=16, layers=1, frequency=10.0)
    out = render_grid(model, shape, 2, torch.device("cpu"), chunk_points=chunk)
    assert out.shape == (*shape, 2)
    torch.testing.assert_close(out, full_forward(model, shape, 2), rtol=1e-5, atol=1e-6)


def test_render_runs_in_eval_mode_and_restores_training_mode():
    model = build_model("siren", 2, 1, hidden=8, layers=1, frequency=30.0)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    model.train()
    render_grid(model, (4, 4), 1, torch.device("cpu"), chunk_points=5)
    assert seen and not any(seen)
    assert model.training


def test_grid_axes_span_minus_one_to_one():
    axes = grid_axes((5, 1, 3))
    assert axes[0].tolist() == pytest.approx([-1.0, -0.5, 0.0, 0.5, 1.0])
    assert axes[1].tolist() == [0.0]
    assert axes[2].tolist() == [-1.0, 0.0, 1.0]
    coords = grid_coordinates((2, 3))
    # Row-major: the last axis varies fastest.
    assert coords.tolist() == [[-1, -1], [-1, 0], [-1, 1], [1, -1], [1, 0], [1, 1]]


def test_implicit_render_returns_one_solve_per_chunk_and_agrees_with_the_whole_pass():
    torch.manual_seed(2)
    model = build_model("fourier-imfn", 2, 1, hidden=16, layers=1, frequency=8.0)
    values, solves = render_grid_with_stats(model, (9, 13), 1, torch.device("cpu"), chunk_points=30)
    assert len(solves) == 5  # 30 points hold two rows of 13: rows 0-1, 2-3, 4-5, 6-7 and 8, one solve each
    # Each chunk stops when its own worst point converges, so values agree to the solver's tolerance (1e-3).
    torch.testing.assert_close(values, full_forward(model, (9, 13), 1), rtol=0, atol=1e-3)
    assert all(stats.converged for stats in solves)
    points = grid_coordinates((9, 13))
    predicted, point_solves = predict_points_with_stats(model, points, torch.device("cpu"), chunk_points=50)
    assert len(point_solves) == 3  # 117 points in pieces of 50
    torch.testing.assert_close(predicted, values.reshape(-1, 1), rtol=0, atol=1e-3)
    explicit = build_model("fourier-mfn", 2, 1, hidden=16, layers=1, frequency=8.0)
    assert render_grid_with_stats(explicit, (9, 13), 1, torch.device("cpu"), chunk_points=30)[1] == []


@pytest.mark.parametrize("shape,chunk", [((9, 13), 30), ((4, 5, 6), 60), ((1000,), 64)])
def test_a_render_reports_its_rows_as_its_bands_are_done(shape, chunk):
    """An image's rows, a video's frames, a clip's samples: after each band, how many of the first axis are done."""
    model = build_model("siren", len(shape), 1, hidden=8, layers=1, frequency=8.0)
    heard = []
    with reporting_render_progress(lambda done, total: heard.append((done, total))):
        render_grid(model, shape, 1, torch.device("cpu"), chunk_points=chunk)
    assert len(heard) > 1 and all(total == shape[0] for _, total in heard)
    done = [count for count, _ in heard]
    assert done == sorted(set(done)) and done[-1] == shape[0]
    render_grid(model, shape, 1, torch.device("cpu"), chunk_points=chunk)  # outside the block: nobody hears
    assert len(heard) == len(done)
