"""The signals a fit works on, and how each one measures a network against itself.

Two kinds, each a complete type (no optional fields that only one of them uses):

- :class:`GridSignal`: values on a regular grid over [-1, 1]^d (images, audio, video), with the points that
  train and those held out, each forming a sub-grid.
- :class:`ScatteredSamples`: targets at scattered points (a 3D shape's signed distances or occupancies), with
  named groups of held-out points.

The fit loop only asks a signal for its coordinates and targets, its loss and its evaluation; it never asks
which modality produced it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from inr_core.errors import InvalidSetting
from training.fitting.evaluate import (GridEvaluation, GridProgress, SampleEvaluation, evaluate_grid,
                                      evaluate_samples)
from training.fitting.render import grid_axes, grid_coordinates
from training.metrics import psnr_in_chunks, video_psnr

HOLDOUT_MODES = ("none", "grid")


def mean_squared_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((prediction - target) ** 2)


# "bce": the targets are 0/1 occupancies and the network's outputs are their logits.
LOSSES = {"mse": mean_squared_error, "bce": F.binary_cross_entropy_with_logits}


def training_loss(signal: "Signal"):
    """The function ``(prediction, target) -> loss`` a fit of ``signal`` minimises (its ``loss`` names it)."""
    return LOSSES[signal.loss]


# The same losses for G stacked fits (a group): (G, N, C) predictions and targets -> (G,), each signal's own mean.
LOSSES_PER_SIGNAL = {
    "mse": lambda prediction, target: ((prediction - target) ** 2).mean(dim=(-2, -1)),
    "bce": lambda prediction, target: F.binary_cross_entropy_with_logits(prediction, target,
                                                                         reduction="none").mean(dim=(-2, -1)),
}


def per_signal_training_loss(signal: "Signal"):
    """:func:`training_loss` for a group of stacked fits of signals like ``signal``: one loss per signal."""
    return LOSSES_PER_SIGNAL[signal.loss]


class SubGrid:
    """Some points of a grid: their flat (row-major) indices, and the shape they form (for windowed metrics).

    Every point of a grid is ``SubGrid.whole(shape)``: its indices are ``arange(n)``, made only when asked for
    (``index``), not held: they were 8 bytes a point, beside the values' 4 a channel."""

    def __init__(self, index: torch.Tensor | None, shape: tuple[int, ...], count: int | None = None):
        self._index, self.shape = index, tuple(shape)
        self.count = len(index) if index is not None else count

    @classmethod
    def whole(cls, shape: tuple[int, ...]) -> SubGrid:
        return cls(None, shape, math.prod(shape))

    @property
    def is_whole(self) -> bool:
        return self._index is None

    @property
    def index(self) -> torch.Tensor:
        """``(n,)`` int64 (made afresh for a whole grid: callers over large grids use ``count`` and ``is_whole``)."""
        return torch.arange(self.count) if self._index is None else self._index

    def __repr__(self) -> str:
        return f"SubGrid({'whole' if self.is_whole else 'index'}, shape={self.shape}, count={self.count})"


