"""Implicit-layer coordinate networks (Huang, Bai, Kolter 2021): iSIREN, Fourier-iMFN, Gabor-iMFN.

One weight-tied map is iterated to its fixpoint ``z* = f(x, z*)`` and the output is ``A z* + a``, with

    f(x, z) = L_n(... L_1(z + g_0(x)))
    L_i(z)  = g_i(x) * (W_i z + b_i)              Fourier / Gabor filters g_i (the iMFNs)
    L_i(z)  = sin(W_i z + b_i + U_i x + c_i)      input injected inside the sine (iSIREN), g_0 = sin(U_0 x + c_0)

``one_pass=True`` evaluates f once from z = 0 instead: the explicit counterpart with identical parameters,
which for the MFN kinds is exactly the explicit MFN. W_i is spectrally normalised (shrink only) in both modes.

Everything that does not depend on z (filter outputs, normalised weights) is computed once per forward by
:meth:`ImplicitINR.prepare`, not once per solver iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from models.base import CoordinateNetwork, OutputLinear, affine
from models.fixpoint import SolverSettings, SolverStats, attach_backward, solve
from models.fixpoint.spectral import ShrinkSpectralNorm
from models.mfn import FourierFilter, filter_bank, hidden_linears

KINDS = ("fourier", "gabor", "siren")


class InjectionFilter(FourierFilter):
    """``U x + c``, initialised as a Fourier filter: the input injection of iSIREN, added inside the sine, so
    without a nonlinearity of its own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.phase(x)


@dataclass
class Prepared:
    """The z-independent part of f for one batch of coordinates."""

    filters: list[torch.Tensor]
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]


@contextmanager
def holding_estimates(model: nn.Module, advance: Callable[[], object]):
    """``model.one_estimate_per_step``: ``advance()`` the estimates once, then hold them (the norms in eval mode)
    through the block; nothing outside training. ``model`` may be a stacked networks' template, whose norms'
    mode the calls on the stacked parameters follow."""
    if not model.training:
        yield
        return
    advance()
    for norm in model.norms:
        norm.train(False)
    try:
        yield
    finally:
        for norm in model.norms:
            norm.train(True)


class ImplicitINR(CoordinateNetwork):
    # Every piece takes G stacked networks' parameters (a group fit): the filters and the head through
    # models.base, the spectral norms with stacked estimates. Only the solve needs its states' rows flattened,
    # which training.fitting.grouped.StackedImplicit does.
    stacks_natively = True

    def __init__(self, in_features: int, out_features: int, hidden: int = 256, layers: int = 1,
                 input_scale: float = 256.0, kind: str = "fourier", one_pass: bool = False,
                 spectral_target: float = 0.97, settings: SolverSettings | None = None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown implicit kind {kind!r}; choose one of: {', '.join(KINDS)}")
        if layers < 1:
            raise ValueError("an implicit model needs at least one layer")
        self.kind, self.hidden, self.one_pass = kind, hidden, one_pass
        self.settings = settings or SolverSettings()
        n_filters = layers + 1
        # The iMFNs use the MFN filters as they are; iSIREN's injections are Fourier filters without the sine.
        self.filters = filter_bank(kind, in_features, hidden, input_scale, n_filters) if kind != "siren" else \
            nn.ModuleList(InjectionFilter(in_features, hidden, input_scale, n_filters) for _ in range(n_filters))
        self.linears = hidden_linears(hidden, layers)
        self.norms = nn.ModuleList(ShrinkSpectralNorm(hidden, hidden, spectral_target) for _ in range(layers))
        for norm, linear in zip(self.norms, self.linears):
            norm.warm_up(linear.weight)
        self.head = OutputLinear(hidden, out_features)

    @contextmanager
    def one_estimate_per_step(self):
        """Within the block, training forwards normalise the weights with the spectral-norm estimates advanced once,
        now, and held: a training step that runs several forwards (pieces of its batch) then normalises exactly
        as one forward over the whole batch does. The norms hold in eval mode, a switch torch.compile guards on."""
        with holding_estimates(self, self.advance_estimates):
            yield

    def advance_estimates(self) -> None:
        """Refine every spectral-norm estimate once, as a training forward would."""
        for norm, linear in zip(self.norms, self.linears):
            norm.advance(linear.weight)

    def prepare(self, x: torch.Tensor) -> Prepared:
        filters = [filt(x) for filt in self.filters]
        if self.kind == "siren":
            filters[0] = torch.sin(filters[0])
        weights = [norm(linear.weight) for norm, linear in zip(self.norms, self.linears)]
        return Prepared(filters, weights, [linear.bias for linear in self.linears])

    def f(self, z: torch.Tensor, prepared: Prepared) -> torch.Tensor:
        return self._layers(z + prepared.filters[0], prepared)

    def _layers(self, z: torch.Tensor, prepared: Prepared) -> torch.Tensor:
        """f after its input injection: ``L_n(... L_1(z))`` with z already holding ``z + g_0(x)``."""
        for weight, bias, g in zip(prepared.weights, prepared.biases, prepared.filters[1:]):
            if self.kind == "siren":
                z = torch.sin(affine(z, weight, bias) + g)
            else:
                z = g * affine(z, weight, bias)
        return z

    def zeros(self, x: torch.Tensor) -> torch.Tensor:
        """The zero state for points ``x`` ``(N, d)``; for stacked networks' own points ``(G, N, d)``, ``(G, N, D)``
        (shared points' ``(N, D)`` broadcasts against the stacked filters)."""
        return x.new_zeros(*x.shape[:-1], self.hidden)

    @torch.no_grad()
    def solve(self, prepared: Prepared, z0: torch.Tensor) -> tuple[torch.Tensor, SolverStats]:
        """The fixpoint for the prepared coordinates from ``z0``, without a graph: ``(z*, stats)``."""
        return solve(lambda z: self.f(z, prepared), z0, self.settings)

    def _with_implicit_backward(self, z_star: torch.Tensor, prepared: Prepared) -> torch.Tensor:
        # Differentiate with respect to the injected state u = z + g_0(x) rather than z itself: df/dz = dL/du, and
        # u is a tensor the layers save anyway, so the incoming state (the old cache) can be freed right away and
        # no gradient is ever spent on it.
        injected = z_star.detach() + prepared.filters[0]
        z_out = self._layers(injected, prepared)
        attach_backward(z_out, injected, self.settings)
        return z_out

    def forward_with_stats(self, x: torch.Tensor, z0: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, SolverStats | None]:
        """Solve to tolerance from zero, or from ``z0`` (evaluation, rendering, and training without
        amortization); with gradients enabled the output carries the implicit backward. Returns the output and
        the solve's stats."""
        prepared = self.prepare(x)
        if self.one_pass:
            return self.head(self.f(self.zeros(x), prepared)), None
        z_star, stats = self.solve(prepared, self.zeros(x) if z0 is None else z0)
        if torch.is_grad_enabled():
            return self.head(self._with_implicit_backward(z_star, prepared)), stats
        return self.head(z_star), stats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_stats(x)[0]

    def amortized_step(self, x: torch.Tensor, z_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training evaluation from the cached state: exactly one f evaluation, no solver.

        Returns the output (with the implicit backward attached) and the new state for the cache.
        """
        prepared = self.prepare(x)
        if self.one_pass:
            return self.head(self.f(self.zeros(x), prepared)), z_cache
        z_out = self._with_implicit_backward(z_cache, prepared)
        return self.head(z_out), z_out.detach()
