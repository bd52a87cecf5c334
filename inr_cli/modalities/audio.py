"""Audio: time over [-1, 1] across the clip, one output per channel; samples in [-1, 1]."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch

from inr_cli.figures.captions import run_caption
from inr_cli.media.audio import (DEFAULT_MAX_SECONDS, Channel, LoadedAudio, parse_time_span, read_audio,
                                 write_audio_comparison, write_wav)
from inr_cli.modalities.base import (FittedNetwork, LoadedSignal, Modality, ModalityOptions, Outputs, SampleRequest,
                                     SampleTarget, grid_quality, register_modality)
from inr_cli.reports import db_text
from inr_core.errors import UserError, check_positive
from training.fitting.fit import FitResult
from training.fitting.recipes import Recipe, frequency_for_bandwidth, papers_learning_rate
from training.fitting.signal import GridSignal, audio_signal
from training.metrics import snr

MAX_SAMPLES = 1 << 31
RECONSTRUCTION = "reconstruction.wav"
COMPARISON = "comparison.png"


@dataclass(frozen=True)
class AudioOptions(ModalityOptions):
    max_seconds: float = DEFAULT_MAX_SECONDS  # longest clip read, checked from the file's header
    seconds: str | None = None  # START:STOP in seconds: the part of each clip fitted

    def validate(self) -> None:
        check_positive(self.max_seconds, "max_seconds")
        parse_time_span(self.seconds)  # raises on a malformed span


@dataclass
class LoadedAudioSignal(LoadedSignal):
    audio: LoadedAudio
    source: str = ""
    # The SNR last measured and the render it is of, held weakly (a cache must not keep a render alive): the
    # outputs' caption and the report both ask for the metrics, and summing an hour's clip takes seconds.
    measured_snr: tuple[weakref.ref | None, float] = field(default=(None, math.nan), repr=False, compare=False)


def to_samples(unit_values: torch.Tensor) -> torch.Tensor:
    """Evaluations and renders hold [0, 1]; audio lives in [-1, 1]."""
    return unit_values * 2.0 - 1.0


class AudioModality(Modality):
    summary_metrics = ("psnr", "snr", "bits_per_point", "psnr_fp16_weights")
    name = "audio"
    options_type = AudioOptions
    folder_suffixes = (".aif", ".aiff", ".flac", ".mp3", ".oga", ".ogg", ".opus", ".wav")  # what libsndfile reads
    sample_settings = ("rate", "duration")

    def load(self, source: str, options: AudioOptions, seed: int) -> LoadedAudioSignal:
        audio = read_audio(source, max_seconds=options.max_seconds, seconds=options.seconds)
        try:
            signal = audio_signal(audio.samples)
        except ValueError as error:
            raise UserError(f"{source}: {error}") from None
        return LoadedAudioSignal(signal, audio.info(), audio.notes, audio, source)

    def recipe(self, model: str, signal: GridSignal) -> Recipe:
        # Measured only where no --frequency is given: the spectrum of a long clip is seconds of work.
        return Recipe(papers_learning_rate(model), lambda: frequency_for_bandwidth(model, signal.values))

    def metrics(self, loaded: LoadedAudioSignal, result: FitResult) -> dict:
        render, value = loaded.measured_snr
        if render is None or render() is not result.final.reconstruction:
            value = snr(result.final.reconstruction, loaded.audio.samples, prediction_unit=True)
            loaded.measured_snr = (weakref.ref(result.final.reconstruction), value)
        return {**grid_quality(result.final), "snr": value,
                "metric_notes": "psnr: samples mapped from [-1, 1] to [0, 1]; snr: on the samples in [-1, 1]"}

    def write_outputs(self, loaded: LoadedAudioSignal, result: FitResult, out_dir: Path, rendered: object = None
                      ) -> Outputs:
        # The render (in [0, 1]) and the samples are read a piece at a time, each piece mapped as the whole clip
        # was (to_samples, times the gain): no whole-clip copy of either (an hour of stereo is 1.3 GB a copy).
        audio, unit, gain = loaded.audio, result.final.reconstruction, loaded.audio.gain
        write_wav(out_dir / RECONSTRUCTION, unit, audio.rate, audio.subtype, gain, unit=True)
        caption = run_caption(loaded.source, result.config, audio_quality(self.metrics(loaded, result), audio),
                              result.kept_step)
        write_audio_comparison(out_dir / COMPARISON, Channel(audio.samples.numpy(), lambda piece: piece * gain),
                               Channel(unit.numpy(), lambda piece: to_samples(torch.from_numpy(piece)).numpy() * gain),
                               audio.rate, caption)
        return Outputs({"reconstruction": RECONSTRUCTION, "comparison": COMPARISON})

    def summary_line(self, report: dict) -> str:
        return f"  PSNR {db_text(report['psnr'])}  SNR {db_text(report['snr'])}"

    def sample_target(self, info: dict, request: SampleRequest) -> SampleTarget:
        """By default the fitted clip; --rate resamples it, --duration stretches it in time."""
        rate = request.rate or info["rate"]
        seconds = request.duration if request.duration is not None else info["seconds"]
        count = round(seconds * rate)
        if count < 2:  # not made up to 2, which would turn a 0.1 s clip at --rate 1 into 2 s
            raise UserError(f"{seconds:g} s at {rate} Hz is {count} sample{'s' if count != 1 else ''}; a clip needs "
                            "2 at least: raise --rate or --duration")
        if count > MAX_SAMPLES:
            raise UserError(f"requested {count} samples; at most {MAX_SAMPLES} can be rendered")
        return SampleTarget((count,), f"sample-{rate}Hz-{count / rate:g}s.wav", (".wav",), rate)

    def write_sample(self, network: FittedNetwork, target: SampleTarget, path: Path) -> None:
        # The render mapped to [-1, 1] a piece at a time as it is written, not as a second whole clip.
        write_wav(path, network.render(target.grid), target.rate, network.info.get("subtype", "FLOAT"),
                  network.info.get("gain", 1.0), unit=True)  # checkpoints from before the gain have none: 1


def audio_quality(metrics: dict, audio: LoadedAudio) -> list[str]:
    """The caption's quality entries of an audio fit, from its report entries; which channel the figure shows."""
    channels = audio.samples.shape[1]
    return [f"PSNR {db_text(metrics['psnr'])}", f"SNR {db_text(metrics['snr'])}",
            *([f"channel 1 of {channels} shown"] if channels > 1 else [])]


AUDIO = register_modality(AudioModality())
