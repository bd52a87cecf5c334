"""The MDEQ classifier's sizes and solver defaults, as plain data: importable without torch, so `inr
jiio-robust --help` can list them before the classifier itself is loaded (:mod:`models.mdeq_classifier`)."""

from __future__ import annotations

from dataclasses import dataclass

from models.fixpoint.settings import SolverSettings

# Forward solves (training, attacks and evaluation): at initialisation the small preset reaches 1e-4 in about 12
# Anderson steps; 50 leaves room for trained classifiers. The exact backward solves the adjoint to the same tolerance.
CLASSIFIER_SOLVER = SolverSettings(solver="anderson", tol=1e-4, max_iter=50, backward="exact", backward_tol=1e-4,
                                   backward_max_iter=50)


@dataclass(frozen=True)
class ClassifierPreset:
    image_size: int  # the input side; the state's branches start at half of it (the stem has stride 2)
    channels: tuple[int, ...]  # per branch, highest resolution first
    groups: int = 4


PRESETS = {
    "tiny": ClassifierPreset(image_size=28, channels=(8, 16), groups=2),  # tests: a few hundred images in seconds
    "small": ClassifierPreset(image_size=28, channels=(16, 32)),  # 28 px grayscale on a CPU: 14 and 7 px branches
    "large": ClassifierPreset(image_size=32, channels=(32, 64, 128), groups=8),  # GPU: 16, 8 and 4 px branches
}
