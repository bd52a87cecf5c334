"""Default learning rates and frequency scales: general rules of a model and a signal's size or spectrum.

Each modality picks the rules that suit it and returns them as a :class:`Recipe`; every value a fit resolves
from it is written into the run's config, so a run is reproducible. docs/recipes.md gives the sources (the
papers' recipes at fixed sizes) and marks which choices are ours.

- :func:`learning_rate_for_side`: the papers' rate at 512 px (SIREN 1e-4, MFN 1e-3), raised for smaller sides
  along the power law through the implicit-layer paper's two MFN recipes (1e-3 at 512 px, 3e-3 at 128 px),
  lr ~ side^-0.79, at most 5x. :func:`papers_learning_rate` is the rate at 512 px alone.
- :func:`frequency_for_side`: MFN input scale = half the longest side (the implicit-layer paper's 256 at 512 px,
  128 at 256 px, 64 at 128 px); SIREN first-layer w0 = 30 up to 512 px, grown in proportion above (ours).
- :func:`frequency_for_bandwidth`: from the signal's spectrum. k99 is the number of cycles over the whole signal
  below which 99% of its energy lies, an angular frequency of pi * k99 in coordinates over [-1, 1]; MFN input
  scale = 2 pi k99, SIREN first w0 = pi k99 / 4 (factors tuned on a tone sequence; ours).
- :func:`frequency_for_cube`: a fixed scale for fields in the unit cube (MFN 32, the best of 8-64 on a torus,
  ours; SIREN w0 30).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from models import get_spec

REFERENCE_SIDE = 512
BASE_LR = {"siren": 1e-4, "mfn": 1e-3}
SIREN_W0 = 30.0
# log(3) / log(4): the exponent that takes the MFN rate from 1e-3 at 512 px to 3e-3 at 128 px.
LR_SIZE_EXPONENT = math.log(3.0) / math.log(4.0)
MAX_LR_BOOST = 5.0
CUBE_INPUT_SCALE = 32.0
ENERGY_FRACTION = 0.99
BANDWIDTH_FACTOR = {"mfn": 2.0, "siren": 0.25}  # frequency scale in units of pi * k99


@dataclass(frozen=True)
class Recipe:
    """A modality's defaults for one model on one signal: what ``None`` in a FitConfig resolves to."""

    learning_rate: float
    # SIREN first-layer w0, or MFN input scale; or a function that measures it, called only when the fit has no
    # --frequency of its own (audio's reads the whole clip's spectrum: seconds of a long clip's time, for nothing)
    frequency: float | Callable[[], float]
    points_per_step: int | None = None  # at most this many random points per step; None: as memory allows

    def frequency_value(self) -> float:
        return self.frequency() if callable(self.frequency) else self.frequency


# A modality's rule: the Recipe for a model (by name) on a signal. Modality.recipe is one.
RecipeRule = Callable[[str, Any], Recipe]


def _family(model: str) -> str:
    return get_spec(model).family


def papers_learning_rate(model: str) -> float:
    return BASE_LR[_family(model)]


def learning_rate_for_side(model: str, side: int) -> float:
    boost = min(MAX_LR_BOOST, max(1.0, (REFERENCE_SIDE / side) ** LR_SIZE_EXPONENT))
    return BASE_LR[_family(model)] * boost


def frequency_for_side(model: str, side: int) -> float:
    if _family(model) == "siren":
        return SIREN_W0 * max(1.0, side / REFERENCE_SIDE)
    return max(1.0, side / 2.0)


# The spectrum of a long clip is averaged over segments of this many samples (Welch's method, rectangular windows,
# overlapping just enough to cover every sample): a whole 10-minute stereo clip's float64 FFT took 4 GB. A clip up
# to this length is one segment, its whole spectrum as before. Each segment resolves 1 / SPECTRUM_SEGMENT of the
# sampling rate (0.04 Hz at 44.1 kHz), far finer than the frequency scale needs. Tests set it smaller.
SPECTRUM_SEGMENT = 1 << 20


def _segment_starts(length: int, segment: int) -> list[int]:
    count = math.ceil(length / segment)
    return [0] if count == 1 else [round(i * (length - segment) / (count - 1)) for i in range(count)]


def cycles_holding_energy(values: torch.Tensor, fraction: float = ENERGY_FRACTION) -> float:
    """Cycles over the whole signal (an rfft bin) below which ``fraction`` of its energy lies, channels summed.

    A signal longer than :data:`SPECTRUM_SEGMENT` is measured by the mean power spectrum of segments of that
    length (one segment's bin ``b`` is ``b * N / segment`` cycles over the whole signal), so only one segment is
    ever in float64."""
    length = len(values)
    segment = min(length, SPECTRUM_SEGMENT)
    mean = sum(values[start:start + segment].double().sum(0) for start in range(0, length, segment)) / length
    power = torch.zeros(segment // 2 + 1, dtype=torch.float64)
    for start in _segment_starts(length, segment):
        piece = values[start:start + segment].double() - mean
        power += torch.fft.rfft(piece, dim=0).abs().pow(2).sum(-1)
    cumulative = torch.cumsum(power, 0)
    if cumulative[-1] <= 0:
        return 1.0
    return float(torch.searchsorted(cumulative, fraction * cumulative[-1]).item()) * length / segment + 1.0


def frequency_for_bandwidth(model: str, values: torch.Tensor) -> float:
    """For ``(N, C)`` samples along one coordinate over [-1, 1]."""
    return max(1.0, BANDWIDTH_FACTOR[_family(model)] * math.pi * cycles_holding_energy(values))


def frequency_for_cube(model: str) -> float:
    return SIREN_W0 if _family(model) == "siren" else CUBE_INPUT_SCALE