@dataclass
class GridSignal:
    """Values at every point of a regular grid, row-major, scaled to [-1, 1]; trained with the squared error."""

    values: torch.Tensor  # (prod(grid_shape), channels), float32
    grid_shape: tuple[int, ...]
    train: SubGrid
    holdout: SubGrid | None = None  # points kept out of training to measure generalization

    loss = "mse"

    @property
    def dims(self) -> int:
        return len(self.grid_shape)

    @property
    def channels(self) -> int:
        return self.values.shape[1]

    @property
    def num_points(self) -> int:
        return self.values.shape[0]

    @property
    def train_count(self) -> int:
        return self.train.count

    def coordinates(self, index: torch.Tensor | None = None) -> torch.Tensor:
        if index is None:
            return grid_coordinates(self.grid_shape)
        return GridPoints(self.grid_shape, index.device)(index)  # (not the whole grid, to pick some of it)

    def train_coordinates(self) -> torch.Tensor:
        rows = self.rows_of(self.train)
        return self.coordinates(rows)

    def train_targets(self) -> torch.Tensor:
        """The training points' values: the values themselves (no copy) where every point trains."""
        rows = self.rows_of(self.train)
        return self.values if rows is None else self.values[rows]

    def unit_values(self) -> torch.Tensor:
        """The values as ``(points, channels)`` in [0, 1] (they are kept in [-1, 1]), as metrics compare them."""
        return (self.values + 1.0) * 0.5

    def unit_grid(self) -> torch.Tensor:
        """The target on its grid, ``(*grid_shape, channels)``, in [0, 1]: as the reconstruction is rendered, for
        writing and showing beside it."""
        return self.unit_values().reshape(*self.grid_shape, -1)

    def evaluate(self, model: nn.Module, device: torch.device, chunk_points: int) -> GridEvaluation:
        """Render the whole grid; PSNR and SSIM on the training and held-out points, values in [0, 1]."""
        return evaluate_grid(model, self, device, chunk_points)

    def reported_psnr(self, reconstruction: torch.Tensor) -> float:
        """The PSNR a report gives ``reconstruction`` (the grid rendered, ``(*grid_shape, channels)`` in [0, 1]):
        on the training points, as :meth:`evaluate` measures it. Another measure beside it (the network's weights
        rounded to fp16) takes this one, so the two differ only by what was changed."""
        return psnr_in_chunks(reconstruction.reshape(-1, self.channels), self.values, self.rows_of(self.train),
                              target_pm1=True)

    def rows_of(self, part: SubGrid) -> torch.Tensor | None:
        """``part``'s indices, or None where it is every point of the grid: metrics then read the values in place
        instead of gathering a copy of them (a whole photo's, through fancy indexing)."""
        if part.is_whole or (part.shape == self.grid_shape and part.count == self.num_points):
            return None
        return part.index

    def frames_of(self, index: torch.Tensor) -> torch.Tensor | None:
        """The frame each of the points ``index`` lies in, where :meth:`reported_psnr` is the mean of the frames'
        PSNRs (a video), so that progress measures the same; None where it is one PSNR over all the points."""
        return None

    def progress(self, device: torch.device, chunk_points: int):
        """The measurement a fit records along the run: ``(model, train_states=None) -> {"psnr", "psnr_holdout"}``
        as device tensors (``train_states``: an amortized implicit fit's cached states, to start solves from)."""
        return GridProgress(self, device, chunk_points)


class GridPoints:
    """The coordinates of a grid's points made from their flat (row-major) indices, on the device of the axes:
    exactly the values :func:`grid_coordinates` holds there, without holding a whole grid of them (a video's would
    be 12 bytes a point, more than its values), so a fit makes each batch's coordinates from its indices."""

    def __init__(self, grid_shape: tuple[int, ...], device: torch.device | str = "cpu"):
        self.axes = grid_axes(grid_shape, device)
        self.strides = [math.prod(grid_shape[axis + 1:]) for axis in range(len(grid_shape))]

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        return torch.stack([axis[torch.div(index, stride, rounding_mode="floor") % len(axis)]
                            for axis, stride in zip(self.axes, self.strides)], dim=-1)


@dataclass(frozen=True)
class Samples:
    points: torch.Tensor  # (n, dims) float32 in [-1, 1]
    values: torch.Tensor  # (n, channels) float32


@dataclass
class ScatteredSamples:
    """Targets of a field at scattered points, whose inside (negative values, or occupancy 1) is a solid.

    ``held_out`` names groups of points kept out of training (e.g. uniform and near-surface points); each is
    measured on its own by the intersection over union of the predicted and true inside.
    """

    train: Samples
    held_out: dict[str, Samples]
    loss: str = "mse"  # or "bce": occupancy logits

    @property
    def dims(self) -> int:
        return self.train.points.shape[1]

    @property
    def channels(self) -> int:
        return self.train.values.shape[1]

    @property
    def num_points(self) -> int:
        return len(self.train.points) + sum(len(group.points) for group in self.held_out.values())

    @property
    def train_count(self) -> int:
        return len(self.train.points)

    def train_coordinates(self) -> torch.Tensor:
        return self.train.points

    def train_targets(self) -> torch.Tensor:
        return self.train.values

    def evaluate(self, model: nn.Module, device: torch.device, chunk_points: int) -> SampleEvaluation:
        return evaluate_samples(model, self, device, chunk_points)

    def progress(self, device: torch.device, chunk_points: int):
        """The measurement a fit records along the run: IoU on each held-out group (read back: these fits are
        few and their evaluations small)."""
        return lambda model, train_states=None: self.evaluate(model, device, chunk_points).history_entry()

Signal = GridSignal | ScatteredSamples


