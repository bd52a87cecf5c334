"""What a modality is, and the registry that names them.

A modality (image, audio, video, shape, ...) is everything `inr` knows about one kind of signal, in one class:

- ``name``: the checkpoint's signal kind and the report's key for the source's description; ``command``: the
  `inr fit COMMAND` that fits it;
- ``options_type``: its options, a frozen dataclass with its own ``validate()``;
- :meth:`Modality.load`: a source (a path) into a :class:`LoadedSignal`: the signal to fit, a description of the
  source, notes on what was done to it, and whatever writing the outputs needs;
- :meth:`Modality.recipe`: the defaults (learning rate, frequency scale, points per step) for a model on it;
- :meth:`Modality.metrics` and :meth:`Modality.write_outputs`: the report's quality entries, and the files of a run
  (with any metric measured on them); :meth:`Modality.render_outputs`: what of those files needs the fitted network
  run again (a shape's surface), done in the fit's thread before the files are written;
- :meth:`Modality.summary_line`: the quality line of the human summary;
- :meth:`Modality.sample_target` and :meth:`Modality.write_sample`: re-rendering a fitted network for
  `inr sample`, with the sample settings that apply (``sample_settings``).

A new modality is one module: a subclass registered with :func:`register_modality`. The fit and sample paths
(:mod:`inr_cli.fitting`, :mod:`inr_cli.sample`) look modalities up by name and never ask which one they hold.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from inr_cli.reports import db_text, number_text
from inr_core.errors import UserError, check, check_positive
from training.fitting.config import FitConfig
from training.fitting.evaluate import GridEvaluation
from training.fitting.fit import FitResult
from training.fitting.recipes import Recipe
from training.fitting.render import render_grid_as
from training.fitting.signal import Signal
from training.metrics import to_unit_range

QUALITY_KEYS = ("psnr", "ssim", "psnr_holdout", "ssim_holdout")  # every report has them, null where meaningless
MAX_RESOLUTION = 1024


@dataclass(frozen=True)
class ModalityOptions:
    """A modality's own options. Subclasses add typed fields and check them in ``validate``."""

    def validate(self) -> None:
        """Raise :class:`inr_core.errors.InvalidSetting` naming the first option no run can use."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """The inverse of :meth:`to_dict`. Keys this version does not know are left out: version-1 checkpoints
        kept one flat config with every command's options in it."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class LoadedSignal:
    """A source read and turned into a signal. Modalities subclass it to keep what their writers need."""

    signal: Signal
    info: dict  # the source: size, channels, rate... (saved in the checkpoint and the report)
    notes: list[str]  # what was done to the source (resized, alpha dropped...)


@dataclass
class Outputs:
    files: dict[str, str]  # role -> file name in the run folder
    metrics: dict = field(default_factory=dict)  # report entries measured on what was written
    notes: list[str] = field(default_factory=list)  # what to know of what was written (after the fit's own notes)


