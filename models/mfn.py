"""Multiplicative filter networks (Fathony et al. 2021).

The recursion ``z_1 = g_1(x)``, ``z_{i+1} = g_{i+1}(x) * (W_i z_i + b_i)``, output ``A z_n + a`` lives in
:class:`MultiplicativeFilterNetwork`; the filter classes only say what ``g`` is. Initialisation is the one the
implicit-layer paper (Huang, Bai and Kolter 2021) uses for its MFNs; docs/models.md has the equations.
:func:`filter_bank` and :func:`hidden_linears` build the filters and the W_i for the explicit networks here and
for the implicit ones in :mod:`models.implicit` alike, so both start from the same initialisation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.base import CoordinateNetwork, OutputLinear, affine, coordinate_linear

FILTER_KINDS = ("fourier", "gabor")
# alpha of the Gamma prior on Gabor envelope widths: wider envelopes on the first filter (the paper's recipe).
GABOR_FIRST_ALPHA = 6.0
GABOR_LATER_ALPHA = 3.0


class FourierFilter(nn.Module):
    """``g(x) = sin(U x + c)``; U is the default Linear init scaled by ``input_scale / sqrt(n_filters)``."""

    def __init__(self, in_features: int, out_features: int, input_scale: float, n_filters: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        with torch.no_grad():
            self.linear.weight.mul_(input_scale / math.sqrt(n_filters))
            self.linear.bias.uniform_(-math.pi, math.pi)

    def phase(self, x: torch.Tensor) -> torch.Tensor:
        """``U x + c`` in exact float32 whatever the precision mode (arguments of hundreds of radians)."""
        return coordinate_linear(x, self.linear.weight, self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.phase(x))


class GaborFilter(FourierFilter):
    """``g(x) = sin(U x + c) * exp(-max(gamma, 0)/2 * ||x - mu||^2)``.

    ``mu ~ U(-1, 1)``, ``gamma ~ Gamma(alpha / n_filters, rate 1)`` and the rows of U are further
    scaled by ``sqrt(gamma)`` so that narrow envelopes carry high frequencies.
    """

    def __init__(self, in_features: int, out_features: int, input_scale: float, n_filters: int, alpha: float):
        super().__init__(in_features, out_features, input_scale, n_filters)
        gamma = torch.distributions.Gamma(alpha / n_filters, 1.0).sample((out_features,))
        self.mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1.0, 1.0))
        self.gamma = nn.Parameter(gamma)
        with torch.no_grad():
            self.linear.weight.mul_(gamma.sqrt()[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ||x - mu||^2 expanded as ||x||^2 - 2 x.mu + ||mu||^2: never an N x C x d tensor. The product x.mu is
        # d multiply-adds in exact float32, which torch.compile fuses with the exp, the sine and the product below.
        # (Per-filter terms get an axis for the points, so stacked networks' (G, C) ones broadcast too.)
        cross = coordinate_linear(x, self.mu)  # float32 at least, outside autocast
        x, mu = x.to(cross.dtype), self.mu.to(cross.dtype)
        sq_dist = (x * x).sum(-1, keepdim=True) - 2.0 * cross + (mu * mu).sum(-1).unsqueeze(-2)
        # gamma is trained and can turn negative; clamped at 0 the envelope stays <= 1 (a plain sinusoid at worst),
        # which the implicit models' contraction bound needs (the implicit-layer paper's code does the same).
        gamma = torch.relu(self.gamma.to(cross.dtype)).unsqueeze(-2)
        envelope = torch.exp(-0.5 * gamma * sq_dist.clamp_min(0.0))
        return torch.sin(self.phase(x)) * envelope


def filter_bank(kind: str, in_features: int, hidden: int, input_scale: float, n_filters: int) -> nn.ModuleList:
    """``n_filters`` Fourier or Gabor filters of width ``hidden``, initialised for a network with that many."""
    if kind == "fourier":
        return nn.ModuleList(FourierFilter(in_features, hidden, input_scale, n_filters) for _ in range(n_filters))
    if kind == "gabor":
        return nn.ModuleList(
            GaborFilter(in_features, hidden, input_scale, n_filters,
                        alpha=GABOR_FIRST_ALPHA if i == 0 else GABOR_LATER_ALPHA)
            for i in range(n_filters))
    raise ValueError(f"unknown filter kind {kind!r}; choose one of: {', '.join(FILTER_KINDS)}")


def hidden_linears(hidden: int, count: int) -> nn.ModuleList:
    """The hidden maps ``W_i z + b_i``: weights ``U(-sqrt(1/C), sqrt(1/C))``, PyTorch's default bias."""
    linears = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(count))
    bound = math.sqrt(1.0 / hidden)
    with torch.no_grad():
        for linear in linears:
            linear.weight.uniform_(-bound, bound)
    return linears


class MultiplicativeFilterNetwork(CoordinateNetwork):
    """``layers`` hidden linear maps interleaved with ``layers + 1`` filters of ``kind``, then a linear output."""

    stacks_natively = True  # every layer takes stacked weights (models.base.affine)

    def __init__(self, kind: str, in_features: int, out_features: int, hidden: int = 256, layers: int = 3,
                 input_scale: float = 256.0):
        super().__init__()
        self.filters = filter_bank(kind, in_features, hidden, input_scale, layers + 1)
        self.linears = hidden_linears(hidden, layers)
        self.head = OutputLinear(hidden, out_features)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        z = self.filters[0](coords)
        for filt, linear in zip(self.filters[1:], self.linears):
            z = filt(coords) * affine(z, linear.weight, linear.bias)
        return self.head(z)


class FourierMFN(MultiplicativeFilterNetwork):
    def __init__(self, in_features: int, out_features: int, hidden: int = 256, layers: int = 3,
                 input_scale: float = 256.0):
        super().__init__("fourier", in_features, out_features, hidden, layers, input_scale)


class GaborMFN(MultiplicativeFilterNetwork):
    def __init__(self, in_features: int, out_features: int, hidden: int = 256, layers: int = 3,
                 input_scale: float = 256.0):
        super().__init__("gabor", in_features, out_features, hidden, layers, input_scale)
