"""What defines a decoder training run: :class:`DecoderConfig`, importable without torch (a command lists its
defaults in ``--help`` before anything is trained); :mod:`training.jiio.decoder_training` runs one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from inr_core.errors import check, check_positive
from models.mdeq_presets import PRESETS, DecoderPreset
from training.jiio.settings import MAX_IMAGE_SIZE, TRAINING_JIIO_ITERATIONS, JIIOSettings
from training.schedule import LR_SCHEDULES, rate_factor

# Upper bounds, so that a mistyped size is refused rather than sent to the allocator. The latent size is 32 or 64
# in the presets; every training image keeps a code of it (60,000 images at 4096: 1 GB). The injection maps
# (latent_dim x injection_base^2 weights per branch channel) grow with both the latent and the image side: a
# billion weights is 4 GB, 12 GB with Adam's moments (the large preset at 512 px holds half that).
MAX_LATENT_DIM = 4096
MAX_INJECTION_WEIGHTS = 10**9


@dataclass
class DecoderConfig:
    """Everything that defines a decoder training run: the architecture (a preset, optionally overridden) and the
    optimisation. Saved whole in the run's checkpoint and read back whole (:meth:`from_dict`)."""
    preset: str = "small"
    image_size: int | None = None  # None: the preset's
    channels: list[int] | None = None  # per branch, highest resolution first; None: the preset's
    latent_dim: int | None = None
    injection_base: int | None = None  # None: the preset's, or a quarter of a changed image side
    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    # cosine: the rate falls from lr to COSINE_FLOOR x lr along a cosine over the run's epochs, batch by batch;
    # constant: lr throughout. The schedule is a function of (epoch, batch, epochs), so a run stopped and resumed
    # with the same --epochs continues exactly; resuming with more epochs stretches the cosine over the new total.
    lr_schedule: str = "cosine"
    # Measured (10 epochs, 1,024 Fashion-MNIST images): test reconstruction 17.95 dB against 17.53 dB with 0.1.
    jacobian_weight: float = 1.0
    jiio_iterations: int = TRAINING_JIIO_ITERATIONS  # per batch (restoration uses more)
    jiio_step_size: float = JIIOSettings.step_size
    anderson_memory: int = JIIOSettings.anderson_memory
    seed: int = 0

    def __post_init__(self):
        # Fill in the preset's architecture; an unknown preset is left for validate() to report.
        if self.preset not in PRESETS:
            return
        base = PRESETS[self.preset]
        if self.injection_base is None:
            same_size = self.image_size in (None, base.image_size)
            self.injection_base = base.injection_base if same_size else max(2, self.image_size // 4)
        self.image_size = base.image_size if self.image_size is None else self.image_size
        self.channels = list(base.channels if self.channels is None else self.channels)
        self.latent_dim = base.latent_dim if self.latent_dim is None else self.latent_dim

    def validate(self) -> None:
        """Raise :class:`inr_core.errors.InvalidSetting` naming the first field no training run can use."""
        check(self.preset in PRESETS, "preset", f"must be one of: {', '.join(PRESETS)}; got {self.preset!r}")
        for name in ("image_size", "latent_dim", "injection_base", "epochs", "jiio_iterations"):
            value = getattr(self, name)
            check(value >= 1, name, f"must be at least 1, got {value}")
        check(bool(self.channels) and min(self.channels) >= 1, "channels",
              f"must be one or more positive widths, got {self.channels}")
        check(self.image_size <= MAX_IMAGE_SIZE, "image_size",
              f"must be at most {MAX_IMAGE_SIZE}, got {self.image_size}")
        # Each lower branch has half the side of the one above, and is upsampled by 2 back to it: only a side that
        # halves exactly down to the lowest branch comes back to itself.
        multiple = 2 ** (len(self.channels) - 1)
        check(self.image_size % multiple == 0, "image_size",
              f"must be a multiple of {multiple} for the {self.preset} preset, got {self.image_size}")
        check(self.latent_dim <= MAX_LATENT_DIM, "latent_dim",
              f"must be at most {MAX_LATENT_DIM}, got {self.latent_dim}")
        weights = self.latent_dim * self.injection_base ** 2 * sum(self.channels)
        check(weights <= MAX_INJECTION_WEIGHTS, "latent_dim",
              f"{self.latent_dim} at image size {self.image_size} gives the latent's injection maps {weights:,} "
              f"weights, more than {MAX_INJECTION_WEIGHTS:,}; lower it or the image size")
        check(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        check_positive(self.lr, "lr")
        check_positive(self.jiio_step_size, "jiio_step_size")
        check(self.jacobian_weight >= 0, "jacobian_weight", f"must be 0 or more, got {self.jacobian_weight}")
        check(self.anderson_memory >= 0, "anderson_memory", f"must be 0 or more, got {self.anderson_memory}")
        check(self.lr_schedule in LR_SCHEDULES, "lr_schedule",
              f"must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")

    def learning_rate(self, progress: float) -> float:
        """The rate at ``progress`` (epochs done, fractional, over ``epochs``) through the run."""
        return self.lr * rate_factor(self.lr_schedule, progress)

    def decoder_preset(self) -> DecoderPreset:
        groups = PRESETS[self.preset].groups
        if any(c % groups for c in self.channels):
            groups = 1 if any(c % 2 for c in self.channels) else 2
        return DecoderPreset(image_size=self.image_size, channels=tuple(self.channels), latent_dim=self.latent_dim,
                             groups=groups, injection_base=self.injection_base)

    def jiio_settings(self) -> JIIOSettings:
        """The JIIO run on every training batch."""
        return JIIOSettings(iterations=self.jiio_iterations, step_size=self.jiio_step_size,
                            anderson_memory=self.anderson_memory)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DecoderConfig":
        """The config saved by :meth:`to_dict`; keys of older versions that no longer exist are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
