"""Benchmark: a CPU training step whole against the same step in pieces of its batch (training/fitting/step.py).

For each model it times one training step of ``--points`` random points through ``TrainingStep``, whole and in
pieces of each ``--pieces`` size (forward and backward per piece, one update), eager; an implicit model runs its
amortized step from a warm cache, as every step after a fit's first does. Then a forward without gradients over
the same points in chunks of each size (what evaluations and renders do). It prints milliseconds per step (the
best of ``--repeats`` timings of ``--seconds`` each, so other work on a shared machine counts as little as it
can) and each one's ratio to the whole step, which is what `cpu_piece_points` in training/fitting/devices.py is
chosen from. Run it as `inr` runs: with glibc's allocator set up by ``keep_freed_host_memory`` (done here) and
huge pages asked for (start it with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, as the `inr` command starts
itself, where the kernel gives them on request):

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python benchmarks/cpu_pieces.py              # about 4 minutes, 2 cores
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python benchmarks/cpu_pieces.py --models gabor-imfn --points 262144
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from bench_args import at_least, name_list, number_list
from inr_core.host_memory import keep_freed_host_memory
from models import build_model
from training.fitting.amortized import FixpointCache
from training.fitting.devices import cpu_piece_points
from training.fitting.signal import mean_squared_error
from training.fitting.step import TrainingStep, piece_bounds

CPU = torch.device("cpu")
# (layers, frequency): the papers' sizes, SIREN 3x256 and the implicit tables' 1L-256D; the explicit MFNs at 3
# layers, as the README's figures.
SHAPES = {"siren": (3, 30.0), "fourier-mfn": (3, 256.0), "gabor-mfn": (3, 256.0), "isiren": (1, 30.0),
          "fourier-imfn": (1, 256.0), "gabor-imfn": (1, 256.0)}


def best_milliseconds(run, seconds: float, repeats: int) -> float:
    """The fastest mean time of ``run`` over ``repeats`` blocks of about ``seconds`` each (after one warm-up)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while count == 0 or time.perf_counter() - start < seconds:
            run()
            count += 1
        best = min(best, (time.perf_counter() - start) / count)
    return 1e3 * best


def measure(name: str, points: int, hidden: int, sizes: list[int], seconds: float, repeats: int) -> list[tuple]:
    layers, frequency = SHAPES[name]
    torch.manual_seed(0)
    coords, target = torch.rand(points, 2) * 2 - 1, torch.rand(points, 1) * 2 - 1
    model = build_model(name, 2, 1, hidden=hidden, layers=layers, frequency=frequency)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)  # small: the timings should not drift
    cache = FixpointCache(points, hidden, CPU) if hasattr(model, "one_estimate_per_step") else None
    if cache is not None:
        cache.ensure_solved(model, coords, None, piece_bounds(points, cpu_piece_points(hidden)))
    rows = []
    for piece in [None, *sizes]:
        step = TrainingStep(model, optimizer, mean_squared_error, cache, CPU, compile=False, piece_rows=piece)
        train = best_milliseconds(lambda: step(coords, target, None), seconds, repeats)

        def render(chunk=piece or points):
            with torch.no_grad():
                for start in range(0, points, chunk):
                    model(coords[start:start + chunk])

        model.eval()
        forward = best_milliseconds(render, seconds / 2, repeats)
        model.train()
        rows.append((piece, train, forward))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="siren,fourier-mfn,gabor-mfn,fourier-imfn,gabor-imfn")
    parser.add_argument("--points", type=int, default=131072, help="points per step (131,072: half a 512 px image)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--pieces", default="32768,16384,8192,4096", help="piece sizes to time, in points")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one timing block")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    models = name_list(parser, "--models", args.models, SHAPES, "model")
    sizes = number_list(parser, "--pieces", args.pieces, int, 1)
    for option in ("--points", "--hidden", "--repeats"):
        at_least(parser, option, getattr(args, option[2:]), 1)
    at_least(parser, "--seconds", args.seconds, 0)
    keep_freed_host_memory()
    print(f"{args.points:,} points per step, width {args.hidden}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}; "
          f"inr's pieces at this width: {cpu_piece_points(args.hidden):,} points")
    print(f"{'model':14s} {'pieces of':>10s} {'step ms':>9s} {'ratio':>6s} {'no-grad ms':>11s} {'ratio':>6s}")
    for name in models:
        rows = measure(name, args.points, args.hidden, sizes, args.seconds, args.repeats)
        whole_train, whole_forward = rows[0][1], rows[0][2]
        for piece, train, forward in rows:
            print(f"{name:14s} {'whole' if piece is None else f'{piece:,}':>10s} {train:9.1f} "
                  f"{train / whole_train:6.2f} {forward:11.1f} {forward / whole_forward:6.2f}", flush=True)
    print("ratio = time / the whole step's (below 1: the pieces are faster); no-grad = a forward in chunks of that "
          "size, as evaluations run")


if __name__ == "__main__":
    main()