@dataclass(frozen=True)
class SampleRequest:
    """What `inr sample` was asked for (None: not given). Each modality takes some of these settings."""

    scale: float | None = None  # a multiple of the fitted size
    width: int | None = None  # pixels; alone, the aspect ratio is kept
    height: int | None = None
    rate: int | None = None  # samples per second, same duration
    duration: float | None = None  # seconds: the signal stretched or squeezed in time
    fps: float | None = None  # frames per second, same duration
    resolution: int | None = None  # of the grid a surface is extracted on

    def validate(self) -> None:
        check_positive(self.scale, "scale", optional=True)
        check(self.scale is None or (self.width is None and self.height is None), "scale",
              "cannot be given with --width or --height; give one or the other")
        for name in ("width", "height", "rate"):
            value = getattr(self, name)
            check(value is None or value >= 1, name, f"must be at least 1, got {value}")
        check_positive(self.duration, "duration", optional=True)
        check_positive(self.fps, "fps", optional=True)
        check(self.resolution is None or 8 <= self.resolution <= MAX_RESOLUTION, "resolution",
              f"must be between 8 and {MAX_RESOLUTION}, got {self.resolution}")

    def given(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


@dataclass(frozen=True)
class SampleTarget:
    grid: tuple[int, ...]  # the grid to render the network on
    default_name: str  # the file name when no --out is given
    suffixes: tuple[str, ...]  # file types the sample can be written as
    rate: float | None = None  # samples or frames per second, for signals in time


@dataclass
class FittedNetwork:
    """A network loaded back from its checkpoint, ready to render, with what its run recorded."""

    model: nn.Module
    out_features: int
    device: torch.device
    chunk: int  # points per forward pass
    info: dict  # the fitted source's description
    config: FitCommandConfig

    def render(self, grid: tuple[int, ...]) -> torch.Tensor:
        """The network's values over ``grid``, in [0, 1], float32 on the CPU: mapped band by band as rendered, so
        the mapping's two whole-size temporaries never exist (a peak of 4 bytes per value, not 12)."""
        return torch.from_numpy(render_grid_as(self.model, grid, self.out_features, self.device, self.chunk,
                                               lambda values: to_unit_range(values).numpy(), np.float32))

    def render_levels(self, grid: tuple[int, ...], bit_depth: int) -> np.ndarray:
        """The network's values over ``grid`` as the integers a PNG of ``bit_depth`` stores (what
        :func:`inr_cli.media.images.write_png` writes of :meth:`render`, value for value), each band rounded as it
        is rendered: 1 or 2 bytes per value for the whole image, where a float render and its rounding held about
        24 (an 8000x6000 RGB sample passed 3 GB)."""
        from inr_cli.media.images import level_dtype, quantize

        return render_grid_as(self.model, grid, self.out_features, self.device, self.chunk,
                              lambda values: quantize(to_unit_range(values), bit_depth), level_dtype(bit_depth))


class Modality(ABC):
    name: ClassVar[str]
    command: ClassVar[str]  # the `inr fit` sub-command; defaults to the name
    options_type: ClassVar[type[ModalityOptions]] = ModalityOptions
    default_input: ClassVar[str | None] = None  # fitted when no input is given
    # A folder given as an input stands for its files of these types, in name order (not its subfolders); with
    # none, a folder is one input (video: a folder of frames).
    folder_suffixes: ClassVar[tuple[str, ...]] = ()
    psnr_plot: ClassVar[bool] = True  # whether a run draws psnr.png (where PSNR means something)
    # The report entries a run over several inputs tabulates in its summary; the first is histogrammed.
    summary_metrics: ClassVar[tuple[str, ...]] = ("psnr", "ssim", "psnr_holdout", "ssim_holdout", "bits_per_point",
                                                      "psnr_fp16_weights")
    sample_settings: ClassVar[tuple[str, ...]] = ()  # the SampleRequest fields this modality takes
    # Host bytes per rendered value at the peak of writing a sample (`inr sample` budgets with it): by default the
    # float32 render and its writer's temporaries; a shape's is its extraction's.
    render_bytes_per_value: ClassVar[int] = 24
    # Whether a run writes its checkpoint before making its outputs, and keeps it when they fail: a shape's mesh
    # extraction and preview take minutes at a high --resolution, and a failure or kill there lost the network.
    # Others write it with the outputs, all or nothing (inr_cli.fit_outputs.write_run).
    checkpoint_first: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and "command" not in cls.__dict__:
            cls.command = cls.name

    @abstractmethod
    def load(self, source: str, options: ModalityOptions, seed: int) -> LoadedSignal:
        """Read ``source`` into a signal (``seed`` for modalities that draw samples); UserError if unreadable."""

    @abstractmethod
    def recipe(self, model: str, signal: Signal) -> Recipe:
        """The defaults for ``model`` fitted to ``signal``."""

    def metrics(self, loaded: LoadedSignal, result: FitResult) -> dict:
        """The report's quality entries: the :data:`QUALITY_KEYS` first (``psnr`` is the headline figure), then
        the modality's own. By default those of the evaluation on the grid."""
        return grid_quality(result.final)

    def render_outputs(self, loaded: LoadedSignal, result: FitResult) -> object | None:
        """What of the outputs runs the fitted network again, computed in the thread that fitted it, right after
        the fit, in full float32 (as `inr sample` renders a checkpoint); it reaches :meth:`write_outputs` as
        ``rendered``. On a GPU the files are written by a background thread while the next input trains, and the
        process-wide TF32 switch then belongs to that next fit: a render there would run in TF32 or not by chance.
        None (the default): the fit's final evaluation holds all the files need."""
        return None

    @abstractmethod
    def write_outputs(self, loaded: LoadedSignal, result: FitResult, out_dir: Path, rendered: object = None
                      ) -> Outputs:
        """Write the modality's files of a run (reconstruction, comparison...); ``rendered``: what
        :meth:`render_outputs` gave (None when it was not called)."""

    def summary_line(self, report: dict) -> str:
        """The quality part of the human summary."""
        line = f"  PSNR {db_text(report['psnr'])}"
        if report.get("ssim") is not None:
            line += f"  SSIM {number_text(report['ssim'])}"
        if report.get("psnr_holdout") is not None:
            line += (f"   held-out PSNR {db_text(report['psnr_holdout'])}"
                     f"  SSIM {number_text(report.get('ssim_holdout'))}")
        return line

    def sample_target(self, info: dict, request: SampleRequest) -> SampleTarget:
        """What to render of a network fitted to the source ``info`` describes, for ``request`` (validated, and
        holding only this modality's settings)."""
        raise UserError(f"{self.name} networks cannot be sampled")

    def write_sample(self, network: FittedNetwork, target: SampleTarget, path: Path) -> None:
        raise UserError(f"{self.name} networks cannot be sampled")


def grid_quality(evaluation: GridEvaluation) -> dict:
    return {"psnr": evaluation.psnr, "ssim": evaluation.ssim, "psnr_holdout": evaluation.psnr_holdout,
            "ssim_holdout": evaluation.ssim_holdout}


@dataclass(frozen=True)
class FitCommandConfig:
    """The whole config of an `inr fit` run: the fit, and which modality with which options. Saved whole in the
    checkpoint and the report, and read back whole by `inr sample`."""

    modality: str
    fit: FitConfig
    options: ModalityOptions

    def validate(self) -> None:
        self.fit.validate()
        self.options.validate()

    def to_dict(self) -> dict:
        return {"modality": self.modality, "fit": self.fit.to_dict(), "options": self.options.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> FitCommandConfig:
        modality = get_modality(data["modality"])
        return cls(data["modality"], FitConfig.from_dict(data["fit"]), modality.options_type.from_dict(data["options"]))

    @classmethod
    def from_flat_dict(cls, modality_name: str, data: dict) -> FitCommandConfig:
        """From a version-1 checkpoint's flat config (fit settings and the modality's options side by side)."""
        modality = get_modality(modality_name)
        return cls(modality_name, FitConfig.from_flat_dict(data), modality.options_type.from_dict(data))


# ----------------------------------------------------------------------------------------------- the registry

_MODALITIES: dict[str, Modality] = {}
# The built-in modalities register themselves when their module is imported; a command imports only the one it
# needs, so fitting an image never loads the mesh or video libraries.
BUILT_IN = {"image": "inr_cli.modalities.image", "audio": "inr_cli.modalities.audio",
            "video": "inr_cli.modalities.video", "shape": "inr_cli.modalities.shape"}


def register_modality(modality: Modality) -> Modality:
    """Make ``modality`` known by its name (replacing one registered under that name before)."""
    _MODALITIES[modality.name] = modality
    return modality


def modality_names() -> list[str]:
    return list(dict.fromkeys([*BUILT_IN, *_MODALITIES]))


def get_modality(name: str) -> Modality:
    if name not in _MODALITIES and name in BUILT_IN:
        importlib.import_module(BUILT_IN[name])
    try:
        return _MODALITIES[name]
    except KeyError:
        raise UserError(f"unknown modality {name!r}; known: {', '.join(modality_names())}") from None
