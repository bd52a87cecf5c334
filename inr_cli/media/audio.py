"""Reading and writing audio through soundfile (libsndfile: WAV, FLAC, OGG, MP3, ...), and its comparison figure
(waveform, mel spectrograms, spectral error)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile
import torch

from inr_cli.files import atomic_output_path, atomic_write_with, existing_file, first_line
from inr_cli.media.limits import library_warnings_as_notes, refuse_if_over, split_span
from inr_core.errors import UserError, check

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Integer sample formats we write back at the input's depth; anything else is written as 32-bit float WAV.
PCM_SUBTYPES = {"PCM_16", "PCM_24", "PCM_32", "PCM_U8", "PCM_S8"}
DEFAULT_MAX_SECONDS = 600.0  # ten minutes: 115 MB of float samples in stereo at 48 kHz


@dataclass
class LoadedAudio:
    samples: torch.Tensor  # (N, channels) float32 in [-1, 1]: the file's samples divided by ``gain``
    rate: int
    subtype: str  # the WAV subtype written back: the input's PCM depth, or FLOAT
    notes: list[str] = field(default_factory=list)
    # The file's peak where a float file goes beyond [-1, 1] (its samples are fitted divided by it and written
    # back multiplied by it, so nothing is clipped); 1 otherwise.
    gain: float = 1.0

    def info(self) -> dict:
        count, channels = self.samples.shape
        return {"kind": "audio", "samples": count, "channels": channels, "rate": self.rate,
                "seconds": count / self.rate, "subtype": self.subtype, "gain": self.gain}


def parse_time_span(text: str | None) -> tuple[float, float | None]:
    """'START:STOP' in seconds (either end optional; STOP excluded) -> (start, stop or None for the clip's end)."""
    if not text:
        return 0.0, None
    start, stop = split_span(text, "seconds", float, "START:STOP in seconds, e.g. 30:40 or 90:")
    start = 0.0 if start is None else start
    check(math.isfinite(start) and start >= 0 and (stop is None or math.isfinite(stop)), "seconds",
          f"takes finite times of 0 s or more; got {text!r}")
    check(stop is None or stop > start, "seconds", f"selects nothing: STOP must be past START; got {text!r}")
    return start, stop


# Formats whose samples decode the same however the decoder got to them (PCM; FLAC's frames stand alone), where a
# seek lands exactly. A lossy decoder carries state from frame to frame, so those formats are decoded from the
# start and the part before the span dropped a block at a time: Vorbis then gives the whole clip's samples bit for
# bit. (libsndfile's MP3 decoder gave other samples for the first 1,213 after a seek, and also after the boundary
# between two reads, so an MP3's span can differ there from the same samples read in one piece.)
EXACT_SEEK_FORMATS = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "AU", "CAF", "FLAC", "IRCAM", "NIST", "VOC", "SD2"}
SKIP_BLOCK_FRAMES = 1 << 16


def _move_to(handle: soundfile.SoundFile, frame: int) -> None:
    """Put ``handle`` at ``frame`` so that what it reads next is what a read from the start gives there."""
    if frame == 0:
        return
    if handle.format in EXACT_SEEK_FORMATS:
        handle.seek(frame)
        return
    block = np.empty((min(frame, SKIP_BLOCK_FRAMES), handle.channels), dtype=np.float32)
    while frame > 0:
        step = min(frame, len(block))
        if len(handle.read(frames=step, dtype="float32", out=block[:step])) < step:
            return  # the file held fewer frames than its header said: the read after this finds it empty
        frame -= step


