"""The one home of every JIIO default: the augmented fixpoint, the Adam baseline, the corruptions and the
restoration protocol. Everything else (decoder training, inverse tasks, `inr jiio-invert`, the benchmark) takes
its defaults from these dataclasses instead of repeating the numbers.

Each ``validate()`` raises :class:`inr_core.errors.InvalidSetting` naming the field, in the library's terms; the
command line phrases the name as its flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from inr_core.errors import check, check_positive

if TYPE_CHECKING:
    import torch
from models.fixpoint import SolverSettings

TASKS = ("reconstruct", "inpaint", "denoise")
METHODS = ("jiio", "adam", "both")
# The largest image side the MDEQs here (decoders and classifiers) are built for, 8x the large decoder's 64 px: a
# decoder's state there is already tens of MB per image, and a mistyped side (100000) would otherwise ask for
# terabytes before anything failed.
MAX_IMAGE_SIZE = 512
# The reference masks a 20 x 20 square of 64 x 64 images; other sizes keep that proportion.
MASK_FRACTION = 20 / 64
# Adam chasing JIIO's loss stops after this many times JIIO's iterations, unless told otherwise.
CHASE_STEPS_PER_ITERATION = 10


@dataclass(frozen=True)
class JIIOSettings:
    """The augmented fixpoint over (z, mu, x) of :func:`training.jiio.inference.jiio`."""

    iterations: int = 40
    step_size: float = 0.05  # alpha on the input; the cost is summed per sample, so it does not scale with the batch
    late_step_factor: float = 0.1  # alpha is multiplied by this ...
    late_fraction: float = 0.75  # ... after this fraction of the iterations
    damping_z: float = 0.8
    damping_mu: float = 0.6
    # > 0: Anderson acceleration on the whole augmented state (the reference uses up to 40). Measured to decode
    # worse on our decoders: its extrapolated states stall far from equilibrium.
    anderson_memory: int = 0
    # An iterate may become a sample's best only if its state is this close to equilibrium (relative residual
    # ||f(z, x) - z|| / ||f(z, x)||): the cost at a z far from z*(x) says little about x (Anderson's extrapolated
    # states can score well and decode badly once solved). inf: the reference's plain keep-the-lowest-cost rule.
    best_residual: float = 1e-2
    project: Callable[[torch.Tensor], torch.Tensor] | None = None  # e.g. an L2 ball around the start, for attacks
    # True: each sample's input step has length alpha (J_x^T mu scaled to unit L2 norm), as L2 attacks step.
    normalize_step: bool = False


RESTORATION_ITERATIONS = 100

# Decoder training runs a shorter JIIO per batch than a restoration: each batch is warm-started from the codes its
# images had last epoch.
TRAINING_JIIO_ITERATIONS = 20


@dataclass(frozen=True)
class AdamSettings:
    """The baseline: Adam on the input with a full equilibrium solve and an exact implicit backward per step."""

    steps: int = 40
    lr: float = 0.05
    tol: float = 1e-4  # relative residual of each step's forward solve and of its adjoint
    max_iter: int = 50  # cap on each of those solves (a lower cap is a cheaper, rougher baseline)

    def solver_settings(self) -> SolverSettings:
        """The DEQ core's settings for one step: Anderson forward, exact backward, both to ``tol``."""
        return SolverSettings(solver="anderson", tol=self.tol, max_iter=self.max_iter, backward="exact",
                              backward_tol=self.tol, backward_max_iter=self.max_iter)


@dataclass(frozen=True)
class CorruptionSettings:
    """What the inverse tasks hide: ``inpaint`` a square of ``mask_size`` px (None: ``MASK_FRACTION`` of the image
    side), ``denoise`` Gaussian noise of ``sigma`` in [-1, 1] units."""

    mask_size: int | None = None
    sigma: float = 0.4

    def mask_side(self, image_side: int) -> int:
        return self.mask_size or max(1, round(MASK_FRACTION * image_side))

    def validate(self) -> None:
        check(self.mask_size is None or self.mask_size >= 1, "mask_size", f"must be at least 1, got {self.mask_size}")
        check_positive(self.sigma, "sigma")


@dataclass(frozen=True)
class RestorationSettings:
    """How test images are restored: the task, the method(s), and each method's budget."""

    task: str = "reconstruct"
    method: str = "jiio"  # jiio, adam, or both (adds the time ratios of the JIIO-vs-Adam protocol)
    count: int = 16  # test images
    # JIIO iterations, and Adam steps at equal iterations. Measured on held-out Fashion-MNIST with the small preset
    # (2,000 images, 16 epochs): reconstruction 18.8 dB at 40 iterations, 21.0 at 100, 21.7 at 200. A test image
    # starts from the zero code, far from where its training neighbours' codes ended (training warm-starts each
    # image from its last code, so 20 iterations per batch suffice there).
    iters: int = RESTORATION_ITERATIONS
    step_size: float = JIIOSettings.step_size
    anderson_memory: int = JIIOSettings.anderson_memory
    adam_lr: float = AdamSettings.lr
    adam_max_steps: int | None = None  # Adam chasing JIIO's loss; None: CHASE_STEPS_PER_ITERATION x iters
    batch_size: int = 64  # test images restored together

    def methods(self) -> tuple[str, ...]:
        return ("jiio", "adam") if self.method == "both" else (self.method,)

    def jiio(self) -> JIIOSettings:
        return JIIOSettings(iterations=self.iters, step_size=self.step_size, anderson_memory=self.anderson_memory)

    def adam(self) -> AdamSettings:
        """Adam at equal iterations (the chase is the same with ``steps=chase_steps()``)."""
        return AdamSettings(steps=self.iters, lr=self.adam_lr)

    def chase_steps(self) -> int:
        return self.adam_max_steps or CHASE_STEPS_PER_ITERATION * self.iters

    def validate(self) -> None:
        check(self.task in TASKS, "task", f"must be one of {', '.join(TASKS)}, got {self.task!r}")
        check(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("count", "iters", "batch_size"):
            value = getattr(self, name)
            check(value >= 1, name, f"must be at least 1, got {value}")
        check(self.adam_max_steps is None or self.adam_max_steps >= 1, "adam_max_steps",
              f"must be at least 1, got {self.adam_max_steps}")
        check_positive(self.step_size, "step_size")
        check_positive(self.adam_lr, "adam_lr")
        check(self.anderson_memory >= 0, "anderson_memory", f"must be 0 or more, got {self.anderson_memory}")
