"""The implicit-layer paper's memory claim, measured: a training step of an implicit model keeps no more memory for
its backward than one pass of its explicit counterpart (same parameters), whatever the solver's iteration cap.

Memory is :func:`training.fitting.step_memory.training_step_bytes`: every distinct storage autograd saves during one
step, plus the amortized cache where it is not itself one of them. Sizes are small so the module runs in about a
second on a CPU; the claim does not depend on size, since the solves run without a graph.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import build_model
from models.fixpoint import SolverSettings
from training.fitting.amortized import FixpointCache
from training.fitting.signal import grid_coordinates
from training.fitting.step_memory import training_step_bytes

SIDE, HIDDEN, LAYERS = 32, 64, 2
FLOAT_BYTES = 4
IMPLICIT_MODELS = ("fourier-imfn", "gabor-imfn", "isiren")
# A tolerance no solve reaches, so every solve runs to its iteration cap.
UNREACHABLE_TOL = 1e-12


@pytest.fixture(scope="module")
def problem() -> tuple[torch.Tensor, torch.Tensor]:
    coords = grid_coordinates((SIDE, SIDE))
    target = torch.sin(3 * coords[:, :1]) * torch.cos(2 * coords[:, 1:])
    return coords, target


def model(name: str, one_pass: bool, **settings) -> nn.Module:
    torch.manual_seed(0)  # implicit and explicit get the same parameters
    return build_model(name, 2, 1, hidden=HIDDEN, layers=LAYERS, frequency=16.0, one_pass=one_pass,
                       settings=SolverSettings(**settings))


def step_bytes(network: nn.Module, problem, cache: FixpointCache | None = None) -> int:
    coords, target = problem
    return training_step_bytes(network, coords, target, cache)["total_bytes"]


def amortized_step_bytes(name: str, problem, **settings) -> int:
    coords, _ = problem
    cache = FixpointCache(len(coords), HIDDEN, torch.device("cpu"))
    return step_bytes(model(name, one_pass=False, **settings), problem, cache)


class UnrolledSolve(nn.Module):
    """Fixpoint iteration recorded by autograd (backpropagation through the solver): the memory the implicit
    backward avoids. Here only to show that the measure sees memory that grows with iterations."""

    def __init__(self, implicit: nn.Module, iterations: int):
        super().__init__()
        self.implicit, self.iterations = implicit, iterations

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        prepared = self.implicit.prepare(coords)
        z = self.implicit.zeros(coords)
        for _ in range(self.iterations):
            z = self.implicit.f(z, prepared)
        return self.implicit.head(z)


@pytest.mark.parametrize("name", IMPLICIT_MODELS)
def test_explicit_step_keeps_at_least_the_activations_backward_needs(name, problem):
    # Each of the LAYERS linear maps and the output head needs its (N, hidden) input for its weight gradient.
    coords, _ = problem
    floor = (LAYERS + 1) * len(coords) * HIDDEN * FLOAT_BYTES
    assert step_bytes(model(name, one_pass=True), problem) >= floor


@pytest.mark.parametrize("name", IMPLICIT_MODELS)
def test_amortized_implicit_step_keeps_no_more_than_the_explicit_step(name, problem):
    explicit = step_bytes(model(name, one_pass=True), problem)
    assert amortized_step_bytes(name, problem, solver="fixed-point", neumann_steps=1) <= explicit


@pytest.mark.parametrize("name", IMPLICIT_MODELS)
def test_solved_implicit_step_keeps_no_more_than_the_explicit_step(name, problem):
    # Without amortization every step solves from zero (fixed-point iteration), then the Neumann T = 1 backward.
    explicit = step_bytes(model(name, one_pass=True), problem)
    solved = step_bytes(model(name, one_pass=False, solver="fixed-point", neumann_steps=1), problem)
    assert solved <= explicit


@pytest.mark.parametrize("name", IMPLICIT_MODELS)
def test_implicit_step_memory_does_not_grow_with_the_iteration_cap(name, problem):
    few, many = (step_bytes(model(name, one_pass=False, solver="fixed-point", neumann_steps=1,
                                  tol=UNREACHABLE_TOL, max_iter=cap), problem) for cap in (5, 50))
    assert many == few


def test_the_measure_sees_memory_that_grows_with_iterations(problem):
    # Control for the flatness above: unrolling the same iteration with a graph keeps every iterate's activations,
    # at least the (N, hidden) input of each of its LAYERS linear maps per extra iteration.
    coords, _ = problem
    two, ten = (step_bytes(UnrolledSolve(model("fourier-imfn", one_pass=False), iterations), problem)
                for iterations in (2, 10))
    assert ten - two >= (10 - 2) * LAYERS * len(coords) * HIDDEN * FLOAT_BYTES
