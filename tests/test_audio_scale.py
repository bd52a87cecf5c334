"""Audio's outputs at real sizes: the WAV written a piece at a time, and the comparison figure read from the clip a
piece (and a few thousand frames) at a time, with the same file bytes and the same picture as from the whole clip.
The pieces are forced small through the module constants, so a clip of a few thousand samples makes many."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import inr_cli.figures.spectra as spectra
import inr_cli.media.audio as audio
from inr_cli.media.audio import Channel, audio_comparison_figure, write_wav
from inr_core.errors import UserError

RATE = 8000


def clip(frames: int, channels: int = 2, low: float = -1.2, high: float = 1.2, seed: int = 0) -> torch.Tensor:
    """Noise over a tone, beyond [-1, 1] at times (the writer clamps): ``(frames, channels)`` float32."""
    rng = np.random.default_rng(seed)
    tone = np.sin(2 * np.pi * 440 * np.arange(frames) / RATE)[:, None]
    values = (low + high) / 2 + (high - low) / 2 * (0.7 * tone + 0.3 * rng.uniform(-1, 1, (frames, channels)))
    return torch.from_numpy(values.astype(np.float32))


def whole_clip_bytes(samples: torch.Tensor, subtype: str, gain: float) -> bytes:
    """The file as the writer made it before it wrote in pieces: the whole clip clamped, scaled and encoded in
    memory in one call."""
    buffer = io.BytesIO()
    soundfile.write(buffer, (samples.clamp(-1.0, 1.0) * gain).numpy(), RATE, subtype=subtype, format="WAV")
    return buffer.getvalue()


def record_writes(monkeypatch) -> list[int]:
    """The number of frames of each piece handed to libsndfile."""
    sizes, real_write = [], soundfile.SoundFile.write

    def write(self, data):
        sizes.append(len(data))
        return real_write(self, data)

    monkeypatch.setattr(soundfile.SoundFile, "write", write)
    return sizes


@pytest.mark.parametrize("subtype,gain", [("PCM_16", 1.0), ("PCM_24", 1.0), ("PCM_U8", 1.0), ("FLOAT", 1.0),
                                          ("FLOAT", 2.5)])
def test_the_wav_is_written_in_pieces_with_the_bytes_of_the_whole_clip(tmp_path, monkeypatch, subtype, gain):
    """write_wav encoded the whole clip into memory (and a clamped, scaled copy of it) before writing the file: an
    hour of stereo held 1.3 GB a copy."""
    monkeypatch.setattr(audio, "WAV_CHUNK_FRAMES", 1000, raising=False)
    samples = clip(10_007, channels=3)
    expected = whole_clip_bytes(samples, subtype, gain)
    sizes = record_writes(monkeypatch)
    write_wav(tmp_path / "out.wav", samples, RATE, subtype, gain)
    assert (tmp_path / "out.wav").read_bytes() == expected
    assert len(sizes) == 11 and max(sizes) == 1000 and sum(sizes) == 10_007
    assert os.listdir(tmp_path) == ["out.wav"]


def test_a_render_in_0_1_is_mapped_a_piece_at_a_time_as_the_whole_was(tmp_path, monkeypatch):
    """unit=True: the render in [0, 1] is written as to_samples (x * 2 - 1) of the whole render was, with no
    [-1, 1] copy of it."""
    from inr_cli.modalities.audio import to_samples

    monkeypatch.setattr(audio, "WAV_CHUNK_FRAMES", 333, raising=False)
    unit = clip(5000, low=-0.1, high=1.1, seed=1)
    for subtype in ("PCM_16", "FLOAT"):
        write_wav(tmp_path / "out.wav", unit, RATE, subtype, 1.5, unit=True)
        assert (tmp_path / "out.wav").read_bytes() == whole_clip_bytes(to_samples(unit), subtype, 1.5)


@pytest.mark.parametrize("existing", [False, True])
def test_a_failure_half_way_leaves_no_partial_file_and_no_temporary(tmp_path, monkeypatch, existing):
    """An error (an interrupt, a failing library) after some pieces are in the file: the temporary file goes, and a
    file of that name from before is left as it was."""
    monkeypatch.setattr(audio, "WAV_CHUNK_FRAMES", 100, raising=False)
    real_write, calls = soundfile.SoundFile.write, []

    def write(self, data):
        calls.append(len(data))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(self, data)

    monkeypatch.setattr(soundfile.SoundFile, "write", write)
    path = tmp_path / "out.wav"
    if existing:
        path.write_bytes(b"the earlier file")
    with pytest.raises(KeyboardInterrupt):
        write_wav(path, clip(1000), RATE, "PCM_16")
    assert calls == [100, 100, 100]
    assert os.listdir(tmp_path) == (["out.wav"] if existing else [])
    if existing:
        assert path.read_bytes() == b"the earlier file"


def test_a_full_disk_half_way_is_the_one_line_write_error(tmp_path, monkeypatch):
    """libsndfile only sees a short write (soundfile then fails an assert): the disk's own error is what is said,
    in the one line every output gives, and nothing is left."""
    monkeypatch.setattr(audio, "WAV_CHUNK_FRAMES", 100, raising=False)
    real_write, written = os.write, []

    def write(fd, data):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if Path(name).name.startswith(".out.wav.") and name.endswith(".tmp"):
            written.append(len(data))
            if sum(written) > 1000:  # the header and a few pieces fit; then the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(UserError) as info:
        write_wav(tmp_path / "out.wav", clip(1000), RATE, "PCM_16")
    assert str(info.value) == f"{tmp_path / 'out.wav'}: cannot write: {os.strerror(errno.ENOSPC)}"
    assert os.listdir(tmp_path) == []


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


def test_the_snr_is_summed_once_for_the_caption_and_the_report(tmp_path, monkeypatch):
    """write_outputs takes the metrics for its caption and the report takes them again: the second SNR summed the
    whole clip once more (5 s for an hour of stereo). A new render is measured afresh."""
    from types import SimpleNamespace

    import inr_cli.modalities.audio as modality
    from training.fitting.evaluate import GridEvaluation

    samples = clip(4000, low=-0.9, high=0.9)
    soundfile.write(tmp_path / "in.wav", samples.numpy(), RATE, subtype="FLOAT")
    loaded = modality.AUDIO.load(str(tmp_path / "in.wav"), modality.AudioOptions(), 0)
    sums, real_snr = [], modality.snr
    monkeypatch.setattr(modality, "snr", lambda *args, **kwargs: sums.append(1) or real_snr(*args, **kwargs))

    def result(render):
        return SimpleNamespace(final=GridEvaluation(reconstruction=render, psnr=20.0, ssim=None))

    first = result((samples * 0.4 + 0.5).clamp(0, 1))
    values = [modality.AUDIO.metrics(loaded, first)["snr"] for _ in range(3)]
    assert len(sums) == 1 and values[0] == values[1] == values[2]
    assert values[0] == real_snr(first.final.reconstruction, loaded.audio.samples, prediction_unit=True)
    other = modality.AUDIO.metrics(loaded, result((samples * 0.3 + 0.5).clamp(0, 1)))["snr"]
    assert len(sums) == 2 and other != values[0]


@pytest.mark.parametrize("peak", [0.9, 2.5])  # PCM-like, and a float file scaled down by its peak
def test_reading_a_clip_holds_it_once(tmp_path, peak):
    """The checks and the scaling worked on whole-clip copies: the absolute values for the peak, a finiteness
    mask, the scaled samples and a clipped copy, an hour of stereo (1.27 GB) up to three times at once."""
    import tracemalloc

    rng = np.random.default_rng(8)
    samples = (rng.uniform(-1, 1, (200_000, 2)) * peak).astype(np.float32)
    soundfile.write(tmp_path / "clip.wav", samples, 44100, subtype="FLOAT")
    tracemalloc.start()
    try:
        loaded = audio.read_audio(str(tmp_path / "clip.wav"))
        _, most = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert most < 1.2 * samples.nbytes  # numpy reports its arrays to tracemalloc
    assert loaded.gain == (float(np.abs(samples).max()) if peak > 1 else 1.0)
    # The values of scaling and clipping a copy, as before.
    np.testing.assert_array_equal(loaded.samples.numpy(), np.clip(samples / np.float32(loaded.gain), -1, 1))


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_clip_with_an_infinite_or_nan_sample_is_refused(tmp_path, bad):
    samples = np.full((100, 1), 0.25, np.float32)
    samples[37] = bad
    soundfile.write(tmp_path / "bad.wav", samples, 8000, subtype="FLOAT")
    with pytest.raises(UserError, match="NaN or infinite"):
        audio.read_audio(str(tmp_path / "bad.wav"))
