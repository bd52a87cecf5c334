"""Benchmark: many same-sized images, one process against several (torchrun), in one run.

Cuts --count crops of --size px from scikit-image's photos, writes them as PNGs, and fits them with
`inr fit image -` once in a single process and once under `torchrun --nproc_per_node=--procs`, then prints each
run's wall time (the whole command, start-up included), images per second, and the largest PSNR difference of an
image between the two runs (they fit the same images with the same seed; only rounding may differ).

Fitting same-sized images together as one stacked network (issue: batched fitting) is not built yet; when it is,
it becomes a third row here.

    python benchmarks/many_images.py --count 8 --size 32 --steps 200 --procs 2      # CPU, under a minute
    python benchmarks/many_images.py --count 100 --size 128 --steps 300 --procs 8   # a machine with 8 GPUs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

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
                out.append(image[top:top + size, left:left + size])
            if len(out) == count:
                break
        position += 7  # a prime stride: successive rounds take crops far from the last ones
    return out


def run(command: list[str], paths: list[str], cwd: Path) -> tuple[float, list[dict]]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        paths = []
        for index, crop in enumerate(crops(args.count, args.size)):
            Image.fromarray(crop).save(folder / f"crop{index:04d}.png")
            paths.append(f"crop{index:04d}.png")
        fit = ["fit", "image", "-", "--model", args.model, "--hidden", str(args.hidden), "--steps", str(args.steps),
               "--device", args.device, "--json", "--quiet"]
        single_wall, single = run([sys.executable, "-m", "inr_cli", *fit, "--out", "single"], paths, folder)
        many_wall, many = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc_per_node={args.procs}", "-m", "inr_cli", *fit, "--out", "many"],
                              paths, folder)

    assert [r["input"] for r in many] == [r["input"] for r in single] == paths
    worst = max(abs(a["psnr"] - b["psnr"]) for a, b in zip(single, many))
    mean_psnr = sum(r["psnr"] for r in single) / len(single)
    print(f"{args.count} crops of {args.size} px, {args.model} {args.hidden} wide, {args.steps} steps, device "
          f"{single[0]['device']}, {os.cpu_count()} CPUs; mean PSNR {mean_psnr:.2f} dB")
    print(f"{'run':<28}{'wall s':>8}{'images/s':>10}{'ratio':>8}")
    print(f"{'one process':<28}{single_wall:>8.1f}{args.count / single_wall:>10.2f}{1.0:>8.2f}")
    print(f"{'torchrun, ' + str(args.procs) + ' processes':<28}{many_wall:>8.1f}{args.count / many_wall:>10.2f}"
          f"{many_wall / single_wall:>8.2f}")
    print(f"largest PSNR difference of an image between the runs: {worst:.4f} dB (target <= 0.05)")
    print("target (2 CPU processes over 8 inputs on 2 cores): torchrun wall <= 0.8 x one process")


if __name__ == "__main__":
    main()
