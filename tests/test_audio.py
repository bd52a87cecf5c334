"""`inr fit audio` and audio sampling: readers and writers, the bandwidth recipe, fitting quality, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile
import torch

from helpers import run_here
from inr_cli.figures.spectra import fft_size
from inr_cli.media.audio import audio_comparison_figure, read_audio, write_wav
from inr_core.errors import UserError
from inr_cli.modalities.audio import AUDIO
from training.fitting.config import FitConfig
from training.fitting.fit import fit
from training.fitting.recipes import cycles_holding_energy
from training.fitting.signal import audio_signal
from training.metrics import snr

RATE = 8000


def tone_sequence(seconds=0.5, rate=RATE, channels=2) -> np.ndarray:
    """Four notes (A4, C#5, E5, A5), the second channel a quieter copy: (N, channels) float32."""
    t = np.arange(int(seconds * rate)) / rate
    quarter = len(t) // 4
    wave = np.concatenate([0.5 * np.sin(2 * np.pi * f * t[:quarter]) for f in (440, 554, 659, 880)])
    return np.stack([wave * (1.0 - 0.4 * c) for c in range(channels)], axis=1).astype(np.float32)


def write(path, data, rate=RATE, subtype="PCM_16", fmt=None):
    soundfile.write(path, data, rate, subtype=subtype, format=fmt)
    return path


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_reader_keeps_rate_channels_and_samples(tmp_path, fmt, subtype):
    data = tone_sequence()
    path = write(tmp_path / f"clip.{fmt.lower()}", data, subtype=subtype, fmt=fmt)
    audio = read_audio(str(path))
    assert audio.rate == RATE and tuple(audio.samples.shape) == data.shape
    error = audio.samples.numpy() - data
    if subtype == "VORBIS":  # lossy: compare the error's energy, not single samples
        assert np.sqrt(np.mean(error ** 2)) < 0.05
    else:
        assert np.abs(error).max() < 1e-4


def test_wav_writer_round_trips(tmp_path):
    data = torch.from_numpy(tone_sequence(channels=3))
    write_wav(tmp_path / "out.wav", data, 22050, "FLOAT")
    back, rate = soundfile.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    assert rate == 22050 and np.array_equal(back, data.numpy())


def test_bandwidth_recipe_finds_a_pure_tone():
    t = torch.arange(4000, dtype=torch.float64) / 4000
    assert cycles_holding_energy(torch.sin(2 * math.pi * 37 * t)[:, None]) == pytest.approx(38, abs=1)


def test_snr_matches_its_definition():
    target = torch.from_numpy(tone_sequence())
    noisy = target + 0.01 * torch.randn_like(target)
    expected = 10 * np.log10((target.numpy() ** 2).sum() / ((noisy - target).numpy() ** 2).sum())
    assert snr(noisy, target) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("model,psnr_bar,snr_bar", [("fourier-mfn", 28.0, 10.0), ("siren", 24.0, 6.0),
                                                    ("fourier-imfn", 24.0, 6.0)])
def test_models_fit_a_tone_sequence(model, psnr_bar, snr_bar):
    # Measured on this recipe (0.5 s, 8 kHz, 64 wide, 1 layer, 300 steps): fourier-mfn ~32 dB PSNR / ~15 dB SNR.
    samples = torch.from_numpy(tone_sequence())
    result = fit(audio_signal(samples), FitConfig(model=model, hidden=64, layers=1, steps=300, eval_every=0),
                 AUDIO.recipe)
    reconstruction = result.final.reconstruction * 2 - 1
    assert result.final.psnr > psnr_bar
    assert snr(reconstruction, samples) > snr_bar


def test_cli_fit_audio_writes_outputs_whose_metrics_match_the_files(tmp_path):
    data = tone_sequence()
    write(tmp_path / "tones.wav", data)
    proc = run_here(["fit", "audio", "tones.wav", "--model", "fourier-mfn", "--hidden", "64", "--layers", "1",
                    "--steps", "150", "--out", "run", "--json", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    run = tmp_path / "run"
    for name in ("reconstruction.wav", "comparison.png", "psnr.png", "report.json", "checkpoint.pt"):
        assert (run / name).is_file(), name
    assert report["audio"]["rate"] == RATE and report["audio"]["channels"] == 2
    written, rate = soundfile.read(run / "reconstruction.wav", dtype="float64", always_2d=True)
    assert rate == RATE and written.shape == data.shape
    target = soundfile.read(tmp_path / "tones.wav", dtype="float64", always_2d=True)[0]
    recomputed_snr = 10 * np.log10((target ** 2).sum() / ((written - target) ** 2).sum())
    assert recomputed_snr == pytest.approx(report["snr"], abs=0.05)  # the file holds 16-bit samples
    mse01 = np.mean(((written + 1) / 2 - (target + 1) / 2) ** 2)
    assert -10 * np.log10(mse01) == pytest.approx(report["psnr"], abs=0.05)

    resampled = run_here(["sample", "run/checkpoint.pt", "--rate", str(2 * RATE)], cwd=tmp_path)
    assert resampled.returncode == 0, resampled.stderr
    info = soundfile.info(tmp_path / resampled.stdout.strip())
    assert info.samplerate == 2 * RATE and info.frames == 2 * len(data) and info.channels == 2
    stretched = run_here(["sample", "run/checkpoint.pt", "--duration", "1.5", "--out", "long.wav"], cwd=tmp_path)
    assert stretched.returncode == 0, stretched.stderr
    assert soundfile.info(tmp_path / "long.wav").frames == int(1.5 * RATE)
    too_short = run_here(["sample", "run/checkpoint.pt", "--duration", "0.0001", "--out", "short.wav"], cwd=tmp_path)
    assert too_short.returncode == 1 and too_short.stderr == \
        "inr: error: 0.0001 s at 8000 Hz is 1 sample; a clip needs 2 at least: raise --rate or --duration\n"
    assert not (tmp_path / "short.wav").exists()  # not padded out to 2 samples (at --rate 1: a 2 s clip)


def test_a_float_clip_beyond_one_is_fitted_and_written_at_its_own_scale(tmp_path):
    """A float WAV may hold samples beyond [-1, 1]: they are fitted divided by the peak, nothing is clipped, the
    reconstruction and every sample come back at the file's scale, and SNR and PSNR (relative to the peak) match
    a recomputation from the files."""
    data = 5.0 * tone_sequence()  # peak 2.5
    write(tmp_path / "loud.wav", data, subtype="FLOAT")
    loaded = read_audio(str(tmp_path / "loud.wav"))
    assert loaded.gain == pytest.approx(2.5) and np.abs(loaded.samples.numpy() * loaded.gain - data).max() < 1e-6
    proc = run_here(["fit", "audio", "loud.wav", "--model", "fourier-mfn", "--hidden", "64", "--layers", "1",
                    "--steps", "150", "--out", "run", "--json", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert any("beyond [-1, 1]" in note for note in report["notes"]) and report["audio"]["gain"] == pytest.approx(2.5)
    written = soundfile.read(tmp_path / "run" / "reconstruction.wav", dtype="float64", always_2d=True)[0]
    assert np.abs(written).max() > 2.0
    # The page's target beside it, at the same scale (it was written divided by the peak, 2.5 times quieter).
    np.testing.assert_allclose(soundfile.read(tmp_path / "run" / "target.wav", always_2d=True)[0], data, atol=1e-6)
    recomputed_snr = 10 * np.log10((data ** 2).sum() / ((written - data) ** 2).sum())
    assert recomputed_snr == pytest.approx(report["snr"], abs=0.01)
    mse01 = np.mean(((written - data) / 2.5 / 2) ** 2)
    assert -10 * np.log10(mse01) == pytest.approx(report["psnr"], abs=0.01)
    sampled = run_here(["sample", "run/checkpoint.pt", "--out", "again.wav"], cwd=tmp_path)
    assert sampled.returncode == 0, sampled.stderr
    again = soundfile.read(tmp_path / "again.wav", dtype="float64", always_2d=True)[0]
    np.testing.assert_allclose(again, written, atol=1e-5)


def bad_clips(tmp_path):
    write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32))
    write(tmp_path / "silent.wav", np.zeros((400, 1), np.float32))
    write(tmp_path / "one.wav", np.full((1, 1), 0.5, np.float32))
    nan = tone_sequence(channels=1)
    nan[10] = np.nan
    write(tmp_path / "nan.wav", nan, subtype="FLOAT")
    (tmp_path / "notes.wav").write_text("not audio at all\n")
    (tmp_path / "folder.wav").mkdir()
    return ["empty.wav", "silent.wav", "one.wav", "nan.wav", "notes.wav", "folder.wav", "missing.wav"]


def test_bad_audio_is_a_one_line_error_for_the_reader(tmp_path):
    for name in bad_clips(tmp_path):
        with pytest.raises(UserError) as info:
            read_audio(str(tmp_path / name))
        assert name in str(info.value) and "\n" not in str(info.value)


def test_bad_audio_through_the_cli_exits_with_one_line_each_and_writes_nothing(tmp_path):
    names = bad_clips(tmp_path)
    proc = run_here(["fit", "audio", *names, "--steps", "5", "--out", "runs", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(names) and all(line.startswith("inr: error:") for line in lines)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("rate", [1, 15])
def test_comparison_figure_of_a_clip_at_a_few_hertz(rate):
    # Below 16 Hz the 46 ms FFT window is under one sample; the spectrogram keeps its 256-sample floor instead.
    assert fft_size(rate) == 256 and fft_size(44100) == 2048
    wave = tone_sequence(channels=1, rate=400)[:400]
    figure = audio_comparison_figure(wave, 0.9 * wave, rate)
    assert figure.axes


def test_max_seconds_error_shows_the_duration_exactly(tmp_path):
    write(tmp_path / "short.wav", tone_sequence(channels=1)[:400])  # 0.05 s at 8 kHz
    with pytest.raises(UserError, match=r"short.wav: 0\.05 s \(400 samples at 8000 Hz\) exceeds --max-seconds 0\.001"):
        read_audio(str(tmp_path / "short.wav"), max_seconds=0.001)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS")])
def test_a_span_of_seconds_reads_exactly_those_samples(tmp_path, fmt, subtype, monkeypatch):
    """WAV and FLAC seek to the span; Vorbis (a lossy decoder with state) is decoded from the start and its first
    part dropped a block at a time (blocks made small here so that takes several). Either way the samples are
    those of the whole clip read at once."""
    from inr_cli.media import audio as audio_module

    monkeypatch.setattr(audio_module, "SKIP_BLOCK_FRAMES", 1000)
    path = write(tmp_path / f"clip.{fmt.lower()}", tone_sequence(seconds=2.0), subtype=subtype, fmt=fmt)
    whole = read_audio(str(path)).samples
    span = read_audio(str(path), seconds="0.55:1.25")
    assert torch.equal(span.samples, whole[4400:10000])
    assert span.info()["seconds"] == pytest.approx(0.7)
    assert span.notes == ["samples from 0.55 s to 1.25 s of the 2 s clip (--seconds 0.55:1.25)"]
    assert torch.equal(read_audio(str(path), seconds="1.5:").samples, whole[12000:])
    assert torch.equal(read_audio(str(path), seconds=":0.25").samples, whole[:2000])
    assert torch.equal(read_audio(str(path), seconds="1.9:9").samples, whole[15200:])  # cut at the clip's end
    with pytest.raises(UserError, match=r"clip\.\w+: --seconds 2\.5: lies past the clip's end at 2 s"):
        read_audio(str(path), seconds="2.5:")
    with pytest.raises(UserError, match=r"0\.7 s \(5,600 samples at 8000 Hz\) exceeds --max-seconds 0\.5; .* "
                                        r"choose a shorter --seconds span"):
        read_audio(str(path), max_seconds=0.5, seconds="0.55:1.25")


def test_fit_audio_takes_a_span_and_refuses_a_malformed_one(tmp_path):
    write(tmp_path / "clip.wav", tone_sequence(seconds=1.0))
    result = run_here(["fit", "audio", "clip.wav", "--seconds", "0.25:0.75", "--steps", "2", "--json", "--quiet",
                       "--out", "run"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["audio"]["samples"] == 4000 and report["config"]["options"]["seconds"] == "0.25:0.75"
    assert soundfile.info(str(tmp_path / "run" / "reconstruction.wav")).frames == 4000
    for bad, message in (("0.5", "must be START:STOP in seconds"), ("0.5:0.2", "selects nothing: STOP must be past START"),
                         ("-1:0.5", "takes finite times of 0 s or more"), ("inf:", "takes finite times of 0 s or more")):
        result = run_here(["fit", "audio", "clip.wav", "--seconds", bad, "--out", "bad"], cwd=tmp_path)
        assert result.returncode == 2 and f"--seconds {message}" in result.stderr, (bad, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("samples", [2000, 40000])
def test_the_waveform_panel_shows_short_and_long_clips(samples):
    # A clip of up to 8,000 samples plots its samples themselves: as a band of no width, a fill showed nothing.
    import matplotlib.colors
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rate = 8000
    wave = (0.8 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate))[:, None].astype(np.float32)
    figure = audio_comparison_figure(wave, wave, rate)  # no error: the blue target alone
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[:, :, :3].astype(int)
    x0, y0, x1, y1 = (int(v) for v in figure.axes[0].get_window_extent().extents)
    panel = pixels[pixels.shape[0] - y1:pixels.shape[0] - y0, x0:x1]  # display y runs upwards
    blue = np.array(matplotlib.colors.to_rgb("tab:blue")) * 255
    drawn = (np.abs(panel - blue).max(axis=2) < 40).mean()
    assert drawn > 0.05  # a 440 Hz tone over the panel's width covers much of it either way
