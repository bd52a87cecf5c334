"""The Signal a fit works on: coordinates in [-1, 1], target values in [-1, 1], grid shape, train/holdout split."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def grid_axes(shape: tuple[int, ...], device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Per-axis coordinates of a regular grid: ``linspace(-1, 1, n)`` on each axis (a single sample sits at 0)."""
    return [torch.linspace(-1.0, 1.0, n, device=device) if n > 1 else torch.zeros(1, device=device) for n in shape]


def grid_coordinates(shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """All points of the grid, row-major, as an ``(prod(shape), len(shape))`` tensor."""
    mesh = torch.meshgrid(*grid_axes(shape, device), indexing="ij")
    return torch.stack(mesh, dim=-1).reshape(-1, len(shape))


@dataclass
class Signal:
    """A sampled signal on a regular grid.

    ``values`` holds every grid point (row-major), scaled to [-1, 1]; ``train_index`` and ``holdout_index``
    select the points used for training and for measuring generalization (``holdout_index`` may be empty).
    """

    values: torch.Tensor  # (N, channels), float32, in [-1, 1]
    grid_shape: tuple[int, ...]
    train_index: torch.Tensor  # (n_train,) int64
    holdout_index: torch.Tensor  # (n_holdout,) int64
    # Shapes of the train / holdout points when they form sub-grids (for windowed metrics such as SSIM).
    train_grid_shape: tuple[int, ...] | None = None
    holdout_grid_shape: tuple[int, ...] | None = None
    kind: str = "image"  # which recipe applies: "image", "audio", "video" or "shape"
    # Scattered signals (3D shapes) carry their own coordinates instead of a grid, a loss other than MSE
    # ("bce": occupancy logits), and named groups of held-out points to measure separately.
    points: torch.Tensor | None = None
    loss: str = "mse"
    holdout_groups: dict[str, torch.Tensor] | None = None

    @property
    def channels(self) -> int:
        return self.values.shape[1]

    @property
    def dims(self) -> int:
        return self.points.shape[1] if self.points is not None else len(self.grid_shape)

    @property
    def num_points(self) -> int:
        return self.values.shape[0]

    def coordinates(self, index: torch.Tensor | None = None) -> torch.Tensor:
        coords = self.points if self.points is not None else grid_coordinates(self.grid_shape)
        return coords if index is None else coords[index]


HOLDOUT_MODES = ("none", "grid")


def image_signal(pixels: torch.Tensor, holdout: str = "none") -> Signal:
    """Build a Signal from an ``(H, W, C)`` image with values in [0, 1].

    ``holdout="grid"`` is the generalization split of the implicit-layer paper: train on pixels
    ``[::2, ::2]``, hold out ``[1::2, 1::2]`` (a quarter of the image each; the rest is unused).
    """
    if holdout not in HOLDOUT_MODES:
        raise ValueError(f"unknown holdout mode {holdout!r}; choose one of: {', '.join(HOLDOUT_MODES)}")
    height, width, channels = pixels.shape
    values = (pixels.reshape(-1, channels).float() * 2.0 - 1.0).contiguous()
    flat = torch.arange(height * width).reshape(height, width)
    if holdout == "grid":
        if height < 2 or width < 2:
            raise ValueError(f"--holdout grid needs an image of at least 2x2 pixels, got {width}x{height}")
        train, held = flat[::2, ::2], flat[1::2, 1::2]
        return Signal(values, (height, width), train.reshape(-1), held.reshape(-1),
                      tuple(train.shape), tuple(held.shape))
    return Signal(values, (height, width), flat.reshape(-1), torch.empty(0, dtype=torch.int64), (height, width), None)


def audio_signal(samples: torch.Tensor) -> Signal:
    """Build a Signal from ``(N, channels)`` samples in [-1, 1]: time runs over [-1, 1], every sample trains."""
    if samples.ndim != 2 or samples.shape[0] < 2:
        raise ValueError(f"audio needs at least 2 samples, got shape {tuple(samples.shape)}")
    count = samples.shape[0]
    values = samples.float().clamp(-1.0, 1.0).contiguous()
    return Signal(values, (count,), torch.arange(count), torch.empty(0, dtype=torch.int64), None, None, kind="audio")


def video_signal(frames: torch.Tensor) -> Signal:
    """Build a Signal from ``(T, H, W, C)`` frames in [0, 1]: coordinates (t, y, x), every point trains."""
    count, height, width, channels = frames.shape
    values = (frames.reshape(-1, channels).float() * 2.0 - 1.0).contiguous()
    return Signal(values, (count, height, width), torch.arange(values.shape[0]), torch.empty(0, dtype=torch.int64),
                  None, None, kind="video")


def shape_signal(train_points: torch.Tensor, train_values: torch.Tensor, holdout: dict[str, tuple[torch.Tensor,
                 torch.Tensor]], loss: str) -> Signal:
    """A 3D shape as scattered samples: training points with their targets, and named held-out sets
    (e.g. uniform and near-surface points) whose values are the true signed distances or occupancies."""
    points = [train_points] + [p for p, _ in holdout.values()]
    values = [train_values] + [v for _, v in holdout.values()]
    n_train = len(train_points)
    groups, start = {}, n_train
    for name, (group_points, _) in holdout.items():
        groups[name] = torch.arange(start, start + len(group_points))
        start += len(group_points)
    return Signal(torch.cat(values).float(), (start,), torch.arange(n_train), torch.arange(n_train, start),
                  kind="shape", points=torch.cat(points).float(), loss=loss, holdout_groups=groups)
