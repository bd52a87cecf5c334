"""Benchmark: many same-sized images one at a time, as stacked groups, and shared between processes (torchrun).

Cuts --count crops of --size px from scikit-image's photos, writes them as PNGs, and fits them with
`inr fit image -` in one run: one process fitting them one at a time (`--group-size 1`, the baseline), one
process fitting same-shaped inputs together as stacked networks (the default), `torchrun
--nproc_per_node=--procs` with each rank grouping its share, and (with more than one process) torchrun with each
rank fitting its share one at a time: scale-out alone, against the baseline. It prints each run's wall time (the
whole command, start-up included), images per second, its ratio to the baseline, and the largest PSNR difference
of an image against the baseline (same images, same seed: only rounding may differ).

    python benchmarks/many_images.py --count 32 --size 32 --steps 300 --procs 2          # CPU, a minute or two
    python benchmarks/many_images.py --count 32 --size 32 --steps 300 --repeat 5   # a shared machine: medians
    python benchmarks/many_images.py --count 100 --size 128 --steps 300 --hidden 256 --procs 1 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

MEANINGFUL_DB = 60.0
PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "page", "immunohistochemistry",
          "motorcycle_left", "hubble_deep_field", "retina")


def crops(count: int, size: int) -> list[np.ndarray]:
    """``count`` size x size crops, taken in turn from each photo on a grid of positions."""
    images = [getattr(data, name)() for name in PHOTOS if hasattr(data, name)]
    out, position = [], 0
    while len(out) < count:
        for image in images:
            height, width = image.shape[:2]
            rows, cols = max(1, height // size), max(1, width // size)
            cell = position % (rows * cols)
            top, left = (cell // cols) * size, (cell % cols) * size
            if top + size <= height and left + size <= width:
                crop = image[top:top + size, left:left + size]
                # One shape for all (RGB), as a dataset folder would have: grey photos become grey RGB crops.
                out.append(np.repeat(crop[:, :, None], 3, axis=2) if crop.ndim == 2 else crop[:, :, :3])
            if len(out) == count:
                break
        position += 7  # a prime stride: successive rounds take crops far from the last ones
    return out


def run(command: list[str], paths: list[str], cwd: Path) -> tuple[float, list[dict]]:
    # The repository first, then whatever the caller had (on a GPU image, gpu_env.sh's carried wheels).
    path = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(part for part in path if part)}
    start = time.perf_counter()
    proc = subprocess.run(command, input="\n".join(paths) + "\n", capture_output=True, text=True, cwd=cwd, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{proc.stderr[-2000:]}")
    return wall, [json.loads(line) for line in proc.stdout.splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--model", default="siren")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="auto: the fit command's rule (on CUDA, fits and groups of >= 1e8 point-steps compile)")
    parser.add_argument("--precision", default=None,
                        help="passed to every fit (fp32|tf32|bf16); default: the fit command's own default")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of the three runs; with more than one, walls and ratios are medians, with ranges")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        paths = []
        for index, crop in enumerate(crops(args.count, args.size)):
            Image.fromarray(crop).save(folder / f"crop{index:04d}.png")
            paths.append(f"crop{index:04d}.png")
        fit = ["fit", "image", "-", "--model", args.model, "--hidden", str(args.hidden), "--steps", str(args.steps),
               "--device", args.device, "--json", "--quiet"]
        if args.precision:
            fit += ["--precision", args.precision]
        if args.compile != "auto":
            fit.append("--compile" if args.compile == "on" else "--no-compile")
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.procs}",
                    "-m", "inr_cli", *fit]
        ways = {
            "one at a time (baseline)": [sys.executable, "-m", "inr_cli", *fit, "--group-size", "1"],
            "grouped, one process": [sys.executable, "-m", "inr_cli", *fit],
            f"torchrun, {args.procs} process{'es' if args.procs > 1 else ''}": torchrun,
        }
        if args.procs > 1:  # scale-out alone: the baseline's way of fitting, shared between processes
            ways[f"torchrun, {args.procs}, one at a time"] = [*torchrun, "--group-size", "1"]
        # Rounds run the three ways in turn, so that a machine shared with other work slows them alike.
        walls: dict[str, list[float]] = {label: [] for label in ways}
        reports: dict[str, list[dict]] = {}
        for round_index in range(args.repeat):
            for way, (label, command) in enumerate(ways.items()):
                wall, reports[label] = run([*command, "--out", f"run{round_index}-{way}"], paths, folder)
                walls[label].append(wall)

    baseline_label = next(iter(ways))
    one_by_one = reports[baseline_label]
    mean_psnr = sum(r["psnr"] for r in one_by_one) / len(one_by_one)
    precision = one_by_one[0].get("precision", "?")
    print(f"{args.count} crops of {args.size} px, {args.model} {args.hidden} wide, {args.steps} steps, device "
          f"{one_by_one[0]['device']}, precision {precision}, {os.cpu_count()} CPUs; mean PSNR {mean_psnr:.2f} dB"
          + (f"; {args.repeat} rounds: medians, ranges in brackets" if args.repeat > 1 else ""))
    print(f"{'run':<28}{'wall s':>8}{'images/s':>10}{'x faster':>10}{'max |dPSNR| dB':>16}{'peak GPU MiB':>14}"
          f"{'compile s':>11}  (dPSNR of images < {MEANINGFUL_DB:.0f} dB)")
    for label in ways:
        wall = statistics.median(walls[label])
        speedups = [base / own for base, own in zip(walls[baseline_label], walls[label])]
        # Above ~60 dB an image is reproduced to rounding, and dB of rounding-sized errors say nothing.
        worst = max((abs(a["psnr"] - b["psnr"]) for a, b in zip(one_by_one, reports[label])
                     if a["psnr"] < MEANINGFUL_DB), default=0.0)
        assert [r["input"] for r in reports[label]] == paths
        peaks = [r["peak_memory_mb"] for r in reports[label] if r.get("peak_memory_mb") is not None]
        peak = f"{max(peaks):.0f}" if peaks else "-"  # a CPU has no allocator statistic to report
        # Compiling is paid once per process and shape; a group's members all report the group's.
        compiled = max(r["compile_seconds"] for r in reports[label])
        print(f"{label:<28}{wall:>8.1f}{args.count / wall:>10.2f}{statistics.median(speedups):>10.2f}"
              f"{worst:>16.4f}{peak:>14}{compiled:>11.1f}"
              + (f"  [{min(walls[label]):.1f}-{max(walls[label]):.1f} s; x {min(speedups):.2f}-{max(speedups):.2f}]"
                 if args.repeat > 1 else ""))
    grouped_label, many_label = list(ways)[1:3]
    close = sum(abs(a["psnr"] - b["psnr"]) <= 0.01 for a, b in zip(one_by_one, reports[grouped_label]))
    kept_early = sum(r.get("kept_step", args.steps) != args.steps for r in one_by_one)
    print(f"grouped: {close} of {args.count} images within 0.01 dB of their one-at-a-time fit; {kept_early} "
          f"one-at-a-time fit(s) kept an earlier network than the last step's (--keep best)")
    many_ratios = [many / grouped for many, grouped in zip(walls[many_label], walls[grouped_label])]
    alone_ratios = [many / alone for many, alone in zip(walls[many_label], walls[baseline_label])]
    print(f"torchrun / grouped one-process wall: {statistics.median(many_ratios):.2f}; torchrun / one at a time: "
          f"{statistics.median(alone_ratios):.2f}")
    if args.procs > 1:  # the same way of fitting in one process and in several: what scale-out alone gives
        scaled_label = list(ways)[3]
        scaled = [many / alone for many, alone in zip(walls[scaled_label], walls[baseline_label])]
        print(f"scale-out alone, one at a time in both: torchrun / one process wall {statistics.median(scaled):.2f}"
              + (f" [{min(scaled):.2f}-{max(scaled):.2f}]" if args.repeat > 1 else ""))
    print("targets: grouped >= 2x (CPU, 32 crops of 32 px) and >= 10x (GPU, 100 crops of 128 px, SIREN 3x256) "
          "faster, PSNR within 0.05 dB; torchrun over 2 CPU processes <= 0.8x the one-process wall")


if __name__ == "__main__":
    main()