def read_audio(source: str, max_seconds: float = DEFAULT_MAX_SECONDS, seconds: str | None = None) -> LoadedAudio:
    """The clip's samples, or those of the ``seconds`` span ('START:STOP'); refused from its header, before
    reading, when what is kept is longer than ``max_seconds``. Only the span is decoded from a WAV or FLAC file
    (a seek); a lossy one is decoded up to the span's end, its first part dropped as it comes."""
    path = existing_file(source, "an audio file")
    start, stop = parse_time_span(seconds)
    notes: list[str] = []
    try:
        with library_warnings_as_notes(notes), soundfile.SoundFile(path) as handle:
            subtype, rate, length = handle.subtype, handle.samplerate, handle.frames
            if rate <= 0:
                raise UserError(f"{source}: the header gives a sample rate of {rate} Hz; the file is corrupt")
            first = min(length, round(start * rate))
            last = length if stop is None else min(length, round(stop * rate))
            if seconds and first >= last:
                raise UserError(f"{source}: --seconds {seconds} lies past the clip's end at {length / rate:,.6g} s")
            kept = last - first
            # As many digits as the limit is shown with (:g): a 0.05 s clip must not read as 0.1 s, nor one just
            # over the limit as equal to it.
            refuse_if_over(source, kept / rate, max_seconds, "--max-seconds",
                           f"{kept / rate:,.6g} s ({kept:,} samples at {rate} Hz)",
                           "choose a shorter --seconds span" if seconds else "fit a part with --seconds START:STOP")
            _move_to(handle, first)
            data = handle.read(frames=kept, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise UserError(f"{source}: unreadable or unsupported audio ({first_line(error)})") from None
    if seconds:
        notes.append(f"samples from {first / rate:,.6g} s to {(first + len(data)) / rate:,.6g} s of the "
                     f"{length / rate:,.6g} s clip (--seconds {seconds})")
    if data.shape[0] == 0:
        raise UserError(f"{source}: the clip has no samples")
    if data.shape[0] == 1:
        raise UserError(f"{source}: the clip has a single sample; nothing to fit")
    # The checks and the scaling work on the decoded samples themselves: no whole-clip temporary (the absolute
    # values, a finiteness mask) nor a scaled or clipped copy, which held an hour of stereo (1.27 GB) up to three
    # times at once. Maximum and minimum carry a NaN or an infinity through.
    high, low = float(data.max()), float(data.min())
    if not (math.isfinite(high) and math.isfinite(low)):
        raise UserError(f"{source}: the clip contains NaN or infinite samples")
    if high == 0.0 and low == 0.0:
        raise UserError(f"{source}: the clip is silent (all samples zero); nothing to fit and SNR is undefined")
    peak = max(high, -low)
    gain = 1.0
    if peak > 1.0:  # only float files can: integer samples decode to [-1, 1)
        gain = peak
        data /= np.float32(peak)
        notes.append(f"samples reach {peak:.4g} (a float file beyond [-1, 1]): fitted divided by that peak, written "
                     "back at their own scale; PSNR is relative to the peak")
    subtype = subtype if subtype in PCM_SUBTYPES else "FLOAT"
    return LoadedAudio(torch.from_numpy(np.clip(data, -1.0, 1.0, out=data)), rate, subtype, notes, gain)


# Frames converted and written at a time: 2**18 (six seconds of 44.1 kHz audio, 2 MiB a channel as float32). The
# file is filled through libsndfile a piece at a time, so no converted copy of the clip nor the encoded file exists
# whole in memory (an hour of stereo was 1.3 GB a copy). The tests set it smaller to force many pieces.
WAV_CHUNK_FRAMES = 1 << 18


class _Sink:
    """A file descriptor as libsndfile's virtual I/O wants it. Its writes go through ``os.write``, and an error
    there (a full disk) is kept and returns a short count: libsndfile only sees a short write (soundfile then
    fails an assert, or its close fails), so the OSError itself is raised afterwards, as the one-line write error
    every other output gives."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.error is not None:
            return 0
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as error:
            self.error = error
        return len(data) - len(view)

    def read(self, size: int) -> bytes:
        return os.read(self.fd, size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self.fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self.fd, 0, os.SEEK_CUR)


def write_wav(path: Path, samples: torch.Tensor, rate: int, subtype: str = "FLOAT", gain: float = 1.0, *,
              unit: bool = False) -> None:
    """Write ``(N, channels)`` samples in [-1, 1] (``unit``: in [0, 1], mapped to [-1, 1] as ``x * 2 - 1``),
    multiplied by ``gain`` (see :class:`LoadedAudio`), as WAV, atomically: a piece of :data:`WAV_CHUNK_FRAMES`
    frames at a time into a temporary file beside ``path``, renamed over it once complete and removed if anything
    fails. Each piece goes through the same float32 operations as the whole clip did, so the file is the same."""
    count, channels = samples.shape
    with atomic_output_path(path) as temporary:
        sink = _Sink(os.open(temporary, os.O_RDWR | os.O_TRUNC))
        try:
            with soundfile.SoundFile(sink, "w", rate, channels, subtype, format="WAV") as handle:
                for start in range(0, count, WAV_CHUNK_FRAMES):
                    piece = samples[start:start + WAV_CHUNK_FRAMES]
                    if unit:
                        piece = piece * 2.0 - 1.0
                    handle.write((piece.clamp(-1.0, 1.0) * gain).numpy())
            if sink.error is not None:  # a failed write that libsndfile let pass (its header's, on closing)
                raise sink.error
        except (AssertionError, RuntimeError):
            if sink.error is None:
                raise
            raise sink.error from None
        finally:
            os.close(sink.fd)


ENVELOPE_POINTS = 4000  # buckets across a waveform panel: about five per pixel of its 840
# Samples read at a time for the waveform's envelope: 2**17 (512 KiB as float32). Pieces of 2**20 drew the same
# envelope of an hour's clip, but the allocator kept about 500 MB more of their freed memory (inr keeps freed memory
# for reuse: inr_core/host_memory.py), and took 3.2 s instead of 1.9. The tests set it smaller to force many pieces.
ENVELOPE_CHUNK = 1 << 17


class Channel:
    """One channel of an ``(N, channels)`` clip as the comparison figure reads it: ``values[:, channel]`` passed
    through ``transform`` (elementwise: to the file's scale, say) only where it is read, the piece asked for
    (``channel[start:stop]``, or an array of indices). A long clip's figure reads it in pieces and a few thousand
    frames; its first channel, scaled, was copied whole (and again as float64 for each spectrogram)."""

    def __init__(self, values: np.ndarray, transform=None, channel: int = 0) -> None:
        self.column = values[:, channel]  # a view: nothing copied
        self.transform = transform

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, index) -> np.ndarray:
        piece = self.column[index]
        return piece if self.transform is None else self.transform(piece)


class _Difference:
    """``minuend - subtrahend`` of two channels, computed only where read (the waveform's error)."""

    def __init__(self, minuend: Channel, subtrahend: Channel) -> None:
        self.minuend, self.subtrahend = minuend, subtrahend

    def __len__(self) -> int:
        return len(self.minuend)

    def __getitem__(self, index) -> np.ndarray:
        return self.minuend[index] - self.subtrahend[index]


def _envelope(signal, points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max envelope over ``points`` buckets: a minutes-long clip plots as fast as a short one. Read a run of
    whole buckets of about :data:`ENVELOPE_CHUNK` samples at a time; each bucket's min and max are those of the
    whole clip's buckets."""
    count = len(signal)
    if count <= 2 * points:
        index, values = np.arange(count), signal[0:count]
        return index, values, values
    edges = np.linspace(0, count, points + 1).astype(int)
    per_piece = max(1, ENVELOPE_CHUNK * points // count)  # buckets a piece
    lows, highs = [], []
    for first in range(0, points, per_piece):
        last = min(first + per_piece, points)
        piece = signal[edges[first]:edges[last]]
        lows.append(np.minimum.reduceat(piece, edges[first:last] - edges[first]))
        highs.append(np.maximum.reduceat(piece, edges[first:last] - edges[first]))
    return edges[:-1], np.concatenate(lows), np.concatenate(highs)


def _draw_wave(axis, signal, rate: int, **style) -> tuple[np.ndarray, np.ndarray]:
    """A long clip as its min/max envelope, filled; a short one (its envelope is the samples themselves, a band of
    no width that a fill would not show) as a line through its samples. Returns the envelope's low and high."""
    index, low, high = _envelope(signal, ENVELOPE_POINTS)
    if low is high:
        axis.plot(index / rate, low, lw=0.8, **style)
    else:
        axis.fill_between(index / rate, low, high, lw=0, **style)
    return low, high


def _frequency_ticks(axis, edges: np.ndarray) -> None:
    """Label a mel-band axis (band index upwards) in Hz at round frequencies."""
    from inr_cli.figures.spectra import hz_to_mel

    centres = hz_to_mel(edges[1:-1])
    positions, labels = [], []
    for hz in (20000, 10000, 5000, 2000, 1000, 500, 200, 100, 50):  # from the top: the crowded low end gives way
        at = float(np.interp(hz_to_mel(hz), centres, np.arange(len(centres)) + 0.5))
        inside = 0.04 * len(centres) <= at <= 0.96 * len(centres)  # clear of the other axis's end labels
        if inside and all(abs(at - p) >= 0.07 * len(centres) for p in positions):
            positions.append(at)
            labels.append(f"{hz // 1000}k" if hz >= 1000 else str(hz))
    axis.set_ticks(positions)
    axis.set_ticklabels(labels)


SPECTRAL_ERROR_DB = 20.0  # the error map's full scale, either way
RELEVANT_DB = 60.0  # the spectral error is measured where levels are within this of the target's loudest


def audio_comparison_figure(target: np.ndarray | Channel, reconstruction: np.ndarray | Channel, rate: int,
                            caption: list[str] | tuple[str, ...] = ()) -> Figure:
    """The first channel: waveform with its error; mel spectrograms of target and reconstruction on one dB scale;
    the spectral error (reconstruction minus target, dB) over time and frequency, and averaged per band.
    ``target`` and ``reconstruction`` are ``(N, channels)`` arrays, or the channel to show (:class:`Channel`)."""
    from inr_cli.figures import new_figure
    from inr_cli.figures.layout import font, wrapped
    from inr_cli.figures.spectra import FLOOR_DB, decibels, mel_spectrogram

    target, reconstruction = (Channel(np.asarray(clip)) if getattr(clip, "ndim", None) == 2 else clip
                              for clip in (target, reconstruction))
    spectra = [mel_spectrogram(wave, rate) for wave in (target, reconstruction)]
    reference = float(spectra[0].power.max())
    levels = [decibels(s.power, reference) for s in spectra]
    # Compared above a floor 60 dB down: differences among near-silent bands would swamp the picture.
    difference = np.maximum(levels[1], -RELEVANT_DB) - np.maximum(levels[0], -RELEVANT_DB)
    audible = levels[0] > -RELEVANT_DB  # where the target has something to lose
    per_band = np.where(audible, difference, np.nan)
    counted = audible.sum(axis=1)
    band_error = np.nansum(per_band, axis=1) / np.maximum(counted, 1)
    band_error[counted == 0] = np.nan

    lines = wrapped(list(caption), 960, font(15)) if caption else []
    fig = new_figure(figsize=(10, 10.6 + 0.2 * len(lines)), dpi=100)
    top = 1 - (0.25 + 0.2 * len(lines)) / (10.6 + 0.2 * len(lines))
    grid = fig.add_gridspec(5, 2, width_ratios=[1, 0.018], height_ratios=[0.8, 1, 1, 1, 0.8], left=0.08,
                            right=0.92, bottom=0.05, top=top, hspace=0.6, wspace=0.03)
    for i, line in enumerate(lines):
        fig.text(0.01, 1 - (0.08 + 0.2 * i) / (10.6 + 0.2 * len(lines)), line, fontsize=11, va="top")
    wave_axis = fig.add_subplot(grid[0, 0])
    low, high = _draw_wave(wave_axis, target, rate, color="tab:blue", label="target")
    _draw_wave(wave_axis, _Difference(reconstruction, target), rate, color="tab:red", alpha=0.8, label="error")
    wave_axis.set_xlim(0, len(target) / rate)
    top = max(1.0, float(max(-low.min(), high.max())))  # the largest |sample|: a float clip may go beyond [-1, 1]
    wave_axis.set_ylim(-1.05 * top, 1.05 * top)
    wave_axis.set_title("waveform: target (blue) and error of the reconstruction (red)", fontsize=10)
    extent = (0.0, len(target) / rate, 0, len(spectra[0].edges) - 2)
    panels = (("target: mel spectrogram", levels[0], "magma", -FLOOR_DB, 0.0, "dB (0: target's loudest)"),
              ("reconstruction: mel spectrogram", levels[1], "magma", -FLOOR_DB, 0.0, "dB (0: target's loudest)"),
              (f"spectral error: reconstruction − target, above −{RELEVANT_DB:g} dB (blue: missing, red: added)",
               difference, "RdBu_r",
               -SPECTRAL_ERROR_DB, SPECTRAL_ERROR_DB, "dB"))
    for row, (title, values, colours, low_db, high_db, unit) in enumerate(panels, start=1):
        axis = fig.add_subplot(grid[row, 0], sharex=wave_axis)
        image = axis.imshow(values, origin="lower", aspect="auto", extent=extent, cmap=colours, vmin=low_db,
                            vmax=high_db, interpolation="nearest")
        _frequency_ticks(axis.yaxis, spectra[0].edges)
        axis.set_ylabel("Hz (mel scale)")
        axis.set_title(title, fontsize=10)
        fig.colorbar(image, cax=fig.add_subplot(grid[row, 1])).set_label(unit, fontsize=9)
    axis.set_xlabel("seconds")
    profile = fig.add_subplot(grid[4, 0])
    profile.axhline(0.0, color="0.6", lw=0.8)
    profile.plot(np.arange(len(band_error)) + 0.5, band_error, color="tab:blue", lw=1.2)
    profile.set_xlim(0, len(band_error))
    _frequency_ticks(profile.xaxis, spectra[0].edges)
    profile.set_xlabel("Hz (mel scale)")
    profile.set_ylabel("dB")
    profile.grid(alpha=0.3)
    profile.set_title(f"spectral error per band, averaged where the target is within {RELEVANT_DB:g} dB of its "
                      "loudest", fontsize=10)
    return fig


def write_audio_comparison(path: Path, target: np.ndarray | Channel, reconstruction: np.ndarray | Channel, rate: int,
                           caption: list[str] | tuple[str, ...] = ()) -> None:
    from inr_cli.figures.captions import caption_text
    from inr_cli.figures.layout import CAPTION_KEY

    fig = audio_comparison_figure(target, reconstruction, rate, caption)
    atomic_write_with(path, lambda buf: fig.savefig(buf, format="png",
                                                    metadata={CAPTION_KEY: caption_text(caption)}))
