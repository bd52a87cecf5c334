"""Audio's outputs at real sizes: the comparison figure read from the clip a piece (and a few thousand frames) at a
time, with the same picture as from the whole clip.
The pieces are forced small through the module constants, so a clip of a few thousand samples makes many."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import inr_cli.figures.spectra as spectra
import inr_cli.media.audio as audio
from inr_cli.media.audio import Channel, audio_comparison_figure

RATE = 8000


def clip(frames: int, channels: int = 2, low: float = -1.2, high: float = 1.2, seed: int = 0) -> torch.Tensor:
    """Noise over a tone, beyond [-1, 1] at times (the writer clamps): ``(frames, channels)`` float32."""
    rng = np.random.default_rng(seed)
    tone = np.sin(2 * np.pi * 440 * np.arange(frames) / RATE)[:, None]
    values = (low + high) / 2 + (high - low) / 2 * (0.7 * tone + 0.3 * rng.uniform(-1, 1, (frames, channels)))
    return torch.from_numpy(values.astype(np.float32))


class Reads:
    """A channel that remembers how many samples each read of it took."""

    def __init__(self, channel) -> None:
        self.channel, self.sizes = channel, []

    def __len__(self) -> int:
        return len(self.channel)

    def __getitem__(self, index):
        piece = self.channel[index]
        self.sizes.append(np.size(piece))
        return piece


@pytest.mark.parametrize("frames", [3000, 40_000])
def test_the_envelope_read_in_pieces_is_the_whole_clips(monkeypatch, frames):
    monkeypatch.setattr(audio, "ENVELOPE_CHUNK", 64, raising=False)
    wave = clip(frames, channels=1).numpy()[:, 0]
    reads = Reads(wave)
    index, low, high = audio._envelope(reads, 500)
    if frames <= 1000:
        assert low is high and np.array_equal(low, wave)
        return
    edges = np.linspace(0, frames, 501).astype(int)
    assert np.array_equal(index, edges[:-1])
    assert np.array_equal(low, np.minimum.reduceat(wave, edges[:-1]))
    assert np.array_equal(high, np.maximum.reduceat(wave, edges[:-1]))
    assert max(reads.sizes) <= 64 + 2 * frames // 500  # a piece of whole buckets, about ENVELOPE_CHUNK samples


def test_a_spectrogram_reads_only_its_frames_and_equals_the_whole_clips(monkeypatch):
    """mel_spectrogram made a float64 copy of the whole channel (an hour at 44.1 kHz: 1.3 GB) to take at most
    MAX_FRAMES frames of it."""
    monkeypatch.setattr(spectra, "MAX_FRAMES", 20)
    wave = clip(200_000, channels=1).numpy()
    whole = spectra.mel_spectrogram(wave[:, 0], RATE)
    reads = Reads(Channel(wave))
    lazy = spectra.mel_spectrogram(reads, RATE)
    assert np.array_equal(whole.power, lazy.power) and np.array_equal(whole.times, lazy.times)
    assert len(lazy.times) <= 20 and reads.sizes == [len(lazy.times) * spectra.fft_size(RATE)]  # its frames, once


def test_a_short_clips_spectrogram_is_padded_as_before():
    wave = clip(100, channels=1).numpy()
    whole = spectra.mel_spectrogram(wave[:, 0], RATE)
    assert np.array_equal(whole.power, spectra.mel_spectrogram(Channel(wave), RATE).power)
    assert np.array_equal(whole.power, spectra.mel_spectrogram(wave[:, 0].tolist(), RATE).power)


def pixels(figure) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def test_the_comparison_from_channels_read_in_pieces_is_the_same_picture(monkeypatch):
    """The figure of a long clip took whole-clip copies: the target and reconstruction times the gain, their
    difference, and a float64 copy of each for its spectrogram. Read through Channels (scaled where read), in
    pieces of 1,000 samples, it is the same picture as from the whole scaled arrays, and no read is of the clip's
    size."""
    monkeypatch.setattr(audio, "ENVELOPE_CHUNK", 1000, raising=False)
    monkeypatch.setattr(spectra, "MAX_FRAMES", 50)  # a spectrogram's frames, fewer samples than the clip here
    gain, frames = 1.7, 60_000
    target = clip(frames, low=-1.0, high=1.0, seed=2)
    unit = (target * 0.5 + 0.5) * 0.9 + 0.03  # a render in [0, 1], not quite the target
    caption = ["caption line"]
    whole = audio_comparison_figure(target.numpy() * gain, (unit * 2.0 - 1.0).numpy() * gain, RATE, caption)
    reads = [Reads(Channel(target.numpy(), lambda piece: piece * gain)),
             Reads(Channel(unit.numpy(), lambda piece: (torch.from_numpy(piece) * 2.0 - 1.0).numpy() * gain))]
    lazy = audio_comparison_figure(*reads, RATE, caption)
    assert np.array_equal(pixels(whole), pixels(lazy))
    sizes = reads[0].sizes + reads[1].sizes
    assert sizes and max(sizes) < frames // 2
