"""Fixpoint solvers and implicit backward modes on small maps with known answers."""

import math

import pytest
import torch

from models.fixpoint import SOLVERS, SolverSettings, get_solver
from models.fixpoint.backward import attach_implicit_backward


def slow_linear_map(batch=8, dim=16, rate=0.97, seed=0):
    """f(z) = W z + b with W symmetric, eigenvalues spread over [0, rate]: plain iteration contracts slowly."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    b = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    weight = q @ torch.diag(torch.linspace(0.0, rate, dim, dtype=torch.float64)) @ q.T
    exact = torch.linalg.solve(torch.eye(dim, dtype=torch.float64) - weight, b.T).T
    return (lambda z: z @ weight.T + b), exact


def random_contraction(batch=32, dim=24, seed=1):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    w = 0.9 * w / torch.linalg.matrix_norm(w, 2)
    b = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    return lambda z: torch.tanh(z @ w.T + b)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_each_solver_reaches_tolerance_on_a_random_contraction(name):
    f = random_contraction()
    z0 = torch.zeros(32, 24, dtype=torch.float64)
    z, stats = get_solver(name)(f, z0, tol=1e-8, max_iter=300)
    assert stats.converged
    residual = torch.linalg.vector_norm(f(z) - z, dim=-1) / torch.linalg.vector_norm(f(z), dim=-1)
    assert residual.max() <= 1e-8
    assert stats.rel_residual.shape == (32,)  # per sample, not batch-global
    assert stats.steps == len(stats.trace)


def test_acceleration_needs_fewer_evaluations_on_a_slow_contraction():
    f, exact = slow_linear_map()
    z0 = torch.zeros_like(exact)
    steps = {}
    for name in SOLVERS:
        z, stats = get_solver(name)(f, z0, tol=1e-6, max_iter=2000)
        assert stats.converged, name
        # The error is at most the residual / (1 - 0.97): about 3e-5 relative here.
        assert torch.linalg.norm(z - exact) / torch.linalg.norm(exact) < 1e-4, name
        steps[name] = stats.steps
    # Plain iteration needs about log(1e-6)/log(0.97) ~ 450 evaluations.
    assert steps["fixed-point"] > 300
    assert steps["anderson"] < steps["fixed-point"] / 3
    assert steps["broyden"] < steps["fixed-point"] / 3


def test_best_iterate_is_returned_not_the_last():
    # f(z) = 1 - 2z oscillates away from its fixpoint 1/3: relative residuals 1, 2, 4/3, 8/5, ...
    z, stats = get_solver("fixed-point")(lambda z: 1.0 - 2.0 * z, torch.zeros(2, 3), tol=1e-12, max_iter=6)
    assert not stats.converged
    assert stats.steps == 6
    assert torch.equal(z, torch.zeros(2, 3))  # the start, not the last iterate
    assert torch.allclose(stats.rel_residual, torch.ones(2))


def test_anderson_survives_a_singular_system():
    # f constant: every residual after the first is identical, the least-squares system is singular.
    b = torch.randn(4, 6)
    z, stats = get_solver("anderson")(lambda z: b.clone(), torch.zeros(4, 6), tol=1e-6, max_iter=20)
    assert torch.isfinite(z).all()
    assert stats.converged
    assert torch.allclose(z, b)


def tiny_implicit_problem(seed=0):
    """z* = tanh(W z* + U x) in float64; loss = sum(c . z*). Returns params and helpers."""
    gen = torch.Generator().manual_seed(seed)
    dim, batch = 5, 3
    w = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    w = (0.7 * w / torch.linalg.matrix_norm(w, 2)).requires_grad_()
    x = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    c = torch.randn(batch, dim, generator=gen, dtype=torch.float64)

    def f(z, weight):
        return torch.tanh(z @ weight.T + x)

    def loss_at(weight):
        with torch.no_grad():
            z, _ = get_solver("anderson")(lambda z: f(z, weight), torch.zeros(batch, dim, dtype=torch.float64),
                                          tol=1e-13, max_iter=500)
        return (c * z).sum(), z

    return w, f, loss_at, c


def implicit_gradient(mode, steps=1):
    w, f, loss_at, c = tiny_implicit_problem()
    _, z_star = loss_at(w.detach())
    z_in = z_star.clone().requires_grad_()
    z_out = f(z_in, w)
    attach_implicit_backward(z_out, z_in, mode, neumann_steps=steps, tol=1e-12, max_iter=500)
    (c * z_out).sum().backward(inputs=[w])
    return w.grad.clone(), w, loss_at


def test_exact_backward_matches_finite_differences():
    grad, w, loss_at = implicit_gradient("exact")
    numeric = torch.zeros_like(w)
    eps = 1e-6
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            plus, minus = w.detach().clone(), w.detach().clone()
            plus[i, j] += eps
            minus[i, j] -= eps
            numeric[i, j] = (loss_at(plus)[0] - loss_at(minus)[0]) / (2 * eps)
    assert torch.allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_neumann_series_converges_to_the_exact_gradient():
    exact, _, _ = implicit_gradient("exact")
    errors = [torch.linalg.norm(implicit_gradient("neumann", t)[0] - exact).item() for t in (0, 1, 4, 60)]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 1e-8 * max(1.0, torch.linalg.norm(exact).item())


def test_neumann_orders_zero_and_one_are_the_expected_approximations():
    w, f, loss_at, c = tiny_implicit_problem()
    _, z_star = loss_at(w.detach())
    # T = 0: the Jacobian-free gradient is the plain gradient through one application of f.
    z_in = z_star.clone().requires_grad_()
    direct = torch.autograd.grad((c * f(z_in, w)).sum(), w)[0]
    assert torch.allclose(implicit_gradient("neumann", 0)[0], direct)
    # T = 1: the cotangent becomes c + J^T c.
    z_in = z_star.clone().requires_grad_()
    out = f(z_in, w)
    jtc = torch.autograd.grad(out, z_in, c, retain_graph=True)[0]
    expected = torch.autograd.grad(out, w, c + jtc)[0]
    assert torch.allclose(implicit_gradient("neumann", 1)[0], expected)
    assert not math.isclose(torch.linalg.norm(expected).item(), torch.linalg.norm(direct).item(), rel_tol=1e-6)


def test_the_core_solve_returns_stats_and_rejects_unknown_solver_options():
    from models.fixpoint import SolverSettings, solve

    f = random_contraction()
    z0 = torch.zeros(32, 24, dtype=torch.float64)
    z, stats = solve(f, z0, SolverSettings(solver="anderson", tol=1e-9, max_iter=200), memory=3)
    assert stats.solver == "anderson" and stats.converged and stats.max_rel_residual <= 1e-9
    with pytest.raises(TypeError):
        solve(f, z0, SolverSettings(solver="fixed-point"), memory=3)  # fixed-point has no history to size
    with pytest.raises(TypeError):
        solve(f, z0, SolverSettings(solver="broyden"), dampnig=0.5)  # a misspelt option is an error, not ignored


@pytest.mark.parametrize("field,value,setting", [("solver", "newton", "solver"), ("tol", 0.0, "tol"),
                                                 ("max_iter", 0, "max_iter"), ("backward", "adjoint", "backward"),
                                                 ("neumann_steps", -1, "neumann_steps"),
                                                 ("neumann_steps", 10**23, "neumann_steps"),
                                                 ("backward_max_iter", 10**6, "backward_max_iter")])
def test_solver_settings_name_the_setting_they_reject(field, value, setting):
    from inr_core.errors import InvalidSetting
    from models.fixpoint import SolverSettings

    with pytest.raises(InvalidSetting) as caught:
        SolverSettings(**{field: value}).validate()
    assert caught.value.setting == setting and str(value) in caught.value.problem


def test_attach_backward_returns_the_exact_backwards_record():
    from models.fixpoint import SolverSettings, attach_backward

    f, exact = slow_linear_map(batch=2, dim=6, rate=0.5)
    z_in = exact.clone().requires_grad_()
    f_out = f(z_in)
    record = attach_backward(f_out, z_in, SolverSettings(backward="exact", backward_tol=1e-10))
    assert record.steps == 0  # filled in when the backward runs
    f_out.sum().backward(inputs=[z_in])
    assert record.steps > 1 and record.rel_residual <= 1e-10


def test_the_solver_table_holds_exactly_the_names_the_settings_accept():
    # Settings validate names without importing the solvers (fast --help); the core maps each name to its solver.
    from models.fixpoint.settings import SOLVER_NAMES

    assert tuple(SOLVERS) == SOLVER_NAMES
    for name in SOLVER_NAMES:
        SolverSettings(solver=name).validate()
