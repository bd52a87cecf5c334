"""Spectral normalisation that only shrinks: ``W / max(1, sigma(W) / target)``.

With filters bounded by 1 in magnitude, a layer ``g(x) * (W z + b)`` or ``sin(W z + ...)`` is then Lipschitz in
z with constant at most ``target`` < 1, so the weight-tied map is a contraction and its fixpoint unique.
sigma is estimated by power iteration whose vectors persist across steps; a training forward refines them
(``TRAINING_ITERATIONS`` iterations).

The weight may also be G stacked networks' weights ``(G, out, in)`` (a group fit), with stacked vectors ``u``
``(G, out)`` and ``v`` ``(G, in)`` in place of the buffers: every network then keeps its own estimate, and the
iterations are batched products (see :func:`models.base.affine`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


WARM_UP_ITERATIONS = 30
# Per training forward. W grows about twofold over a 500-step image fit; one iteration per step lags behind it,
# and the under-estimated sigma let the normalised W reach a true norm of 1.004 instead of 0.97 (measured at
# 128 px): the contraction bound failed. Five (the implicit-layer paper's code's number) track it exactly.
TRAINING_ITERATIONS = 5


class ShrinkSpectralNorm(nn.Module):
    def __init__(self, out_features: int, in_features: int, target: float = 0.97,
                 power_iterations: int = TRAINING_ITERATIONS):
        super().__init__()
        self.target = target
        self.power_iterations = power_iterations
        self.register_buffer("u", F.normalize(torch.randn(out_features), dim=0))
        self.register_buffer("v", F.normalize(torch.randn(in_features), dim=0))
        self._warm = False

    @torch.no_grad()
    def _power_iterate(self, weight: torch.Tensor, iterations: int) -> None:
        u, v = self.u, self.v
        for _ in range(iterations):
            v = F.normalize(_matrix_times_vector(weight.transpose(-1, -2), u), dim=-1)
            u = F.normalize(_matrix_times_vector(weight, v), dim=-1)
        self.u.copy_(u)
        self.v.copy_(v)

    def warm_up(self, weight: torch.Tensor) -> None:
        """A fresh estimate: a few dozen iterations (afterwards ``power_iterations`` per training forward track
        the moving W). Models call it once they have their weights, so a compiled forward never sees the switch."""
        self._power_iterate(weight.detach(), WARM_UP_ITERATIONS)
        self._warm = True

    def advance(self, weight: torch.Tensor) -> None:
        """Refine the estimate now, as one training forward would: for a training step that runs several forwards
        (in pieces of its batch) and holds the estimate through them (in eval mode, which uses it as it stands), so
        it advances once per step either way."""
        self._power_iterate(weight.detach(), self.power_iterations)

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        if not self._warm:
            self.warm_up(weight)
        elif self.training:
            self._power_iterate(weight.detach(), self.power_iterations)
        if weight.dim() == 2:
            return torch.dot(self.u, weight @ self.v)
        return (self.u * _matrix_times_vector(weight, self.v)).sum(-1)  # stacked: one sigma per network, (G,)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # In float32 whatever autocast asks: the bound decides whether f is a contraction at all, and the
        # power-iteration vectors it keeps are float32 buffers. (Under tf32 on CUDA the products take TF32 inputs,
        # an error of about 1e-3 in sigma, well inside the 3% margin of the 0.97 target.)
        with torch.autocast(weight.device.type, enabled=False):
            scale = torch.clamp(self.sigma(weight) / self.target, min=1.0)
            return weight / scale[..., None, None]  # one scale, or one per stacked network


def _matrix_times_vector(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``matrix @ vector`` for one ``(m, n)`` matrix and ``(n,)`` vector, or G stacked ones, ``(G, m, n)`` and
    ``(G, n)``."""
    if matrix.dim() == 2:
        return matrix @ vector
    return torch.bmm(matrix, vector.unsqueeze(-1)).squeeze(-1)
