"""Per-model defaults that depend on the signal's size: learning rate and frequency scale.

The papers give recipes at fixed sizes. We interpolate between them so a 64 px crop and a 4096 px photo
both get a sensible start; every resolved value is written into the run's config, so a run is reproducible.

- MFN input scale: 256 at 512 px, 128 at 256 px, 64 at 128 px in the implicit-layer paper, i.e. half the
  longest side (about the Nyquist frequency divided by pi). We use exactly that rule at every size.
- SIREN first-layer w0: 30 in the paper up to 512 px. Above 512 px we grow it in proportion to the side
  (our choice, not the paper's) so that the first layer can still reach the image's highest frequencies.
- Learning rate: the papers' value at 512 px (SIREN 1e-4, MFN 1e-3). The implicit-layer paper raises the MFN
  rate to 3e-3 at 128 px; we follow the power law through those two points, lr ~ side^-0.79, capped at 5x.

Video (t, y, x) uses the image rules on the frame's longest side (the paper's video scale, 128-256, is half a
256-512 px frame) with the papers' video learning rates (MFN 1e-3, SIREN 1e-4) and no size boost.

Audio (time in [-1, 1], one coordinate) needs far higher frequencies (the papers: SIREN first w0 = 3000,
MFN input scale 25000 for one Bach clip), and how much higher depends on the clip's length and content. We
measure it: k99 is the number of cycles over the whole clip below which 99% of its energy lies, i.e. an angular
frequency of pi * k99 in time coordinates. MFN input scale = 2 pi k99, SIREN first w0 = pi k99 / 4 (factors
tuned on a tone sequence; our choice, not the papers'). A 2-second and a 2-minute clip of the same music then get
the same frequency per second. Audio learning rates are the papers' (SIREN 1e-4, MFN 1e-3) at every length.
"""

from __future__ import annotations

import math

import torch

from models import get_spec

REFERENCE_SIDE = 512
BASE_LR = {"siren": 1e-4, "mfn": 1e-3}
SIREN_W0 = 30.0
# log(3) / log(4): the exponent that takes the MFN rate from 1e-3 at 512 px to 3e-3 at 128 px.
LR_SIZE_EXPONENT = math.log(3.0) / math.log(4.0)
MAX_LR_BOOST = 5.0
# 3D shapes in the normalised cube: MFN input scale 32, best of 8-64 on a torus (our choice; IoU 0.99 vs 0.77 at 64).
SHAPE_INPUT_SCALE = 32.0
AUDIO_ENERGY_FRACTION = 0.99
AUDIO_MFN_FACTOR = 2.0  # input scale in units of pi * k99
AUDIO_SIREN_FACTOR = 0.25  # first-layer w0 in units of pi * k99


def cycles_holding_energy(values: torch.Tensor, fraction: float = AUDIO_ENERGY_FRACTION) -> float:
    """Cycles over the whole signal (an rfft bin) below which ``fraction`` of its energy lies, channels summed."""
    power = torch.fft.rfft(values.double() - values.double().mean(0), dim=0).abs().pow(2).sum(-1)
    cumulative = torch.cumsum(power, 0)
    if cumulative[-1] <= 0:
        return 1.0
    return float(torch.searchsorted(cumulative, fraction * cumulative[-1]).item()) + 1.0


def default_learning_rate(model: str, grid_shape: tuple[int, ...], kind: str = "image") -> float:
    family = get_spec(model).family
    if kind in ("audio", "video", "shape"):
        return BASE_LR[family]
    side = max(grid_shape)
    boost = min(MAX_LR_BOOST, max(1.0, (REFERENCE_SIDE / side) ** LR_SIZE_EXPONENT))
    return BASE_LR[family] * boost


def default_frequency(model: str, grid_shape: tuple[int, ...], kind: str = "image",
                      values: torch.Tensor | None = None) -> float:
    family = get_spec(model).family
    if kind == "audio":
        factor = AUDIO_SIREN_FACTOR if family == "siren" else AUDIO_MFN_FACTOR
        return max(1.0, factor * math.pi * cycles_holding_energy(values))
    if kind == "shape":
        return SIREN_W0 if family == "siren" else SHAPE_INPUT_SCALE
    side = max(grid_shape[-2:]) if kind == "video" else max(grid_shape)
    if family == "siren":
        return SIREN_W0 * max(1.0, side / REFERENCE_SIDE)
    return max(1.0, side / 2.0)
