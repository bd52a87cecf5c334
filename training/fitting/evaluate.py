"""Measuring a fitted network against its signal: a grid rendered whole, or scattered samples group by group.

Each evaluation re-solves implicit networks from zero, chunk by chunk, and summarises those solves in
``solver``. ``history_entry`` is what the fit records of it along the run.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from models.fixpoint import summarize_solves
from training.fitting.render import _grid_bands, eval_mode, predict_points_with_stats, render_grid_with_stats
from training.metrics import psnr_from_sums, psnr_in_chunks, squared_error_sum, ssim, to_unit_range, video_psnr

if TYPE_CHECKING:
    from training.fitting.signal import GridSignal, ScatteredSamples, SubGrid


@dataclass
class GridEvaluation:
    reconstruction: torch.Tensor  # (*grid_shape, C) in [0, 1], on the CPU
    psnr: float  # on the training points, as the report gives it (GridSignal.reported_psnr)
    ssim: float | None  # on the training points, where they form a 2-D grid of at least 3x3
    psnr_holdout: float | None = None  # on the held-out points, when there are any
    ssim_holdout: float | None = None
    solver: dict | None = None  # implicit models: how the evaluation solves went

    def history_entry(self) -> dict:
        return {"psnr": self.psnr, "psnr_holdout": self.psnr_holdout}


@dataclass
class SampleEvaluation:
    iou: dict[str, float | None]  # per held-out group: IoU of the predicted and the true inside
    solver: dict | None = None

    def history_entry(self) -> dict:
        # PSNR means nothing for a field's samples: the keys stay, so every history reads alike.
        return {"psnr": None, "psnr_holdout": None, "iou": self.iou}


def _subgrid_ssim(signal: GridSignal, flat: torch.Tensor, part: SubGrid) -> float | None:
    """SSIM of the rendered ``flat`` (``(points, C)`` in [0, 1]) against the signal on ``part``, where it forms a 2-D
    grid; every point of the grid is read in place (bands at a time: :func:`training.metrics.ssim`)."""
    if len(part.shape) != 2:
        return None
    rows = signal.rows_of(part)
    if rows is None:
        return ssim(flat.reshape(*part.shape, -1), signal.values.reshape(*part.shape, -1), target_pm1=True)
    return ssim(flat[rows].reshape(*part.shape, -1), signal.values[rows].reshape(*part.shape, -1), target_pm1=True)


def _render_unit(model: nn.Module, signal: GridSignal, device: torch.device, chunk_points: int
                 ) -> tuple[torch.Tensor, list]:
    """The whole grid rendered, in [0, 1] and shaped as the grid, with the render's solver statistics."""
    rendered, solves = render_grid_with_stats(model, signal.grid_shape, signal.channels, device, chunk_points)
    # In place (the render is a fresh tensor): to_unit_range's two whole-size temporaries were a photo's size each.
    # The same float32 operations as to_unit_range, so the same values.
    return rendered.add_(1.0).mul_(0.5).clamp_(0.0, 1.0), solves


def evaluate_grid(model: nn.Module, signal: GridSignal, device: torch.device, chunk_points: int) -> GridEvaluation:
    reconstruction, solves = _render_unit(model, signal, device, chunk_points)
    flat = reconstruction.reshape(-1, signal.channels)
    result = GridEvaluation(
        reconstruction=reconstruction,
        psnr=signal.reported_psnr(reconstruction),  # (a video's: the mean over its frames)
        ssim=_subgrid_ssim(signal, flat, signal.train),
        solver=summarize_solves(solves),
    )
    held = signal.holdout
    if held is not None and held.count:
        result.psnr_holdout = psnr_in_chunks(flat, signal.values, held.index, target_pm1=True)
        result.ssim_holdout = _subgrid_ssim(signal, flat, held)
    return result


def measured_parts(signal: GridSignal) -> dict:
    """What progress measures, by report key: the training points, and the held-out ones where there are any."""
    parts = {"psnr": signal.train}
    if signal.holdout is not None and signal.holdout.count:
        parts["psnr_holdout"] = signal.holdout
    return parts


