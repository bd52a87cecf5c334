"""Implicit backward modes, decoupled from whichever solver found the fixpoint.

At a fixpoint ``z* = f(z*)`` the gradient of a loss through z* is ``u = (I - J^T)^-1 g`` with ``J = df/dz``.
Given one evaluation ``f_out = f(z_in)`` recorded with autograd (``z_in`` at, or near, the fixpoint, a leaf or any
tensor of the graph whose Jacobian equals df/dz),
:func:`attach_implicit_backward` replaces the gradient arriving at ``f_out`` by

- ``neumann``: the truncated series ``g + J^T g + ... + (J^T)^T g``. T = 0 is the Jacobian-free gradient,
  T = 1 the implicit-layer paper's default, T -> infinity the exact gradient for a contraction;
- ``exact``: the solution of ``u = J^T u + g`` found by iterating vector-Jacobian products to a tolerance.

Vector-Jacobian products reuse the graph of ``f_out``: no further evaluation of f is needed. Call backward with
``inputs=`` the parameters so autograd does not also spend work on the gradient with respect to ``z_in``.
"""

from __future__ import annotations

import torch

from models.fixpoint.settings import BACKWARD_MODES
from models.fixpoint.stats import ConvergenceMonitor, per_sample_residuals


class BackwardStats:
    """Filled in by the exact backward when it runs: iterations and final relative residual."""

    def __init__(self):
        self.steps = 0
        self.rel_residual = 0.0


def attach_implicit_backward(f_out: torch.Tensor, z_in: torch.Tensor, mode: str = "neumann", neumann_steps: int = 1,
                             tol: float = 1e-6, max_iter: int = 200) -> BackwardStats:
    if mode not in BACKWARD_MODES:
        raise ValueError(f"unknown backward mode {mode!r}; choose one of: {', '.join(BACKWARD_MODES)}")
    if neumann_steps < 0:
        raise ValueError(f"the Neumann order must be 0 or more, got {neumann_steps}")
    stats = BackwardStats()
    if mode == "neumann" and neumann_steps == 0:
        return stats  # Jacobian-free: the incoming gradient passes unchanged

    # The hook must reach f_out's graph, but a closure holding f_out would form a reference cycle that keeps
    # the whole step's activations alive until the garbage collector runs: hold them in a list we empty.
    graph = [f_out, z_in]
    graph_for_vjp: list[torch.Tensor] = []

    def vjp(v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(graph_for_vjp[0], graph_for_vjp[1], v, retain_graph=True)[0]

    def neumann(g: torch.Tensor) -> torch.Tensor:
        total, term = g, g
        for _ in range(neumann_steps):
            term = vjp(term)
            total = total + term
        return total

    def exact(g: torch.Tensor) -> torch.Tensor:
        u = g
        monitor = ConvergenceMonitor(tol, g.device)
        for _ in range(max_iter):
            u_next = vjp(u) + g
            _, relative = per_sample_residuals(u.reshape(len(u), -1), u_next.reshape(len(u), -1))
            u = u_next
            if monitor.record(relative.max()):
                break
        trace = monitor.trace()
        stats.steps, stats.rel_residual = monitor.iterations, trace[-1]
        return u

    transform = neumann if mode == "neumann" else exact

    def hook(g: torch.Tensor) -> torch.Tensor | None:
        # The vector-Jacobian products below start from f_out too and so pass through this hook: let them by.
        if not graph:
            return None
        f_out_, z_in_ = graph
        graph.clear()
        graph_for_vjp[:] = [f_out_, z_in_]
        try:
            return transform(g)
        finally:
            graph_for_vjp.clear()

    f_out.register_hook(hook)
    return stats
