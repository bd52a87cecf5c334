"""Benchmark: JIIO against the Adam baseline (a full DEQ solve and exact implicit backward per step) on one decoder
and the same test images. Prints ms per inversion (per image), cost reached and PSNR, then JIIO/Adam time ratios
at equal iterations and to equal loss (Adam run until its cost reaches JIIO's): the protocol of
training/jiio/comparison.py, the one `inr jiio-invert --method both` runs, with Adam's learning rate swept (the
best kept, so the baseline is not handicapped by a poor step size) and each run timed as the median of repeats.
The paper reports 3.5-9x for JIIO.

    python benchmarks/jiio_vs_adam.py --decoder runs/fmnist/decoder.pt \\
        --images /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz           # CPU, small preset
    python benchmarks/jiio_vs_adam.py --train 2000 --epochs 10                        # trains a decoder first
    python benchmarks/jiio_vs_adam.py --decoder runs/faces64/decoder.pt --images faces/ --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench_args import at_least, number_list, one_of
from inr_cli.media.datasets import load_images
from inr_cli.sample import read_checkpoint
from inr_core.errors import UserError
from models.mdeq_presets import PRESETS
from training.fitting.devices import resolve_device
from training.jiio.comparison import compare_on_batch, summarize_comparisons
from training.jiio.decoder_checkpoint import decoder_from_payload
from training.jiio.decoder_training import DecoderConfig, train_decoder
from training.jiio.inverse_tasks import SIGNED_RANGE, Corruption, corrupt, restore
from training.jiio.settings import RESTORATION_ITERATIONS, TASKS, AdamSettings, CorruptionSettings, JIIOSettings
from training.metrics import psnr

FASHION = "/usr/share/datasets/fashion-mnist/"


def decoder_for(args, device):
    if args.decoder:
        payload = read_checkpoint(Path(args.decoder))
        decoder, config = decoder_from_payload(payload, args.decoder, device)
        return decoder, config.image_size
    config = DecoderConfig(preset=args.preset, epochs=args.epochs)
    images = load_images(FASHION + "train-images-idx3-ubyte.gz", config.image_size)[:args.train].to(device)
    started = time.perf_counter()
    state = train_decoder(config, images, on_epoch=lambda s: print(
        f"  epoch {s.epoch}: cost/image {s.history[-1]['cost_per_image']:.1f}", flush=True))
    print(f"trained {args.preset} decoder on {len(images)} images, {args.epochs} epochs in "
          f"{time.perf_counter() - started:.0f} s")
    return state.decoder, config.image_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoder", help="decoder.pt from `inr jiio-invert`; without it one is trained")
    parser.add_argument("--train", type=int, default=2000, help="Fashion-MNIST images to train on (no --decoder)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--images", default=FASHION + "t10k-images-idx3-ubyte.gz")
    parser.add_argument("--count", type=int, default=32, help="test images, inverted as one batch")
    parser.add_argument("--task", default="reconstruct")
    parser.add_argument("--iters", type=int, default=RESTORATION_ITERATIONS)
    parser.add_argument("--adam-lrs", default="0.01,0.03,0.1")
    parser.add_argument("--adam-max-steps", type=int, default=400)
    parser.add_argument("--adam-tol", type=float, default=AdamSettings.tol,
                        help="relative residual for Adam's per-step forward and backward solves")
    parser.add_argument("--adam-max-iter", type=int, default=AdamSettings.max_iter,
                        help="cap on each of Adam's per-step solves (a lower cap is a cheaper, rougher baseline)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    for option in ("--train", "--epochs", "--count", "--iters", "--adam-max-steps", "--adam-max-iter", "--repeats"):
        at_least(parser, option, getattr(args, option[2:].replace("-", "_")), 1)
    one_of(parser, "--preset", args.preset, PRESETS, "preset")
    one_of(parser, "--task", args.task, TASKS, "task")
    adam_lrs = number_list(parser, "--adam-lrs", args.adam_lrs, float)
    for option, path in (("--decoder", args.decoder), ("--images", args.images)):
        if path is not None and not Path(path).exists():  # before a decoder trains for minutes
            parser.error(f"{option}: {path}: no such file or folder")

    device = resolve_device(args.device)
    torch.manual_seed(0)
    try:
        decoder, size = decoder_for(args, device)
        images = load_images(args.images, size)[:args.count]
    except UserError as error:  # a file that is not a decoder, or not images
        parser.error(str(error))
    for p in decoder.parameters():
        p.requires_grad_(False)
    corrupted = corrupt(images, args.task, CorruptionSettings(), generator=torch.Generator().manual_seed(0))
    problem = Corruption(corrupted.observed.to(device), corrupted.mask.to(device))

    def median_of_repeats(run):
        results = [run() for _ in range(args.repeats)]
        return replace(results[-1], seconds=statistics.median(r.seconds for r in results))

    restore(decoder, problem, JIIOSettings(iterations=2))  # warm-up (allocator, kernels)
    adam = [AdamSettings(steps=args.iters, lr=float(lr), tol=args.adam_tol, max_iter=args.adam_max_iter)
            for lr in adam_lrs]
    batch = compare_on_batch(decoder, problem, JIIOSettings(iterations=args.iters), adam, args.adam_max_steps,
                             measure=median_of_repeats)
    summary = summarize_comparisons([batch], args.adam_max_steps)
    jiio_s = batch.jiio.seconds

    def row(name, result):
        print(f"{name:28s} {result.iterations:6d} {1000 * result.seconds / len(images):12.2f}"
              f" {float(result.cost.mean()):10.2f} {psnr(result.images.cpu(), images, value_range=SIGNED_RANGE):8.2f}"
              f" {jiio_s and result.seconds / jiio_s:8.2f}")

    print(f"\n{args.task}, {len(images)} images {size}px, each Adam step solves forward (Anderson) and backward "
          f"to {args.adam_tol:g} in at most {args.adam_max_iter} solver iterations each; Adam runs at most "
          f"{args.adam_max_steps} steps to JIIO's loss; device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"{'method':28s} {'iters':>6s} {'ms/image':>12s} {'cost':>10s} {'PSNR':>8s} {'vs JIIO':>8s}")
    row("JIIO", batch.jiio)
    for settings, result in zip(adam, batch.sweep):
        row(f"Adam lr {settings.lr:g}, equal iters", result)
    lr = batch.adam_settings.lr
    row(f"Adam lr {lr:g}, to JIIO's loss", batch.to_equal_loss)
    equal_iterations, equal_loss = summary["equal_iterations"], summary["equal_loss"]
    reached = equal_loss["reached"]
    print(f"\nJIIO is {equal_iterations['time_ratio']:.1f}x faster than Adam (lr {lr:g}) at equal iterations "
          f"({args.iters}), and {'' if reached else '>= '}{equal_loss['time_ratio']:.1f}x faster to equal loss "
          f"({batch.to_equal_loss.iterations} Adam steps{'' if reached else ', not reached'}); "
          f"JIIO cost {batch.target_cost:.2f}, Adam at equal iterations {equal_iterations['adam_cost']:.2f}.")


if __name__ == "__main__":
    main()
