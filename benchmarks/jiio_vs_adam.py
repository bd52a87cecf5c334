"""Benchmark: JIIO against the Adam baseline (a full DEQ solve and exact implicit backward per step) on one decoder
and the same test images. Prints ms per inversion (per image), cost reached and PSNR, then JIIO/Adam time ratios
at equal iterations and to equal loss (Adam run until its cost reaches JIIO's). Adam's learning rate is swept and
the best is used, so the baseline is not handicapped by a poor step size. The paper reports 3.5-9x for JIIO.

    python benchmarks/jiio_vs_adam.py --decoder runs/fmnist/decoder.pt \\
        --images /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz           # CPU, small preset
    python benchmarks/jiio_vs_adam.py --train 2000 --epochs 10                        # trains a decoder first
    python benchmarks/jiio_vs_adam.py --decoder runs/faces64/decoder.pt --images faces/ --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from inr_cli.media.datasets import load_images
from inr_cli.sample import read_checkpoint
from training.jiio.decoder_checkpoint import decoder_from_payload
from training.fitting.devices import resolve_device
from training.jiio.inverse_tasks import Corruption, corrupt, psnr01, restore, restore_adam
from training.jiio.inference import JIIOSettings
from training.jiio.decoder_training import DecoderConfig, train_decoder

FASHION = "/usr/share/datasets/fashion-mnist/"


def decoder_for(args, device):
    if args.decoder:
        payload = read_checkpoint(Path(args.decoder))
        decoder, config = decoder_from_payload(payload, args.decoder, device)
        return decoder, config.image_size
    config = DecoderConfig(preset=args.preset, epochs=args.epochs, device=str(device))
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
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--adam-lrs", default="0.01,0.03,0.1")
    parser.add_argument("--adam-max-steps", type=int, default=400)
    parser.add_argument("--adam-tol", type=float, default=1e-4,
                        help="relative residual for Adam's per-step forward and backward solves")
    parser.add_argument("--adam-max-iter", type=int, default=50,
                        help="cap on each of Adam's per-step solves (a lower cap is a cheaper, rougher baseline)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    decoder, size = decoder_for(args, device)
    for p in decoder.parameters():
        p.requires_grad_(False)
    images = load_images(args.images, size)[:args.count]
    corrupted = corrupt(images, args.task, mask_size=max(1, round(size * 20 / 64)),
                        generator=torch.Generator().manual_seed(0))
    problem = Corruption(corrupted.observed.to(device), corrupted.mask.to(device))
    settings = JIIOSettings(iterations=args.iters, step_size=0.05)

    def timed(run):
        results = [run() for _ in range(args.repeats)]
        return results[-1], statistics.median(r.seconds for r in results)

    restore(decoder, problem, JIIOSettings(iterations=2))  # warm-up (allocator, kernels)
    jiio, jiio_s = timed(lambda: restore(decoder, problem, settings))
    jiio_cost = float(jiio.cost.mean())

    def row(name, result, seconds):
        print(f"{name:28s} {result.iterations:6d} {1000 * seconds / len(images):12.2f}"
              f" {float(result.cost.mean()):10.2f} {psnr01(result.images.cpu(), images):8.2f}"
              f" {jiio_s and seconds / jiio_s:8.2f}")

    print(f"\n{args.task}, {len(images)} images {size}px, Adam solves to {args.adam_tol:g} "
          f"(at most {args.adam_max_iter} steps), device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"{'method':28s} {'iters':>6s} {'ms/image':>12s} {'cost':>10s} {'PSNR':>8s} {'vs JIIO':>8s}")
    row("JIIO", jiio, jiio_s)
    best = None
    for lr in (float(v) for v in args.adam_lrs.split(",")):
        adam, adam_s = timed(lambda: restore_adam(decoder, problem, steps=args.iters, lr=lr, tol=args.adam_tol,
                                                           max_iter=args.adam_max_iter))
        row(f"Adam lr {lr:g}, equal iters", adam, adam_s)
        if best is None or float(adam.cost.mean()) < best[1]:
            best = (lr, float(adam.cost.mean()), adam_s)
    lr = best[0]
    chase, chase_s = timed(lambda: restore_adam(decoder, problem, steps=args.adam_max_steps, lr=lr,
                                                target_cost=jiio_cost, tol=args.adam_tol,
                                                max_iter=args.adam_max_iter))
    reached = chase.cost_trace[-1] <= jiio_cost
    row(f"Adam lr {lr:g}, to JIIO's loss", chase, chase_s)
    print(f"\nJIIO is {best[2] / jiio_s:.1f}x faster than Adam (lr {lr:g}) at equal iterations ({args.iters}), "
          f"and {'' if reached else '>= '}{chase_s / jiio_s:.1f}x faster to equal loss "
          f"({chase.iterations} Adam steps{'' if reached else ', not reached'}); "
          f"JIIO cost {jiio_cost:.2f}, Adam at equal iterations {best[1]:.2f}.")


if __name__ == "__main__":
    main()
