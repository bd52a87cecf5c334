"""Per-model defaults that depend on the signal's size: learning rate and frequency scale.

The papers give recipes at fixed sizes. We interpolate between them so a 64 px crop and a 4096 px photo
both get a sensible start; every resolved value is written into the run's config, so a run is reproducible.

- MFN input scale: 256 at 512 px, 128 at 256 px, 64 at 128 px in the implicit-layer paper, i.e. half the
  longest side (about the Nyquist frequency divided by pi). We use exactly that rule at every size.
- SIREN first-layer w0: 30 in the paper up to 512 px. Above 512 px we grow it in proportion to the side
  (our choice, not the paper's) so that the first layer can still reach the image's highest frequencies.
- Learning rate: the papers' value at 512 px (SIREN 1e-4, MFN 1e-3). The implicit-layer paper raises the MFN
  rate to 3e-3 at 128 px; we follow the power law through those two points, lr ~ side^-0.79, capped at 5x.
"""

from __future__ import annotations

import math

from models import get_spec

REFERENCE_SIDE = 512
BASE_LR = {"siren": 1e-4, "mfn": 1e-3}
SIREN_W0 = 30.0
# log(3) / log(4): the exponent that takes the MFN rate from 1e-3 at 512 px to 3e-3 at 128 px.
LR_SIZE_EXPONENT = math.log(3.0) / math.log(4.0)
MAX_LR_BOOST = 5.0


def default_learning_rate(model: str, grid_shape: tuple[int, ...]) -> float:
    family = get_spec(model).family
    side = max(grid_shape)
    boost = min(MAX_LR_BOOST, max(1.0, (REFERENCE_SIDE / side) ** LR_SIZE_EXPONENT))
    return BASE_LR[family] * boost


def default_frequency(model: str, grid_shape: tuple[int, ...]) -> float:
    family = get_spec(model).family
    side = max(grid_shape)
    if family == "siren":
        return SIREN_W0 * max(1.0, side / REFERENCE_SIDE)
    return max(1.0, side / 2.0)
