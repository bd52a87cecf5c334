"""Reading and writing audio through soundfile (libsndfile: WAV, FLAC, OGG, MP3, ...), and its comparison figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import torch

from inr_cli.files import atomic_write_with, existing_file, first_line
from inr_cli.media.limits import library_warnings_as_notes, refuse_if_over
from inr_core.errors import UserError

# Integer sample formats we write back at the input's depth; anything else is written as 32-bit float WAV.
PCM_SUBTYPES = {"PCM_16", "PCM_24", "PCM_32", "PCM_U8", "PCM_S8"}
DEFAULT_MAX_SECONDS = 600.0  # ten minutes: 115 MB of float samples in stereo at 48 kHz


@dataclass
class LoadedAudio:
    samples: torch.Tensor  # (N, channels) float32 in [-1, 1]
    rate: int
    subtype: str  # the WAV subtype written back: the input's PCM depth, or FLOAT
    notes: list[str] = field(default_factory=list)

    def info(self) -> dict:
        count, channels = self.samples.shape
        return {"kind": "audio", "samples": count, "channels": channels, "rate": self.rate,
                "seconds": count / self.rate, "subtype": self.subtype}


def read_audio(source: str, max_seconds: float = DEFAULT_MAX_SECONDS) -> LoadedAudio:
    """The clip's samples; refused from its header, before reading, when it is longer than ``max_seconds``."""
    path = existing_file(source, "an audio file")
    notes: list[str] = []
    try:
        with library_warnings_as_notes(notes), soundfile.SoundFile(path) as handle:
            subtype, rate, length = handle.subtype, handle.samplerate, handle.frames
            if rate <= 0:
                raise UserError(f"{source}: the header gives a sample rate of {rate} Hz; the file is corrupt")
            refuse_if_over(source, length / rate, max_seconds, "--max-seconds",
                           f"{length / rate:,.1f} s ({length:,} samples at {rate} Hz)", "cut the clip shorter")
            data = handle.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise UserError(f"{source}: unreadable or unsupported audio ({first_line(error)})") from None
    if data.shape[0] == 0:
        raise UserError(f"{source}: the clip has no samples")
    if data.shape[0] == 1:
        raise UserError(f"{source}: the clip has a single sample; nothing to fit")
    if not np.isfinite(data).all():
        raise UserError(f"{source}: the clip contains NaN or infinite samples")
    if not np.any(data):
        raise UserError(f"{source}: the clip is silent (all samples zero); nothing to fit and SNR is undefined")
    if np.abs(data).max() > 1.0:
        notes.append("samples beyond [-1, 1] (a float file) were clipped")
    return LoadedAudio(torch.from_numpy(np.clip(data, -1.0, 1.0)), rate, subtype if subtype in PCM_SUBTYPES else "FLOAT",
                       notes)


def write_wav(path: Path, samples: torch.Tensor, rate: int, subtype: str = "FLOAT") -> None:
    """Write ``(N, channels)`` samples in [-1, 1] as WAV, atomically."""
    data = samples.clamp(-1.0, 1.0).numpy()
    atomic_write_with(path, lambda buf: soundfile.write(buf, data, rate, subtype=subtype, format="WAV"))


def _envelope(signal: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max envelope over ``points`` buckets: a minutes-long clip plots as fast as a short one."""
    count = len(signal)
    if count <= 2 * points:
        index = np.arange(count)
        return index, signal, signal
    edges = np.linspace(0, count, points + 1).astype(int)
    low = np.minimum.reduceat(signal, edges[:-1])
    high = np.maximum.reduceat(signal, edges[:-1])
    return edges[:-1], low, high


def write_audio_comparison(path: Path, target: np.ndarray, reconstruction: np.ndarray, rate: int) -> None:
    """Waveforms (target, reconstruction, error) and spectrograms (target, reconstruction) of the first channel."""
    from inr_cli.figures import new_figure

    target, reconstruction = target[:, 0], reconstruction[:, 0]
    fig = new_figure(figsize=(10, 9), dpi=100)
    axes = fig.subplots(4, 1)
    def draw(ax, wave, **style):
        index, low, high = _envelope(wave, 4000)
        ax.fill_between(index / rate, low, high, lw=0, **style)
        ax.plot(index / rate, high, lw=0.4, **style)
        ax.plot(index / rate, low, lw=0.4, **style)

    for ax, (label, wave) in zip(axes[:2], (("target", target), ("reconstruction", reconstruction))):
        draw(ax, wave, color="tab:blue")
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(label)
    draw(axes[1], reconstruction - target, color="tab:red", alpha=0.7)
    axes[1].set_title("reconstruction (blue) and its error (red)", fontsize=9)
    nfft = 512 if rate >= 8000 else 128
    for ax, (label, wave) in zip(axes[2:], (("target", target), ("reconstruction", reconstruction))):
        ax.specgram(wave.astype(np.float64), NFFT=min(nfft, len(wave)), Fs=rate, noverlap=min(nfft, len(wave)) // 2,
                    cmap="magma")
        ax.set_ylabel(f"{label}\nHz")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    atomic_write_with(path, lambda buf: fig.savefig(buf, format="png"))
