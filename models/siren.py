"""SIREN (Sitzmann et al. 2020): sine-activated coordinate network.

Each hidden layer computes ``sin(w0 * (W x + b))``; the last layer is linear.
Initialisation (the paper's): the first layer draws ``W ~ U(-1/n_in, 1/n_in)``, every later layer (the output
layer included) ``W ~ U(-sqrt(6/n)/w0, sqrt(6/n)/w0)``. Biases keep PyTorch's default Linear initialisation, as
the authors' code does. docs/models.md has the equations and their sources.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.base import CoordinateNetwork, OutputLinear, affine, coordinate_linear


class SineLayer(nn.Module):
    """``sin(w0 * (W x + b))`` with the SIREN initialisation for its position in the network."""

    def __init__(self, in_features: int, out_features: int, w0: float, is_first: bool, hidden_w0: float):
        super().__init__()
        self.is_first = is_first
        # A buffer, so that stacked networks (a group fit) each bring their own w0, shape (G,), as they bring their
        # weights; not persistent: checkpoints keep w0 in their config, as before.
        self.register_buffer("w0", torch.tensor(float(w0)), persistent=False)
        self.linear = nn.Linear(in_features, out_features)
        # The first layer spreads its inputs over several periods of the sine; later layers keep
        # pre-activations ~ U(-sqrt(6), sqrt(6)) once multiplied by their w0.
        bound = 1.0 / in_features if is_first else math.sqrt(6.0 / in_features) / hidden_w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # sin(w0 (W x + b)) with w0 folded into the small weight and bias tensors: the same function and
        # gradients, without an extra N x C multiply (and its backward) on every layer. The first layer's phases
        # (tens of radians) stay in exact float32 in every precision mode; later ones are O(1).
        # Stacked networks' weights (a group fit) take the same path: see models.base.affine.
        linear = coordinate_linear if self.is_first else affine
        weight_w0 = bias_w0 = self.w0
        if self.w0.dim():  # stacked networks bring one w0 each, (G,), against (G, out, in) weights, (G, out) biases
            weight_w0, bias_w0 = self.w0.view(-1, 1, 1), self.w0.view(-1, 1)
        return torch.sin(linear(x, self.linear.weight * weight_w0, self.linear.bias * bias_w0))


class Siren(CoordinateNetwork):
    """``layers`` hidden-to-hidden sine layers after a first sine layer, then a linear output.

    ``layers=3, hidden=256`` is the paper's 3x256 image network (four sine layers, one linear).
    ``first_w0`` is the frequency scale of the first layer; ``hidden_w0`` (30 in the paper) of the rest.
    """

    stacks_natively = True

    def __init__(self, in_features: int, out_features: int, hidden: int = 256, layers: int = 3,
                 first_w0: float = 30.0, hidden_w0: float = 30.0):
        super().__init__()
        blocks = [SineLayer(in_features, hidden, first_w0, is_first=True, hidden_w0=hidden_w0)]
        blocks += [SineLayer(hidden, hidden, hidden_w0, is_first=False, hidden_w0=hidden_w0) for _ in range(layers)]
        self.body = nn.Sequential(*blocks)
        self.head = OutputLinear(hidden, out_features)
        bound = math.sqrt(6.0 / hidden) / hidden_w0
        with torch.no_grad():
            self.head.weight.uniform_(-bound, bound)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(coords))
