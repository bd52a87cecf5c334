"""Benchmark: implicit (amortized fixpoint, Neumann T = 1) against the explicit one-pass model of the same size.

Same parameters, same seed, camera resized to --size; prints ms/step, PSNR (on [0, 1]) at half and all of the
steps, the memory one training step keeps for backward (plus the implicit model's fixpoint cache) and, on a GPU
only, the CUDA peak of the whole fit, then implicit/explicit ratios. A last block shows that the implicit model's
memory does not grow with the number of solver iterations (solves run without a graph), by fitting without
amortization at two iteration caps. Timings of the papers' published code (one H200, 512 px) are in docs/models.md.

Both models of a pair run in the fit's default mode for the device, which the header names: fp32 and eager on
the CPU (there only SIREN and Fourier-MFN compile by default, none of the models here);
on CUDA TF32, and compiled (the implicit model in two pieces, docs/performance.md) for fits of at least 1e8
point-steps, so `--size 512 --steps 2000` (5.2e8) is compiled and `--size 128 --steps 300` is not.
benchmarks/fit_image.py holds both loops to fp32 eager; benchmarks/speed_modes.py compares the modes.

On 2 idle CPU cores (AMD EPYC, torch 2.13) one step of each of the twelve fits at 128 px adds up to 3.4 s, and the
rest of the run (start-up, evaluations, the 20-step memory block) takes about 55 s: `--steps 30` ran in 155 s, so
`--steps 300` takes about 18 minutes (more on a busy machine or one thread).

    python benchmarks/implicit_vs_explicit.py --size 128 --steps 300          # CPU, about 18 minutes on 2 cores
    python benchmarks/implicit_vs_explicit.py --size 128 --steps 30           # CPU, about 2.5 minutes on 2 cores
    python benchmarks/implicit_vs_explicit.py --size 512 --steps 2000 --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_args import at_least, name_list, number_list  # noqa: E402
from bench_args import checkpoints as benchmark_checkpoints  # noqa: E402
from fit_image import camera  # noqa: E402

from inr_cli.modalities.image import IMAGE  # noqa: E402
from inr_cli.peak_memory import measure_peak_memory  # noqa: E402
from models import model_names  # noqa: E402
from models.fixpoint import SolverSettings  # noqa: E402
from training.fitting.amortized import FixpointCache  # noqa: E402
from training.fitting.config import FitConfig, resolve_config  # noqa: E402
from training.fitting.fit import fit  # noqa: E402
from training.fitting.signal import image_signal  # noqa: E402
from training.fitting.step_memory import training_step_bytes  # noqa: E402


def run(config: FitConfig, pixels: torch.Tensor):
    """Fit, then measure one more training step's memory on the fitted model (saved tensors + cache)."""
    signal = image_signal(pixels)
    config = resolve_config(config, signal, IMAGE.recipe)
    device = torch.device(config.device)
    with measure_peak_memory(device) as peak:
        result = fit(signal, config)
    coords, target = signal.coordinates().to(device), signal.values.to(device)
    cache = FixpointCache(len(coords), config.hidden, device) if config.is_implicit() and config.amortize else None
    step = training_step_bytes(result.model, coords, target, cache)
    return result, step["total_bytes"] / 2**20, peak.megabytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--models", default="gabor-imfn,fourier-imfn,isiren")
    parser.add_argument("--sizes", default="1,4", help="layer counts to run at --hidden (default 1L and 4L)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    for option in ("--size", "--steps", "--hidden"):
        at_least(parser, option, getattr(args, option[2:]), 1)
    models = name_list(parser, "--models", args.models, model_names(), "model")
    sizes = number_list(parser, "--sizes", args.sizes, int, 1)

    pixels = camera(args.size)
    checkpoints = benchmark_checkpoints(args.steps)
    rows = []
    for name in models:
        for layers in sizes:
            base = FitConfig(model=name, hidden=args.hidden, layers=layers, steps=args.steps, device=args.device,
                             batch_size=args.size * args.size, eval_every=checkpoints[0])
            explicit, explicit_mb, explicit_peak = run(replace(base, explicit=True), pixels)
            implicit, implicit_mb, implicit_peak = run(base, pixels)
            rows.append((f"{name} {layers}L-{args.hidden}D", explicit, explicit_mb, implicit, implicit_mb,
                         explicit_peak, implicit_peak))

    first = rows[0][1]
    device = first.config.device
    gpu = f" ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else ""
    mode = f"{first.config.precision}, {'compiled' if first.compiled else 'eager'}"  # the fit's defaults here
    print(f"camera {args.size}x{args.size}, {args.steps} steps, full batch, {mode}, device {device}{gpu}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("MB = memory one training step keeps for backward, plus the implicit model's fixpoint cache"
          + ("; peak = CUDA allocator peak over the whole fit" if gpu else ""))
    head = f"{'model':<24}{'expl ms':>9}{'impl ms':>9}{'ratio':>7}"
    for step in checkpoints:
        head += f"{'expl@' + str(step):>11}{'impl@' + str(step):>11}"
    head += f"{'expl MB':>9}{'impl MB':>9}{'ratio':>7}{'eval it':>8}"
    if gpu:
        head += f"{'expl peak':>10}{'impl peak':>10}"
    print(head)
    for label, explicit, explicit_mb, implicit, implicit_mb, explicit_peak, implicit_peak in rows:
        e_ms = 1e3 / explicit.steps_per_second
        i_ms = 1e3 / implicit.steps_per_second
        line = f"{label:<24}{e_ms:>9.2f}{i_ms:>9.2f}{i_ms / e_ms:>7.2f}"
        e_psnr = {e["step"]: e["psnr"] for e in explicit.evaluations}
        i_psnr = {e["step"]: e["psnr"] for e in implicit.evaluations}
        for step in checkpoints:
            line += f"{e_psnr[step]:>11.2f}{i_psnr[step]:>11.2f}"
        line += f"{explicit_mb:>9.1f}{implicit_mb:>9.1f}{implicit_mb / explicit_mb:>7.2f}"
        line += f"{implicit.solver['evaluation']['iterations_mean']:>8.1f}"
        if gpu:
            line += f"{explicit_peak:>10.0f}{implicit_peak:>10.0f}"
        print(line)
    print("targets: ms ratio <= 1.3, memory ratio <= 1.1")

    # Memory flat in solver iterations: the same fit, solving every step (no amortization) to 10 or 50 iterations.
    name = models[0]
    print(f"\nmemory vs solver iterations ({name} 1L-{args.hidden}D, no amortization, tol 1e-9, 20 steps):")
    for cap in (10, 50):
        config = FitConfig(model=name, hidden=args.hidden, layers=1, steps=20, device=args.device, amortize=False,
                           solver=SolverSettings(tol=1e-9, max_iter=cap), batch_size=args.size * args.size,
                           eval_every=0)
        result, megabytes, peak = run(config, pixels)
        print(f"  max_iter {cap:>3}: step memory {megabytes:8.1f} MB"
              + (f", CUDA peak {peak:8.0f} MB" if gpu else "") + f", {1e3 / result.steps_per_second:8.1f} ms/step")


if __name__ == "__main__":
    main()