@dataclass(frozen=True)
class FrameIndex:
    """Where the PSNR of some points is the mean of their frames' PSNRs (a video): each point's frame among those
    the points cover (``frame``, ``(n,)``, on the device), and how many values each frame has (``values``)."""

    frame: torch.Tensor
    values: torch.Tensor  # (frames,) float64: points of the frame times channels

    @classmethod
    def of(cls, signal: GridSignal, part: SubGrid, device: torch.device) -> FrameIndex | None:
        frames = signal.frames_of(part.index)
        if frames is None:
            return None
        # Each point's rank among the frames that have points here (frames with none are no frames of theirs):
        # torch.unique's inverse, counted instead of sorted (a sort of every point took seconds per million).
        counts = torch.bincount(frames)
        present = counts > 0
        frame = (torch.cumsum(present, 0) - 1)[frames]
        return cls(frame.to(device), (counts[present].double() * signal.channels).to(device))

    def psnr(self, squared_error: torch.Tensor) -> torch.Tensor:
        """The mean over frames of ``-10 log10`` of each frame's mean of ``squared_error`` (``(..., n, C)``, float64),
        on the device: ``(...)``. Infinite where every frame is matched exactly, as ``video_psnr`` is."""
        sums = squared_error.new_zeros(*squared_error.shape[:-2], len(self.values))
        sums.index_add_(sums.dim() - 1, self.frame, squared_error.sum(-1))
        return (-10.0 * torch.log10(sums / self.values)).mean(-1)


def _progress_psnr(prediction: torch.Tensor, target: torch.Tensor, frames: FrameIndex | None) -> torch.Tensor:
    """The PSNR of ``(..., n, C)`` predictions in [0, 1] against their targets, as the report measures it, per
    leading index: over all the points, or the mean over frames (``frames``). Left on the device."""
    error = (prediction.double() - target.double()) ** 2
    if frames is not None:
        return frames.psnr(error)
    return -10.0 * torch.log10(error.flatten(-2).mean(-1))


class GridProgress:
    """PSNR on the training and held-out points along the run, measured on the device and left there, on the
    report's definition (a video's is the mean over its frames).

    Nothing of the points' size is held for it beyond the signal's own values (moved to the device once, shared
    with the fit's targets where the fit has them there) and a part's indices where it is not the whole grid:
    each chunk's coordinates are made from its indices (:class:`GridPoints`), its targets mapped to [0, 1] as
    ``unit_values`` maps them, and its squared errors summed in float64 on the device (per frame for a video),
    so recording progress never waits for the GPU nor copies the signal. An amortized implicit fit passes its
    cached states, from which the training points' solves start (a few iterations instead of dozens from zero, to
    the same tolerance). SSIM, the reconstruction and solver statistics are for the final evaluation, which solves
    from zero.
    """

    def __init__(self, signal: GridSignal, device: torch.device, chunk_points: int,
                 values: torch.Tensor | None = None):
        from training.fitting.signal import GridPoints  # (signal.py imports this module)

        self.device, self.chunk_points, self.channels = device, chunk_points, signal.channels
        self.values = signal.values.to(device) if values is None else values  # [-1, 1], (points, C)
        self.points = GridPoints(signal.grid_shape, device)
        self.parts = {}  # key -> (indices on the device or None for every point, count)
        self.frames = {}  # key -> (the frame of a point index, or None; values per frame)
        for key, part in measured_parts(signal).items():
            rows = signal.rows_of(part)
            self.parts[key] = (None if rows is None else rows.to(device), part.count)
            self.frames[key] = self._frame_counts(signal, rows, part.count)

    def _frame_counts(self, signal: GridSignal, rows: torch.Tensor | None, count: int):
        """Where the PSNR is the mean of the frames' (a video): how many values each frame has among the points,
        counted a chunk at a time (frames with none are no frames of theirs); None otherwise."""
        if signal.frames_of(torch.zeros(1, dtype=torch.int64)) is None:
            return None
        counts = torch.zeros(signal.grid_shape[0], dtype=torch.float64)
        if rows is None:  # every point: each frame has all of its own (a frame is a block of the first axis)
            counts += math.prod(signal.grid_shape[1:])
        for start in range(0, 0 if rows is None else count, self.chunk_points):
            index = rows[start:start + self.chunk_points].cpu()
            counts += torch.bincount(signal.frames_of(index), minlength=len(counts)).double()
        present = counts > 0
        return signal.frames_of, (counts[present] * self.channels).to(self.device), present.to(self.device)

    @torch.no_grad()
    def __call__(self, model: nn.Module, train_states: torch.Tensor | None = None) -> dict:
        entry = {"psnr": None, "psnr_holdout": None}
        with eval_mode(model):
            for key, (rows, count) in self.parts.items():
                states = train_states if key == "psnr" else None
                frames = self.frames[key]
                sums = torch.zeros(() if frames is None else len(frames[2]), dtype=torch.float64,
                                   device=self.device)
                for start in range(0, count, self.chunk_points):
                    stop = min(count, start + self.chunk_points)
                    index = torch.arange(start, stop, device=self.device) if rows is None else rows[start:stop]
                    x = self.points(index)
                    predicted = model.forward_with_stats(x)[0] if states is None else \
                        model.forward_with_stats(x, states[start:stop])[0]
                    values = self.values[start:stop] if rows is None else self.values[index]
                    target = (values + 1.0) * 0.5  # as GridSignal.unit_values maps it
                    error = (to_unit_range(predicted).double() - target.double()) ** 2
                    if frames is None:
                        sums += error.sum()
                    else:
                        sums.index_add_(0, frames[0](index), error.sum(-1))
                if frames is None:
                    entry[key] = -10.0 * torch.log10(sums / (count * self.channels))
                else:
                    entry[key] = (-10.0 * torch.log10(sums[frames[2]] / frames[1])).mean()
        return entry


