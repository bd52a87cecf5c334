"""Benchmark: ms/step and quality at fixed steps for audio, video and a 3D shape, explicit vs implicit.

Signals are made here (no downloads): a tone sequence, a camera pan across scikit-image's astronaut, and a
torus built by trimesh. Each is fitted with an explicit model and an implicit one of the same size (by default
Fourier-MFN and Fourier-iMFN). The script prints ms/step and the modality's quality measures. Evaluation time
is excluded. The same command runs on a GPU with --device cuda and larger sizes.

    python benchmarks/modalities.py                       # CPU, a few minutes
    python benchmarks/modalities.py --device cuda --scale 4 --steps 2000
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import trimesh
from skimage import data

from bench_args import at_least, one_of
from inr_cli.modalities import get_modality
from models import get_spec, model_names
from training.fitting.config import FitConfig
from training.fitting.fit import fit
from training.fitting.shapes import shape_samples
from training.fitting.signal import audio_signal, video_signal
from training.metrics import psnr_per_frame, snr


def tones(seconds: float, rate: int = 16000) -> torch.Tensor:
    t = np.arange(int(seconds * rate)) / rate
    notes = np.array_split(t, 8)
    wave = np.concatenate([0.4 * np.sin(2 * np.pi * f * n) + 0.1 * np.sin(4 * np.pi * f * n)
                           for f, n in zip((262, 294, 330, 349, 392, 440, 494, 523), notes)])
    return torch.from_numpy(wave.astype(np.float32))[:, None]


def camera_pan(frames: int, side: int) -> torch.Tensor:
    image = data.astronaut()
    step = max(1, 256 // side)
    clips = [image[60 + 4 * i:60 + 4 * i + side * step:step, 120 + 6 * i:120 + 6 * i + side * step:step]
             for i in range(frames)]
    return torch.from_numpy(np.stack(clips).astype(np.float32) / 255.0)


def torus_signal(samples: int):
    """Truncated signed distances of a torus, sampled as `inr fit sdf` samples a mesh."""
    mesh = trimesh.creation.torus(0.6, 0.25)
    vertices, faces = np.asarray(mesh.vertices, float), np.asarray(mesh.faces, np.int64)
    return shape_samples(vertices, faces, target="sdf", samples=samples, eval_points=20000,
                         rng=np.random.default_rng(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--scale", type=int, default=1, help="multiplies clip length, frame size and samples")
    parser.add_argument("--explicit", default="fourier-mfn")
    parser.add_argument("--implicit", default="fourier-imfn")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    for option in ("--steps", "--scale", "--hidden", "--layers"):
        at_least(parser, option, getattr(args, option[2:]), 1)
    one_of(parser, "--explicit", args.explicit, [n for n in model_names() if not get_spec(n).implicit], "model")
    one_of(parser, "--implicit", args.implicit, [n for n in model_names() if get_spec(n).implicit], "model")

    frames = camera_pan(8, 32 * args.scale)
    samples = tones(1.0 * args.scale)
    signals = {"audio": audio_signal(samples), "video": video_signal(frames), "shape": torus_signal(50000 * args.scale)}

    def quality(kind, result):
        if kind == "audio":
            return f"PSNR {result.final.psnr:6.2f} dB  SNR {snr(result.final.reconstruction * 2 - 1, samples):6.2f} dB"
        if kind == "video":
            per_frame = psnr_per_frame(result.final.reconstruction, frames)
            return f"PSNR {np.mean(per_frame):6.2f} ± {np.std(per_frame):.2f} dB over {len(per_frame)} frames"
        return f"IoU uniform {result.final.iou['uniform']:.4f}  near-surface {result.final.iou['surface']:.4f}"

    rows, device = [], args.device
    for kind, signal in signals.items():
        for model in (args.explicit, args.implicit):
            config = FitConfig(model=model, hidden=args.hidden, layers=args.layers, steps=args.steps,
                               device=args.device, eval_every=0)
            result = fit(signal, config, get_modality(kind).recipe)
            device = result.config.device
            rows.append((kind, model, signal.num_points, result.config.batch_size,
                         1e3 / result.steps_per_second, quality(kind, result)))
    print(f"{args.steps} steps, {args.layers}L-{args.hidden}D, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")
    print(f"{'signal':<7}{'model':<15}{'points':>9}{'batch':>8}{'ms/step':>9}  quality")
    for kind, model, points, batch, ms, text in rows:
        print(f"{kind:<7}{model:<15}{points:>9}{batch:>8}{ms:>9.1f}  {text}")


if __name__ == "__main__":
    main()