def fingerprint(signal: Signal) -> str:
    """A digest of what a fit of ``signal`` trains on (a grid's shape, values and training points; scattered
    samples' points and values): a saved training state records it, so --resume can tell the input it was saved
    for, wherever the input file has moved since, from another input, even one of the same shape."""
    digest = hashlib.sha256()
    # The kind of signal, as states have recorded it from the start: a video's grid is a GridSignal's here.
    kind = "GridSignal" if isinstance(signal, GridSignal) else type(signal).__name__
    digest.update(repr((kind, getattr(signal, "grid_shape", None), signal.loss)).encode())
    # A grid's coordinates follow from its shape and the training points' indices: hashed as they are held,
    # without making the coordinates (a long clip's would take as much memory again as its values).
    held = (signal.train, signal.values) if isinstance(signal, GridSignal) else \
        (signal.train.points, signal.train.values)
    for tensor in held:
        if isinstance(tensor, SubGrid) and tensor.is_whole:
            # Every point's index, arange(n) as int64, hashed a piece at a time: the same bytes, never held whole.
            digest.update(repr((torch.zeros(0, dtype=torch.int64).numpy().dtype.str, (tensor.count,))).encode())
            for start in range(0, tensor.count, 1 << 20):
                digest.update(memoryview(torch.arange(start, min(tensor.count, start + (1 << 20))).numpy()).cast("B"))
            continue
        array = (tensor.index if isinstance(tensor, SubGrid) else tensor).detach().cpu().contiguous().numpy()
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _full_grid(values: torch.Tensor, grid_shape: tuple[int, ...], kind: type[GridSignal] = GridSignal) -> GridSignal:
    return kind(values.contiguous(), grid_shape, SubGrid.whole(grid_shape))


def image_signal(pixels: torch.Tensor, holdout: str = "none") -> GridSignal:
    """A signal from an ``(H, W, C)`` image with values in [0, 1].

    ``holdout="grid"`` is the generalization split of the implicit-layer paper: train on pixels
    ``[::2, ::2]``, hold out ``[1::2, 1::2]`` (a quarter of the image each; the rest is unused).
    """
    if holdout not in HOLDOUT_MODES:
        raise InvalidSetting("holdout", f"must be one of: {', '.join(HOLDOUT_MODES)}; got {holdout!r}")
    height, width, channels = pixels.shape
    values = pixels.reshape(-1, channels).float() * 2.0 - 1.0
    if holdout == "none":
        return _full_grid(values, (height, width))
    if height < 2 or width < 2:
        raise InvalidSetting("holdout", f"grid needs an image of at least 2x2 pixels, got {width}x{height}")
    flat = torch.arange(height * width).reshape(height, width)
    train, held = flat[::2, ::2], flat[1::2, 1::2]
    return GridSignal(values.contiguous(), (height, width), SubGrid(train.reshape(-1), tuple(train.shape)),
                      SubGrid(held.reshape(-1), tuple(held.shape)))


def audio_signal(samples: torch.Tensor) -> GridSignal:
    """A signal from ``(N, channels)`` samples in [-1, 1]: time runs over [-1, 1], every sample trains."""
    if samples.ndim != 2 or samples.shape[0] < 2:
        raise ValueError(f"audio needs at least 2 samples, got shape {tuple(samples.shape)}")
    samples = samples.float()
    # Samples already in [-1, 1] (every integer format, most float files) are the values themselves: clamping made
    # a second copy of the whole clip (1.3 GB for an hour of stereo) beside the loaded one, with the same values.
    low, high = torch.aminmax(samples)
    inside = bool(low >= -1.0) and bool(high <= 1.0)
    return _full_grid(samples if inside else samples.clamp(-1.0, 1.0), (samples.shape[0],))


@dataclass
class VideoSignal(GridSignal):
    """Frames on a (t, y, x) grid, every point trained: a video's report gives the mean of its frames' PSNRs
    (:func:`training.metrics.video_psnr`), and so do the fit's evaluations, along the run (on the device:
    :meth:`frames_of`) and at the end, so its history, ``--keep best`` and its report measure one thing."""

    def reported_psnr(self, reconstruction: torch.Tensor) -> float:
        # Frame by frame, each in chunks: no [0, 1] copy of the whole clip (unit_grid) is made for it.
        frames, channels = self.grid_shape[0], self.channels
        rendered, values = reconstruction.reshape(frames, -1, channels), self.values.reshape(frames, -1, channels)
        return video_psnr([psnr_in_chunks(rendered[t], values[t], target_pm1=True) for t in range(frames)])

    def frames_of(self, index: torch.Tensor) -> torch.Tensor:
        return torch.div(index, math.prod(self.grid_shape[1:]), rounding_mode="floor")


def video_signal(frames: torch.Tensor) -> VideoSignal:
    """A signal from ``(T, H, W, C)`` frames in [0, 1]: coordinates (t, y, x), every point trains.

    The values are scaled to [-1, 1] a frame at a time into the signal's tensor (the same values as scaling the
    clip whole, which made two temporaries of the clip's size: 1.2 GB each for 48 frames of 1080p)."""
    count, height, width, channels = frames.shape
    values = torch.empty(count * height * width, channels, dtype=torch.float32, device=frames.device)
    per_frame = height * width
    for index in range(count):
        values[index * per_frame:(index + 1) * per_frame] = frames[index].reshape(-1, channels).float() * 2.0 - 1.0
    return _full_grid(values, (count, height, width), VideoSignal)
