"""Mel spectrograms in numpy: a log-frequency picture of a clip, where the loss of high frequencies shows.

The mel scale spaces bands as hearing does (about linear below 1 kHz, logarithmic above), so a spectrogram on it
gives the octaves above 2 kHz the room they deserve instead of most of the picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOOR_DB = 80.0  # levels more than this below the target's loudest are shown as the floor
MAX_FRAMES = 1500  # time columns computed: about the picture's width, however long the clip


def hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(rate: int, n_fft: int, bands: int, low_hz: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(bands, n_fft // 2 + 1) triangular filters evenly spaced in mel from ``low_hz`` to Nyquist, and the
    band edges in Hz (bands + 2 of them). A band narrower than one FFT bin takes its nearest bin, so no band is
    empty at low rates."""
    edges = mel_to_hz(np.linspace(hz_to_mel(low_hz), hz_to_mel(rate / 2), bands + 2))
    bins = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / np.maximum(centre - lower, 1e-12)
    falling = (upper - bins) / np.maximum(upper - centre, 1e-12)
    filters = np.clip(np.minimum(rising, falling), 0.0, None)
    empty = filters.sum(axis=1) == 0
    filters[empty, np.abs(bins[None, :] - edges[1:-1][empty, None]).argmin(axis=1)] = 1.0
    return filters, edges


@dataclass
class MelSpectrogram:
    power: np.ndarray  # (bands, frames) mel-band power
    times: np.ndarray  # (frames,) seconds at each frame's centre
    edges: np.ndarray  # band edges in Hz (bands + 2)


def fft_size(rate: int) -> int:
    """About 46 ms of samples (2048 at 44.1 kHz), a power of two, at least 256. The floor holds at every rate, down
    to 1 Hz (where 46 ms is not even one sample): 256 samples still give the mel bands 129 FFT bins to pool, and
    a clip shorter than that is padded to one frame, so even a tiny-rate clip gets its picture."""
    return 1 << max(8, round(np.log2(rate * 0.046)))


def mel_spectrogram(signal: np.ndarray, rate: int, bands: int = 128, n_fft: int | None = None) -> MelSpectrogram:
    """Hann-windowed power spectra of ``signal`` pooled into mel bands. Frames overlap by three quarters on a
    short clip; on a long one they are spread out so at most :data:`MAX_FRAMES` are computed.

    ``signal`` is a 1-D array, or anything of a length that gives such an array for an array of indices (a
    channel read lazily, :class:`inr_cli.media.audio.Channel`): only the frames' samples are read and made
    float64, never a copy of the whole clip (an hour at 44.1 kHz was 1.3 GB), with the same values as before."""
    n_fft = n_fft or fft_size(rate)
    if isinstance(signal, (list, tuple)):
        signal = np.asarray(signal, dtype=np.float64)
    if len(signal) < n_fft:
        signal = np.pad(np.asarray(signal[np.arange(len(signal))], dtype=np.float64), (0, n_fft - len(signal)))
    hop = max(n_fft // 4, -(-(len(signal) - n_fft) // (MAX_FRAMES - 1)))
    starts = np.arange(0, len(signal) - n_fft + 1, hop)
    samples = np.asarray(signal[starts[:, None] + np.arange(n_fft)[None, :]], dtype=np.float64)
    frames = samples * np.hanning(n_fft)[None, :]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    filters, edges = mel_filterbank(rate, n_fft, min(bands, n_fft // 4))
    return MelSpectrogram(filters @ power.T, (starts + n_fft / 2) / rate, edges)


def decibels(power: np.ndarray, reference: float) -> np.ndarray:
    """Power in dB relative to ``reference``, floored :data:`FLOOR_DB` below it."""
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-30) / max(reference, 1e-30)), -FLOOR_DB)
