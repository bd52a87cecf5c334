"""Memory per point of fitting and evaluating: metrics accumulated in pieces equal the whole computation, and no
whole-signal float64 copy (or second copy of the values) is made on the way."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from torch.utils._python_dispatch import TorchDispatchMode

import training.metrics as metrics
from training.fitting.evaluate import evaluate_grid
from training.fitting.signal import image_signal


class TensorLog(TorchDispatchMode):
    """The storages that operations make (not those of views and in-place results, which are their inputs'), by
    dtype, with their sizes in elements: what a whole-size copy would show."""

    def __init__(self):
        super().__init__()
        self.storages: dict[torch.dtype, dict[int, int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {arg.untyped_storage().data_ptr() for arg in [*args, *(kwargs or {}).values()]
                  if isinstance(arg, torch.Tensor)}
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() not in inputs:
                storage = tensor.untyped_storage()
                self.storages.setdefault(tensor.dtype, {})[storage.data_ptr()] = \
                    storage.nbytes() // tensor.element_size()
        return out

    def sizes(self, dtype: torch.dtype) -> list[int]:
        return list(self.storages.get(dtype, {}).values())

    def largest(self, dtype: torch.dtype) -> int:
        return max(self.sizes(dtype), default=0)


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of a few values, so even tiny test inputs are measured in many of them."""
    monkeypatch.setattr(metrics, "METRIC_CHUNK_VALUES", 7)
    monkeypatch.setattr(metrics, "SSIM_TILE_VALUES", 40)


def _skimage_ssim(prediction: torch.Tensor, target: torch.Tensor) -> float:
    height, width = target.shape[:2]
    win = min(7, height, width)
    win -= 1 - win % 2
    return float(structural_similarity(target.numpy().astype(np.float64),
                                       prediction.clamp(0, 1).numpy().astype(np.float64),
                                       data_range=1.0, channel_axis=-1, win_size=win))


@pytest.mark.parametrize("shape", [(40, 33, 3), (9, 50, 1), (3, 3, 1), (5, 8, 2), (100, 7, 4)])
@pytest.mark.parametrize("tile", [1, 7, 40, 1 << 20])
def test_ssim_in_bands_equals_whole_image(shape, tile, monkeypatch):
    monkeypatch.setattr(metrics, "SSIM_TILE_VALUES", tile)
    generator = torch.Generator().manual_seed(sum(shape))
    target = torch.rand(*shape, generator=generator)
    prediction = target + 0.2 * torch.randn(*shape, generator=generator)  # partly outside [0, 1]: clamped
    whole = _skimage_ssim(prediction, target)
    assert metrics.ssim(prediction, target) == pytest.approx(whole, abs=1e-12)
    assert metrics.ssim(prediction, target * 2 - 1, target_pm1=True) == pytest.approx(whole, abs=1e-12)


def test_ssim_holds_one_band_in_float64(monkeypatch):
    """The float64 arrays SSIM makes (numpy's allocations, which tracemalloc sees) are a band's, not the image's."""
    target = torch.rand(256, 256, 3, generator=torch.Generator().manual_seed(0))
    prediction = (target + 0.05).clamp(0, 1)
    whole_float64 = target.numel() * 8
    monkeypatch.setattr(metrics, "SSIM_TILE_VALUES", 16 * 256 * 3)
    metrics.ssim(prediction, target)  # (scipy and skimage loaded before measuring)
    tracemalloc.start()
    metrics.ssim(prediction, target)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < whole_float64 / 2, peak


def test_psnr_and_snr_in_pieces_equal_whole(small_pieces):
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(101, 3, generator=generator)
    prediction = target + 0.1 * torch.randn(101, 3, generator=generator)
    index = torch.randperm(101, generator=generator)[:37]
    assert metrics.psnr_in_chunks(prediction, target) == pytest.approx(metrics.psnr(prediction, target), abs=1e-12)
    assert metrics.psnr_in_chunks(prediction, target * 2 - 1, index, target_pm1=True) == \
        pytest.approx(metrics.psnr(prediction[index], target[index]), abs=1e-12)
    assert metrics.psnr_in_chunks(target, target) == math.inf
    noise = torch.sum((prediction.double() - target.double()) ** 2)
    expected = 10 * math.log10(torch.sum(target.double() ** 2) / noise)
    assert metrics.snr(prediction, target) == pytest.approx(expected, abs=1e-12)
    assert metrics.snr((prediction + 1) / 2, target, prediction_unit=True) == pytest.approx(expected, abs=1e-5)


class Offset(torch.nn.Module):
    """A 'network' that predicts a fixed smooth function of its coordinates: what evaluations measure needs none."""

    def forward_with_stats(self, coords: torch.Tensor):
        return torch.sin(3 * coords.sum(-1, keepdim=True)).expand(-1, 3) * 0.9, None


def _reference(signal, reconstruction: torch.Tensor, part) -> tuple[float, float]:
    """PSNR and SSIM of ``part`` as they were computed before pieces: whole-image copies."""
    target = signal.unit_values()[part.index]
    flat = reconstruction.reshape(-1, signal.channels)[part.index]
    return metrics.psnr(flat, target), _skimage_ssim(flat.reshape(*part.shape, -1), target.reshape(*part.shape, -1))


@pytest.mark.parametrize("holdout", ["none", "grid"])
def test_grid_evaluation_in_pieces_equals_whole(holdout, small_pieces):
    pixels = torch.rand(30, 26, 3, generator=torch.Generator().manual_seed(2))
    signal = image_signal(pixels, holdout=holdout)
    result = evaluate_grid(Offset(), signal, torch.device("cpu"), 50)
    psnr, ssim = _reference(signal, result.reconstruction, signal.train)
    assert result.psnr == pytest.approx(psnr, abs=1e-10)
    assert result.ssim == pytest.approx(ssim, abs=1e-12)
    if holdout == "grid":
        psnr, ssim = _reference(signal, result.reconstruction, signal.holdout)
        assert result.psnr_holdout == pytest.approx(psnr, abs=1e-10)
        assert result.ssim_holdout == pytest.approx(ssim, abs=1e-12)


def test_grid_evaluation_makes_no_whole_image_copies(small_pieces):
    """The final evaluation of a photo: one float32 render (turned into [0, 1] in place), no float64 tensor larger
    than a piece, and no second float32 copy of the image (the target is read where it is held)."""
    pixels = torch.rand(64, 48, 3, generator=torch.Generator().manual_seed(3))
    signal = image_signal(pixels)
    values = pixels.numel()
    with TensorLog() as log:
        evaluate_grid(Offset(), signal, torch.device("cpu"), 64)
    assert log.largest(torch.float64) <= 7
    whole_float32 = [n for n in log.sizes(torch.float32) if n >= values]
    assert len(whole_float32) == 1, whole_float32


def _tones(samples: int, cycles: list[float], channels: int = 2) -> torch.Tensor:
    t = torch.arange(samples, dtype=torch.float64) / samples
    clip = sum(torch.sin(2 * math.pi * k * t + k) / (1 + i) for i, k in enumerate(cycles))
    return torch.stack([clip * (0.5 + 0.2 * c) for c in range(channels)], dim=1).float()


def test_spectrum_in_segments_finds_the_whole_clips_bandwidth(monkeypatch):
    """Welch's mean over segments puts 99% of the energy where the whole clip's FFT does, to a segment's bin; a
    clip no longer than a segment is measured whole, as before."""
    from training.fitting import recipes

    clip = _tones(1 << 16, [300, 2000, 5100])
    whole = recipes.cycles_holding_energy(clip)
    assert whole == pytest.approx(5101, abs=1)
    monkeypatch.setattr(recipes, "SPECTRUM_SEGMENT", 1 << 12)  # 16 whole-clip cycles a bin
    with TensorLog() as log:
        segmented = recipes.cycles_holding_energy(clip)
    assert segmented == pytest.approx(whole, abs=16)
    assert max(log.largest(torch.float64), log.largest(torch.complex128)) <= 2 * (1 << 12)
    monkeypatch.setattr(recipes, "SPECTRUM_SEGMENT", 1 << 16)
    assert recipes.cycles_holding_energy(clip) == whole


def test_audio_recipe_skips_the_spectrum_when_frequency_is_given(monkeypatch):
    from inr_cli.modalities.audio import AUDIO
    from training.fitting import recipes
    from training.fitting.config import FitConfig, resolve_config
    from training.fitting.signal import audio_signal

    calls = []
    monkeypatch.setattr(recipes, "cycles_holding_energy", lambda values: calls.append(1) or 10.0)
    signal = audio_signal(_tones(4000, [37]))
    given = resolve_config(FitConfig(model="siren", frequency=12.5, steps=1), signal, AUDIO.recipe)
    assert given.frequency == 12.5 and calls == []
    measured = resolve_config(FitConfig(model="siren", steps=1), signal, AUDIO.recipe)
    assert measured.frequency == pytest.approx(0.25 * math.pi * 10.0) and calls == [1]


def test_a_grid_fit_holds_no_per_point_copies(monkeypatch):
    """A minibatch fit of a whole grid: no int64 tensor a point (arange, randperm), no coordinate grid, no copy of
    the targets, no whole-size tensor for progress; the only float32 tensor as large as the signal is the final
    render (its fp16-weights twin is measured band by band), and the permutation is int32."""
    from training.fitting import fit as fitting
    from training.fitting.config import FitConfig
    from training.fitting.signal import video_signal

    monkeypatch.setattr(fitting, "render_chunk_size", lambda *args: 128)  # evaluations in many chunks
    frames = torch.rand(4, 32, 40, 1, generator=torch.Generator().manual_seed(4))
    signal = video_signal(frames)
    points = frames.numel()
    config = FitConfig(model="siren", hidden=8, layers=1, steps=6, batch_size=128, eval_every=2, lr=1e-3,
                       frequency=30.0, device="cpu", compile=False)
    with TensorLog() as log:
        result = fitting.fit(signal, config)
    assert log.largest(torch.int64) < points
    assert log.largest(torch.float64) < points
    assert [n for n in log.sizes(torch.float32) if n >= points] == [points]
    assert math.isfinite(result.final.psnr) and len(result.evaluations) == 3



def test_a_clip_s_long_axis_is_made_once_for_its_whole_fit(monkeypatch):
    """An audio clip's grid has one axis as long as the clip (4 bytes a sample: 635 MB for an hour of 44.1 kHz).
    The batches' coordinates, every progress measurement, the final render and its fp16-weights twin share one;
    each made its own, three of them at once at the end of a fit."""
    from training.fitting import fit as fitting
    from training.fitting.config import FitConfig
    from training.fitting.signal import audio_signal

    samples = 3000
    made = []
    real_linspace = torch.linspace

    def counted(start, end, steps, **kwargs):
        made.append(steps)
        return real_linspace(start, end, steps, **kwargs)

    monkeypatch.setattr(torch, "linspace", counted)
    monkeypatch.setattr(fitting, "render_chunk_size", lambda *args: 256)  # evaluations in many chunks
    signal = audio_signal(torch.rand(samples, 2, generator=torch.Generator().manual_seed(6)) * 2 - 1)
    config = FitConfig(model="siren", hidden=8, layers=1, steps=6, batch_size=500, eval_every=2, lr=1e-3,
                       frequency=30.0, device="cpu", compile=False)
    result = fitting.fit(signal, config)
    assert math.isfinite(result.final.psnr) and len(result.evaluations) == 3
    assert made.count(samples) == 1


@pytest.mark.parametrize("points", [1, 10, 1000, 300_001])
def test_the_epoch_order_is_int32_and_the_same_permutation(points):
    """BatchSampler draws the permutation in int32 (4 bytes a point instead of 8): torch gives the same one as in
    int64 from the same generator, so the batches, and every fit, stay as they were."""
    from training.fitting.fit import BatchSampler

    sampler = BatchSampler(points, max(1, points // 3), torch.device("cpu"), torch.Generator().manual_seed(7))
    batch = sampler.next()
    expected = torch.randperm(points, generator=torch.Generator().manual_seed(7))
    assert sampler._order.dtype == torch.int32 and batch.dtype == torch.int64
    assert torch.equal(sampler._order.long(), expected) and torch.equal(batch, expected[:len(batch)])

def test_video_metrics_in_pieces_equal_the_whole_clips(small_pieces):
    from types import SimpleNamespace

    from inr_cli.modalities.video import VIDEO
    from training.fitting.signal import video_signal

    generator = torch.Generator().manual_seed(5)
    frames = torch.rand(3, 6, 5, 3, generator=generator)
    signal = video_signal(frames)
    reconstruction = (frames + 0.1 * torch.randn(frames.shape, generator=generator)).clamp(0, 1)
    result = SimpleNamespace(final=SimpleNamespace(reconstruction=reconstruction))
    with TensorLog() as log:
        measured = VIDEO.metrics(SimpleNamespace(signal=signal), result)
    target = signal.unit_grid()
    expected = metrics.psnr_per_frame(reconstruction, target)
    assert measured["psnr_frames"] == pytest.approx(expected, abs=1e-10)
    assert measured["psnr"] == pytest.approx(metrics.video_psnr(expected), abs=1e-10)
    assert measured["psnr_whole_clip"] == pytest.approx(metrics.psnr(reconstruction, target), abs=1e-10)
    assert measured["psnr"] == signal.reported_psnr(reconstruction)  # the final evaluation's, bit for bit
    assert log.largest(torch.float64) <= 7 and log.largest(torch.float32) <= 7


def test_video_frames_become_8_bit_a_frame_at_a_time():
    from inr_cli.media.video import _uint8_frame

    for channels in (1, 3):
        frames = torch.rand(3, 5, 7, channels, generator=torch.Generator().manual_seed(channels)) * 1.2 - 0.1
        whole = np.rint(frames.clamp(0, 1).numpy() * 255.0).astype(np.uint8)
        with TensorLog() as log:
            converted = np.stack([_uint8_frame(frames[index]) for index in range(len(frames))])
        assert np.array_equal(converted, np.repeat(whole, 3, axis=3) if channels == 1 else whole)
        assert log.largest(torch.float32) <= 5 * 7 * channels  # one frame's clamp, not the clip's


def test_audio_samples_in_range_are_the_signals_values():
    from training.fitting.signal import audio_signal

    samples = torch.rand(100, 2) * 2 - 1
    assert audio_signal(samples).values.data_ptr() == samples.data_ptr()  # no second copy of the clip
    loud = samples * 1.5
    values = audio_signal(loud).values
    assert values.data_ptr() != loud.data_ptr() and torch.equal(values, loud.clamp(-1, 1))


@pytest.mark.parametrize("kind", ["image", "video", "audio"])
def test_fp16_weights_psnr_by_bands_equals_the_whole_render(kind, small_pieces):
    """psnr_with_half_precision_weights measures band by band as it renders: the same PSNR as rendering the whole
    grid and measuring it (summation order apart), with no second whole-size float32 render."""
    from training.fitting.evaluate import _render_unit, psnr_with_half_precision_weights
    from training.fitting.signal import audio_signal, video_signal

    generator = torch.Generator().manual_seed(6)
    signal = {"image": lambda: image_signal(torch.rand(30, 26, 3, generator=generator)),
              "video": lambda: video_signal(torch.rand(4, 6, 5, 3, generator=generator)),
              "audio": lambda: audio_signal(torch.rand(300, 3, generator=generator) * 2 - 1)}[kind]()
    expected = signal.reported_psnr(_render_unit(Offset(), signal, torch.device("cpu"), 40)[0])
    with TensorLog() as log:
        measured = psnr_with_half_precision_weights(Offset(), signal, torch.device("cpu"), 40)
    assert measured == pytest.approx(expected, abs=1e-10)
    assert log.largest(torch.float32) < signal.values.numel()
