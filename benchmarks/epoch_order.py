"""Benchmark: the epoch's batch order drawn in turn against drawn ahead (training/fitting/batches.py).

A minibatch fit of a large signal draws a fresh order of every point at each epoch (`torch.randperm`, on the
host: 3.5 s for 99.5 million points on 2 cores). Drawn in turn, the device waits for it; drawn ahead (the CUDA
default for 2**22 points or more), a background thread draws the next epoch's order while this one trains.

This runs the same number of steps both ways, each step standing in for a training step by --step-ms of device
work (matrix products on the device, timed on it first), and prints the wall seconds of each, their ratio, and
whether every batch was the same.

    python benchmarks/epoch_order.py --points 99500000 --batch 262144 --epochs 3 --device cuda
    python benchmarks/epoch_order.py --points 20000000 --batch 1000000 --epochs 3 --device cpu   # a check
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.fitting.batches import BatchSampler  # noqa: E402
from training.fitting.devices import synchronize  # noqa: E402


def stand_in_step(device: torch.device, milliseconds: float):
    """A function that keeps the device busy for about ``milliseconds`` (products of a 1024 x 1024 matrix)."""
    matrix = torch.randn(1024, 1024, device=device)

    def products(count: int) -> None:
        out = matrix
        for _ in range(count):
            out = out @ matrix / 32.0

    products(2)
    synchronize(device)
    start = time.perf_counter()
    products(10)
    synchronize(device)
    per_product = (time.perf_counter() - start) / 10
    count = max(1, round(milliseconds / 1000 / per_product))
    return lambda: products(count)


def run(points: int, batch: int, steps: int, device: torch.device, prefetch: bool, step) -> tuple[float, list]:
    sampler = BatchSampler(points, batch, device, torch.Generator().manual_seed(0), prefetch=prefetch)
    firsts = []
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        indices = sampler.next()
        step()
        firsts.append(indices[:4])  # (the first few of each batch: enough to tell two orders apart)
    synchronize(device)
    seconds = time.perf_counter() - start
    sampler.release()
    return seconds, [first.cpu() for first in firsts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=99_500_000)
    parser.add_argument("--batch", type=int, default=262_144)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--step-ms", type=float, default=5.0, help="device time each stand-in step takes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    step = stand_in_step(device, args.step_ms)
    steps = args.epochs * (args.points // args.batch)
    in_turn, batches_in_turn = run(args.points, args.batch, steps, device, False, step)
    ahead, batches_ahead = run(args.points, args.batch, steps, device, True, step)
    same = all(torch.equal(a, b) for a, b in zip(batches_in_turn, batches_ahead))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.points:,} points, batches of {args.batch:,}, {args.epochs} epochs ({steps} steps of "
          f"~{args.step_ms:g} ms), {name}")
    print(f"drawn in turn: {in_turn:.2f} s   drawn ahead: {ahead:.2f} s   ratio {in_turn / ahead:.2f}   "
          f"same batches: {same}")


if __name__ == "__main__":
    main()
