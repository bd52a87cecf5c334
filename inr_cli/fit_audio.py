"""`inr fit audio`: read a clip into a Signal; write the reconstructed clip and its comparison after the fit."""

from __future__ import annotations

from pathlib import Path

from inr_cli.media.audio import read_audio, write_audio_comparison, write_wav
from inr_cli.fitting import LoadedSignal, run_fits
from inr_core.errors import UserError
from training.fitting.fit import FitConfig, FitResult
from training.metrics import snr
from training.fitting.signal import audio_signal

RECONSTRUCTION = "reconstruction.wav"
COMPARISON = "comparison.png"


def load_audio(source: str) -> LoadedSignal:
    audio = read_audio(source)
    try:
        signal = audio_signal(audio.samples)
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None

    def samples_of(result: FitResult):
        return result.final.reconstruction * 2.0 - 1.0  # evaluation holds [0, 1]; audio lives in [-1, 1]

    def write_outputs(out_dir: Path, result: FitResult) -> dict[str, str]:
        reconstruction = samples_of(result)
        write_wav(out_dir / RECONSTRUCTION, reconstruction, audio.rate, audio.subtype)
        write_audio_comparison(out_dir / COMPARISON, audio.samples.numpy(), reconstruction.numpy(), audio.rate)
        return {"reconstruction": RECONSTRUCTION, "comparison": COMPARISON}

    def metrics(result: FitResult) -> dict:
        return {"snr": snr(samples_of(result), audio.samples),
                "metric_notes": "psnr: samples mapped from [-1, 1] to [0, 1]; snr: on the samples in [-1, 1]"}

    return LoadedSignal(signal, audio.info(), write_outputs, metrics, notes=audio.notes)


def run_fit_audio(paths: list[str], config: FitConfig, *, out: Path | None, show_progress: bool,
                  as_json: bool) -> int:
    if config.holdout != "none":
        raise UserError("--holdout applies to images only")
    return run_fits(paths, config, load_audio, default=None, out=out, show_progress=show_progress,
                    as_json=as_json, extra_config={})