class GroupGridProgress:
    """:class:`GridProgress` for a group of stacked networks fitted to same-shaped grids (see
    :mod:`training.fitting.grouped`): each signal's PSNR on its training (and held-out) points, on the report's
    definition, as ``(G,)`` tensors left on the device. The points are shared; each signal has its own targets.
    Chunks hold ``chunk_points`` points of every signal at once, so pass a single network's chunk divided by the
    group's size."""

    def __init__(self, signals: list[GridSignal], device: torch.device, chunk_points: int):
        self.chunk_points = max(1, chunk_points)
        first = signals[0]
        parts = measured_parts(first)  # (a group's signals share their points: group_key)
        self.coords = {key: first.coordinates(part.index).to(device) for key, part in parts.items()}
        targets = [signal.unit_values() for signal in signals]
        self.targets = {key: torch.stack([target[part.index] for target in targets]).to(device)
                        for key, part in parts.items()}
        self.frames = {key: FrameIndex.of(first, part, device) for key, part in parts.items()}

    @torch.no_grad()
    def __call__(self, network, template: nn.Module, train_states: torch.Tensor | None = None) -> dict:
        """``network(points)`` predicts ``(G, n, C)``; an implicit one also takes states through
        ``forward_with_stats``. ``template`` is the module whose mode the stacked networks follow."""
        entry = {"psnr": None, "psnr_holdout": None}
        with eval_mode(template):
            for key, coords in self.coords.items():
                pieces = []
                for start in range(0, len(coords), self.chunk_points):
                    x = coords[start:start + self.chunk_points]
                    states = None if key != "psnr" or train_states is None else \
                        train_states[:, start:start + self.chunk_points]
                    pieces.append(network(x) if states is None else network.forward_with_stats(x, states)[0])
                entry[key] = _progress_psnr(to_unit_range(torch.cat(pieces, dim=1)), self.targets[key],
                                            self.frames[key])
        return entry


def evaluate_samples(model: nn.Module, signal: ScatteredSamples, device: torch.device, chunk_points: int
                     ) -> SampleEvaluation:
    """IoU of the predicted inside (negative distance, or positive occupancy logit) on each held-out group."""
    from training.geometry import iou  # libigl and scipy load only for the signals that need them

    scores, solves = {}, []
    for name, group in signal.held_out.items():
        predicted, group_solves = predict_points_with_stats(model, group.points, device, chunk_points)
        solves += group_solves
        predicted, truth = predicted[:, 0], group.values[:, 0]
        if signal.loss == "bce":
            scores[name] = iou((predicted > 0).numpy(), (truth > 0.5).numpy())
        else:
            scores[name] = iou((predicted < 0).numpy(), (truth < 0).numpy())
    return SampleEvaluation(iou=scores, solver=summarize_solves(solves))


