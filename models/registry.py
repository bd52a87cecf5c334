"""Models looked up by name. A new model is one module and one entry here.

The table imports no network code: each builder imports its model's module when it is called, so the names (and
a command's ``--help``) are available without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from models.fixpoint.settings import SolverSettings

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "siren" or "mfn": decides which recipe (learning rate, frequency scale) applies
    build: Callable[..., nn.Module]
    summary: str
    implicit: bool = False  # solved to a fixpoint; takes solver settings and a one-pass switch


def _implicit(kind):
    def build(in_features, out_features, hidden, layers, frequency, one_pass=False, settings=None):
        from models.implicit import ImplicitINR

        return ImplicitINR(in_features, out_features, hidden=hidden, layers=layers, input_scale=frequency,
                           kind=kind, one_pass=one_pass, settings=settings)
    return build


def _siren(in_features, out_features, hidden, layers, frequency):
    from models.siren import Siren

    return Siren(in_features, out_features, hidden=hidden, layers=layers, first_w0=frequency)


def _fourier_mfn(in_features, out_features, hidden, layers, frequency):
    from models.mfn import FourierMFN

    return FourierMFN(in_features, out_features, hidden=hidden, layers=layers, input_scale=frequency)


def _gabor_mfn(in_features, out_features, hidden, layers, frequency):
    from models.mfn import GaborMFN

    return GaborMFN(in_features, out_features, hidden=hidden, layers=layers, input_scale=frequency)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("siren", "siren", _siren, "sine layers, w0 = 30 (Sitzmann et al. 2020)"),
        ModelSpec("fourier-mfn", "mfn", _fourier_mfn, "multiplicative filter network, sine filters"),
        ModelSpec("gabor-mfn", "mfn", _gabor_mfn, "multiplicative filter network, Gabor filters"),
        # The implicit models use the implicit-layer paper's MFN recipe (lr, input scale), iSIREN included.
        ModelSpec("isiren", "mfn", _implicit("siren"), "implicit layer, sine with injected input", implicit=True),
        ModelSpec("fourier-imfn", "mfn", _implicit("fourier"), "implicit layer, sine filters", implicit=True),
        ModelSpec("gabor-imfn", "mfn", _implicit("gabor"), "implicit layer, Gabor filters", implicit=True),
    )
}


def model_names() -> list[str]:
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


def build_model(name: str, in_features: int, out_features: int, *, hidden: int, layers: int,
                frequency: float, one_pass: bool = False, settings: SolverSettings | None = None) -> nn.Module:
    """Build the network ``name`` mapping ``in_features`` coordinates to ``out_features`` values.

    ``frequency`` is the family's frequency scale: the first-layer w0 for SIREN, the input scale for MFNs.
    ``one_pass`` and ``settings`` (solver, tolerance, backward mode) apply to implicit models only.
    """
    spec = get_spec(name)
    if spec.implicit:
        return spec.build(in_features, out_features, hidden, layers, frequency, one_pass=one_pass, settings=settings)
    return spec.build(in_features, out_features, hidden, layers, frequency)


def count_parameters(model: nn.Module) -> int:
    """The trained numbers (``model.parameters()``): a report's ``params``."""
    return sum(p.numel() for p in model.parameters())


def count_stored_numbers(model: nn.Module) -> int:
    """The floating-point numbers a checkpoint stores to give back ``model``'s function: its parameters and its
    persistent buffers, i.e. every floating tensor of its ``state_dict``. An implicit model adds its
    spectral-norm vectors u and v (2 x width per normalised layer), which set sigma and so its weights' scale;
    settings kept out of the state dict (SIREN's w0: the config gives them) are not counted. The size a rate
    (``bits_per_point``) counts, and what the PSNR at fp16 weights rounds."""
    return sum(tensor.numel() for tensor in model.state_dict().values() if tensor.is_floating_point())
