"""The whole configuration of one `inr jiio-invert` run, nested by concern, validated once.

    InvertConfig
      decoder      DecoderSource: a checkpoint, or a collection to train on (with DecoderConfig in ``training``)
      restoration  RestorationSettings: task, method(s), test image count, iterations, step sizes, batch size
      corruption   CorruptionSettings: the inpainting square, the denoising noise
      fid          FidSettings: whether to measure reconstruction FID, and with which network
      composite, test_images, masks, device, seed

:meth:`InvertConfig.validate` raises :class:`inr_core.errors.InvalidSetting` with the dotted name of the field
(``restoration.iters``, ``decoder.training.lr``); problems that involve a second field name it the same way. The
command line phrases those names as its flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from inr_core.errors import check, check_positive, within
from training.jiio.decoder_config import DecoderConfig
from training.jiio.settings import CorruptionSettings, RestorationSettings


# The settings that only training uses: given with a trained decoder (and no decoder.data) they are refused.
TRAINING_SETTINGS = ("decoder.training.preset", "decoder.training.image_size", "decoder.training.latent_dim",
                     "decoder.training.epochs", "decoder.training.lr", "decoder.training.lr_schedule",
                     "decoder.training.batch_size", "decoder.train_count")


@dataclass
class DecoderSource:
    """Where the decoder comes from: a checkpoint, or training on ``data`` as ``training`` says. With ``resume``,
    the checkpoint (or the run's own decoder.pt) is trained on up to ``training.epochs``."""
    checkpoint: Path | None = None
    data: str | None = None
    train_count: int | None = None  # images to train on; None: all but the held-out test images
    resume: bool = False
    training: DecoderConfig = field(default_factory=DecoderConfig)
    # Training wall time to stay within: the first epoch is timed, and training.epochs lowered (never raised) to
    # as many as fit. None: train training.epochs whatever they take.
    train_minutes: float | None = None
    # The training settings given explicitly (field: its flag): a resumed run refuses any of them that differs
    # from the run it continues, whose architecture and recipe it keeps.
    given: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FidSettings:
    enabled: bool = True  # reconstruct only: FID of the decoded latents against the test images
    model: Path | None = None  # a TorchScript Inception file; None: the optional package's


@dataclass
class InvertConfig:
    decoder: DecoderSource = field(default_factory=DecoderSource)
    restoration: RestorationSettings = field(default_factory=RestorationSettings)
    corruption: CorruptionSettings = field(default_factory=CorruptionSettings)
    fid: FidSettings = field(default_factory=FidSettings)
    composite: bool = True  # inpaint: the restoration written keeps the observed pixels; the decoding fills the hole
    test_images: list[str] | None = None  # None: the held-out end of the training collection
    # inpaint: image files whose white pixels mark what is missing, one for every test image or one for all;
    # None: a random square per image (corruption.mask_size)
    masks: list[str] | None = None
    device: str = "auto"
    seed: int = 0  # training (decoder.training.seed follows it) and the corruptions
    # The settings given explicitly (dotted fields): one given where the run would not use it is refused, not ignored.
    given: frozenset[str] = frozenset()

    def held_out(self) -> int:
        """Images at the end of the training collection that training leaves for testing."""
        return 0 if self.test_images else self.restoration.count

    def composites(self) -> bool:
        """Whether the restorations written are composited: inpainting only (denoising observes every pixel, with
        noise, so there the decoding itself is the estimate)."""
        return self.composite and self.restoration.task == "inpaint"

    def validate(self) -> None:
        """Raise :class:`InvalidSetting` naming the first field (dotted, from this config) no run can use."""
        from training.fitting.devices import check_device_name  # torch, needed only once a run is checked

        check_device_name(self.device)
        source = self.decoder
        check(source.data is not None or source.checkpoint is not None, "decoder.checkpoint",
              "or decoder.data is needed: give a trained decoder with decoder.checkpoint, or a collection to train "
              "one on with decoder.data")
        check(source.data is not None or not source.resume, "decoder.resume",
              "continues training: it needs decoder.data")
        check(source.checkpoint is None or source.data is None or source.resume, "decoder.checkpoint",
              "with decoder.data trains nothing new: add decoder.resume to continue its training, or drop "
              "decoder.data to use it as it is")
        # The latent density `inr sample` draws from is fitted to the training codes: it needs two at least.
        check(source.train_count is None or source.train_count >= 2, "decoder.train_count",
              f"must be at least 2 (training needs 2 images at least), got {source.train_count}")
        check_positive(source.train_minutes, "decoder.train_minutes", optional=True)
        check(source.train_minutes is None or source.data is not None, "decoder.train_minutes",
              "limits training: it needs decoder.data")
        within("decoder.training", source.training.validate)
        within("restoration", self.restoration.validate)
        within("corruption", self.corruption.validate)
        check(not self.masks or self.restoration.task == "inpaint", "masks",
              "marks the pixels to fill: it needs restoration.task inpaint")
        check(not self.masks or self.corruption.mask_size is None, "masks",
              "gives the hidden pixels itself: drop corruption.mask_size")
        self._refuse_unused()

    def _refuse_unused(self) -> None:
        """Refuse a setting given explicitly that this run would not use (a decoder's training settings with a
        trained decoder, another task's corruption, another method's step sizes), instead of ignoring it."""
        task, method = self.restoration.task, self.restoration.method
        for setting in TRAINING_SETTINGS:
            check(setting not in self.given or self.decoder.data is not None, setting,
                  "trains a decoder: it needs decoder.data (the one in decoder.checkpoint is used as it was trained, "
                  "at its own image size)")
        uses = {"corruption.sigma": (task == "denoise", "adds the denoising noise: it needs restoration.task denoise"),
                "corruption.mask_size": (task == "inpaint",
                                         "hides the square to fill: it needs restoration.task inpaint"),
                "composite": (task == "inpaint", "keeps an inpainting's observed pixels: it needs restoration.task "
                                                 "inpaint"),
                "restoration.step_size": (method != "adam", "is JIIO's: it needs restoration.method jiio or both"),
                "restoration.anderson_memory": (method != "adam",
                                                "is JIIO's: it needs restoration.method jiio or both"),
                "restoration.adam_lr": (method != "jiio",
                                        "is the Adam baseline's: it needs restoration.method adam or both"),
                "restoration.adam_max_steps": (method == "both", "caps Adam's run to JIIO's loss: it needs "
                                                                 "restoration.method both"),
                "fid.model": (task == "reconstruct" and self.fid.enabled,
                              "measures reconstruction FID: it needs restoration.task reconstruct, without --no-fid")}
        for setting, (used, problem) in uses.items():
            check(setting not in self.given or used, setting, problem)

    def report(self, image_side: int) -> dict:
        """The restoration settings a report records, with defaults that depend on others resolved (the mask side
        on the decoder's ``image_side``, Adam's step cap on the iterations)."""
        return {**asdict(self.restoration), **asdict(self.corruption),
                "mask_size": None if self.masks else self.corruption.mask_side(image_side), "masks": self.masks,
                "adam_max_steps": self.restoration.chase_steps(),
                "composite": self.composites(), "images": self.test_images, "seed": self.seed, "device": self.device,
                "fid": self.fid.enabled, "fid_model": None if self.fid.model is None else str(self.fid.model)}