# The rate of INR compression studies (COIN and its successors): the network stored as 16-bit floats.
STORED_WEIGHTS = torch.float16


def bits_per_point(stored_numbers: int, signal) -> float | None:
    """The network's size in ``STORED_WEIGHTS``, per point of the signal's grid: bits per pixel for an image, per
    sample for audio, per pixel of every frame for a video. ``stored_numbers`` is what its checkpoint stores
    (:func:`models.registry.count_stored_numbers`: the parameters, and an implicit model's spectral-norm vectors u,
    v, which set its function too), exactly the tensors :func:`psnr_with_half_precision_weights` rounds; for
    explicit models that is the parameter count. None for scattered samples (a shape's samples are not its
    resolution)."""
    from training.fitting.signal import GridSignal  # (signal.py imports this module)

    if not isinstance(signal, GridSignal):
        return None
    return torch.finfo(STORED_WEIGHTS).bits * stored_numbers / signal.num_points


@torch.no_grad()
def psnr_with_half_precision_weights(model: nn.Module, signal, device: torch.device, chunk_points: int
                                     ) -> float | None:
    """The PSNR of ``model`` with every stored tensor (weights, persistent buffers such as an implicit model's
    spectral-norm vectors) rounded to ``STORED_WEIGHTS``, computed in float32: the quality at the rate
    :func:`bits_per_point` counts (the same tensors), as INR compression studies (COIN)
    report it. Rendered as the final evaluation is, and measured as the report's PSNR is (``reported_psnr``: a
    video's is the mean over its frames), so the two differ by the rounding alone. None for scattered samples,
    which have no PSNR."""
    from training.fitting.signal import GridSignal  # (signal.py imports this module)

    if not isinstance(signal, GridSignal):
        return None
    rounded = copy.deepcopy(model)
    for tensor in rounded.state_dict().values():  # what a checkpoint stores (not settings such as SIREN's w0)
        if tensor.is_floating_point():
            tensor.copy_(tensor.to(STORED_WEIGHTS))
    if signal.rows_of(signal.train) is not None:  # (a held-out grid: measured on its rendered grid, as before)
        reconstruction, _ = _render_unit(rounded, signal, device, chunk_points)
        return signal.reported_psnr(reconstruction)
    return _reported_psnr_by_bands(rounded, signal, device, chunk_points)


def _reported_psnr_by_bands(model: nn.Module, signal: GridSignal, device: torch.device, chunk_points: int) -> float:
    """``signal.reported_psnr`` of ``model``'s render of the whole grid, measured band by band as the bands are
    rendered (the same bands, so the same values, as :func:`_render_unit`): the final evaluation's render is still
    held, and a second whole one beside it was a photo's size again. Sums per frame where the report's PSNR is
    the mean of the frames' (a band along the first axis is whole frames)."""
    with torch.no_grad():
        count, channels = signal.grid_shape[0], signal.channels
        values = signal.values.reshape(count, -1, channels)
        per_frame = signal.frames_of(torch.zeros(1, dtype=torch.int64)) is not None
        sums: list[tuple[float, int]] = []
        for start, band in _grid_bands(model, signal.grid_shape, channels, device, chunk_points, []):
            band = band.cpu().add_(1.0).mul_(0.5).clamp_(0.0, 1.0)  # as _render_unit maps the render
            if per_frame:
                sums += [squared_error_sum(band[i], values[start + i], target_pm1=True) for i in range(len(band))]
            else:
                sums.append(squared_error_sum(band.reshape(-1, channels),
                                              values[start:start + len(band)].reshape(-1, channels), target_pm1=True))
    if per_frame:
        return video_psnr([psnr_from_sums(total, size) for total, size in sums])
    return psnr_from_sums(math.fsum(total for total, _ in sums), sum(size for _, size in sums))
