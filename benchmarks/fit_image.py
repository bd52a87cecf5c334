"""Benchmark: `inr`'s fit loop against a plain PyTorch loop of the same recipe, on scikit-image's camera.

For each model it fits the same network (same seed, same initialisation) twice, once with
``training.fitting.fit.fit`` and once with the textbook loop (full batch, Adam, fp32, nothing else), and prints
ms/step and PSNR (on [0, 1]) at fixed step counts, then our figures as ratios to the plain loop's.
Evaluation time is excluded from both timings. Runs on whatever device ``--device`` names, so the same
command repeats on a GPU:

    python benchmarks/fit_image.py --size 128 --steps 300            # a few minutes on 2 CPU cores
    python benchmarks/fit_image.py --size 512 --steps 2000 --device cuda
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from skimage import data, transform

from bench_args import at_least, name_list
from bench_args import checkpoints as benchmark_checkpoints
from inr_cli.modalities.image import IMAGE
from models import build_model, get_spec, model_names
from training.fitting.config import FitConfig, resolve_config
from training.fitting.devices import synchronize
from training.fitting.fit import fit
from training.fitting.signal import image_signal
from training.metrics import psnr, psnr_from_mse, to_unit_range


def camera(size: int) -> torch.Tensor:
    image = data.camera().astype("float32") / 255.0
    if size != image.shape[0]:
        image = transform.resize(image, (size, size), anti_aliasing=True).astype("float32")
    return torch.from_numpy(image)[:, :, None]


@dataclass
class PlainRun:
    seconds: float  # training alone, evaluations excluded
    psnr: dict[int, float]  # full evaluations at the checkpoints
    batch_psnr: list[float]  # every step, from the full-batch training loss (before that step's update)


def plain_loop(config: FitConfig, pixels: torch.Tensor, checkpoints: list[int]) -> PlainRun:
    """The reference recipe written the obvious way: fp32, eager, full batch, Adam. An implicit model trains the
    textbook amortized way: one solve from zero, then one evaluation of f from the last state per step."""
    device = torch.device(config.device)
    signal = image_signal(pixels)
    coords, target = signal.coordinates().to(device), signal.values.to(device)
    torch.manual_seed(config.seed)
    model = build_model(config.model, 2, pixels.shape[2], hidden=config.hidden, layers=config.layers,
                        frequency=config.frequency, settings=config.solver).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    implicit = get_spec(config.model).implicit
    losses = torch.zeros(config.steps, device=device)
    psnrs, seconds = {}, 0.0
    synchronize(device)
    start = time.perf_counter()
    state = model.solve(model.prepare(coords), model.zeros(coords))[0] if implicit else None
    for step in range(1, config.steps + 1):
        if implicit:
            prediction, state = model.amortized_step(coords, state)
        else:
            prediction = model(coords)
        loss = ((prediction - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses[step - 1] = loss.detach()
        if step in checkpoints:
            synchronize(device)
            seconds += time.perf_counter() - start
            with torch.no_grad():
                psnrs[step] = psnr(to_unit_range(model(coords)).cpu(), (signal.values + 1) / 2)
            start = time.perf_counter()
    return PlainRun(seconds, psnrs, [psnr_from_mse(v) for v in losses.cpu().tolist()])


def ours(config: FitConfig, pixels: torch.Tensor) -> tuple[float, dict[int, float]]:
    result = fit(image_signal(pixels), config)
    # Seconds for all steps at the measured rate (a compiled fit's first, compiling step is timed apart).
    return config.steps / result.steps_per_second, {e["step"]: e["psnr"] for e in result.evaluations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="camera is resized to SIZE x SIZE (default 512)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--models", default="siren,fourier-mfn,gabor-mfn")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=None,
                        help="default: 3 for SIREN (the paper's 3x256), 1 for MFNs (the tables' 1L-256D)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=1, help="alternate both loops this many times; best time")
    args = parser.parse_args()
    for option in ("--size", "--steps", "--hidden", "--layers", "--repeats"):
        at_least(parser, option, getattr(args, option[2:]), 1)
    models = name_list(parser, "--models", args.models, model_names(), "model")

    pixels = camera(args.size)
    checkpoints = benchmark_checkpoints(args.steps)
    rows = []
    for name in models:
        layers = args.layers if args.layers is not None else (3 if name == "siren" else 1)
        # fp32 and eager, as the plain loop runs (on CUDA a fit would default to tf32 and a compiled step:
        # benchmarks/speed_modes.py compares those modes against the same plain loop).
        config = FitConfig(model=name, hidden=args.hidden, layers=layers, steps=args.steps, device=args.device,
                           batch_size=args.size * args.size, eval_every=checkpoints[0], precision="fp32",
                           compile=False)
        config = resolve_config(config, image_signal(pixels), IMAGE.recipe)
        best_plain, best_ours = float("inf"), float("inf")
        for _ in range(args.repeats):
            plain = plain_loop(config, pixels, checkpoints)
            plain_s, plain_psnr = plain.seconds, plain.psnr
            ours_s, ours_psnr = ours(config, pixels)
            best_plain, best_ours = min(best_plain, plain_s), min(best_ours, ours_s)
        rows.append((f"{name} {layers}L-{args.hidden}D", 1e3 * best_plain / args.steps, 1e3 * best_ours / args.steps,
                     plain_psnr, ours_psnr))

    device = resolve_config(FitConfig(device=args.device), image_signal(pixels), IMAGE.recipe).device
    gpu = f" ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else ""
    print(f"camera {args.size}x{args.size}, {args.steps} steps, full batch, fp32, eager, device {device}{gpu}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = f"{'model':<22}{'plain ms/step':>14}{'inr ms/step':>12}{'ratio':>7}"
    for step in checkpoints:
        header += f"{'plain @' + str(step):>13}{'inr @' + str(step):>11}{'diff dB':>8}"
    print(header)
    for label, plain_ms, ours_ms, plain_psnr, ours_psnr in rows:
        line = f"{label:<22}{plain_ms:>14.2f}{ours_ms:>12.2f}{ours_ms / plain_ms:>7.3f}"
        for step in checkpoints:
            line += f"{plain_psnr[step]:>13.2f}{ours_psnr[step]:>11.2f}{ours_psnr[step] - plain_psnr[step]:>+8.2f}"
        print(line)
    print("ratio = inr ms/step / plain ms/step (target <= 1.0); diff = inr PSNR - plain PSNR (target >= -0.2 dB)")


if __name__ == "__main__":
    main()
