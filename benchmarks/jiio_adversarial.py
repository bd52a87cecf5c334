"""The JIIO paper's adversarial-training table on Fashion-MNIST (Debian: dataset-fashion-mnist): train a clean, a
PGD-trained and a JIIO-trained MDEQ classifier in one run, then print the 3 x 3 table of accuracy (train: rows,
test: clean / PGD / JIIO columns), the attack time per batch (JIIO against 20-step PGD, on the same model) and the
training time per epoch of each adversary.

    python benchmarks/jiio_adversarial.py --quick            # CPU, ~15 minutes on one thread
    python benchmarks/jiio_adversarial.py --device cuda --budget 540   # GPU, one device call
    python benchmarks/jiio_adversarial.py --train 64 --test 32 --epochs 1 --preset tiny --image-size 16  # smoke

With ``--budget SECONDS`` the run fits a wall-time budget (a device call): every model trains one epoch, the
times of those epochs and of their attacks project the rest, and all three models train as many epochs (up to
``--epochs``, the same for all) as the budget leaves room for after the evaluation. The epochs actually trained
are printed.

The paper (MNIST, eps 1): JIIO-trained 99.32 / 95.74 / 96.63, PGD-trained 99.18 / 96.53 / 95.74, clean-trained
99.45 / 80.1 / 65.88; one attacked batch 1,401 ms with 80 JIIO iterations against 4,360 ms with 20 PGD steps.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench_args import at_least, one_of
from inr_cli.media.labelled import load_labelled
from models.mdeq_classifier_presets import PRESETS
from training.jiio.robust.classifier_training import evaluate, train_classifier
from training.jiio.robust.config import ADVERSARIES, AttackSettings, RobustConfig

# The Debian package's files, or a copy elsewhere (a machine without the package): FASHION_DIR=folder.
FASHION = Path(os.environ.get("FASHION_DIR", "/usr/share/datasets/fashion-mnist"))
SIZES = {"quick": dict(train=3000, test=512, epochs=3, preset="small", image_size=28),
         "full": dict(train=20000, test=2000, epochs=10, preset="large", image_size=32)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CPU size (default: the GPU size)")
    for name in ("train", "test", "epochs", "image_size"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int)
    parser.add_argument("--preset")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pgd-steps", type=int, default=20)
    parser.add_argument("--jiio-iters", type=int, default=AttackSettings.jiio_iterations)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (small convolutions: 1 is fastest)")
    parser.add_argument("--budget", type=float, help="seconds the whole run may take: fewer epochs if needed")
    args = parser.parse_args()
    for option in ("--train", "--test", "--epochs", "--image-size", "--batch-size", "--pgd-steps", "--jiio-iters",
                   "--threads"):
        at_least(parser, option, getattr(args, option[2:].replace("-", "_")), 1)
    if args.preset is not None:
        one_of(parser, "--preset", args.preset, PRESETS, "preset")
    torch.set_num_threads(args.threads)
    size = dict(SIZES["quick" if args.quick else "full"])
    size.update({k: v for k, v in vars(args).items() if k in size and v is not None})
    images = FASHION / "train-images-idx3-ubyte.gz"
    data = load_labelled(str(images), size["image_size"], limit=size["train"] + size["test"])
    train = (data.images[:size["train"]], data.labels[:size["train"]])
    test = (data.images[size["train"]:], data.labels[size["train"]:])
    attack = AttackSettings(epsilon=args.epsilon, pgd_steps=args.pgd_steps, jiio_iterations=args.jiio_iters)
    print(f"Fashion-MNIST {size['image_size']} px, {size['train']} training / {size['test']} test images, "
          f"{size['preset']} MDEQ classifier, {size['epochs']} epochs, L2 eps {args.epsilon:g}, "
          f"PGD {args.pgd_steps} steps, JIIO {args.jiio_iters} iterations, batch {args.batch_size}, {args.device}, "
          f"{torch.get_num_threads()} threads", flush=True)
    configs = {adversary: RobustConfig(preset=size["preset"], image_size=size["image_size"], adversary=adversary,
                                       attack=attack, epochs=size["epochs"], batch_size=args.batch_size)
               for adversary in ADVERSARIES}
    run_started = time.perf_counter()
    states, epoch_seconds = {}, {}
    if args.budget is not None:
        # One epoch each, then as many more (the same for all) as the budget leaves after the evaluation.
        for adversary, config in configs.items():
            states[adversary] = train_classifier(replace(config, epochs=1), *train, device=args.device)
            epoch_seconds[adversary] = states[adversary].history[-1]["seconds"]
        epochs = affordable_epochs(args.budget - (time.perf_counter() - run_started), epoch_seconds, states,
                                   len(test[0]), size["train"], args.batch_size, size["epochs"])
        print(f"  budget {args.budget:.0f} s: first epochs took "
              + ", ".join(f"{a} {s:.1f} s" for a, s in epoch_seconds.items()) + f"; training {epochs} epoch(s)",
              flush=True)
        configs = {adversary: replace(config, epochs=epochs) for adversary, config in configs.items()}
    rows = {}
    for adversary, config in configs.items():
        started = time.perf_counter()
        state = train_classifier(config, *train, state=states.get(adversary), device=args.device)
        seconds = sum(record["seconds"] for record in state.history) / len(state.history)
        summary = evaluate(state.model, *test, config, device=args.device).summary()
        rows[adversary] = (summary, seconds)
        print(f"  trained {adversary}: {config.epochs} epoch(s), {seconds:.1f} s/epoch "
              f"({time.perf_counter() - started:.0f} s with the evaluation); clean "
              f"{summary['clean']['accuracy']:.2%}, PGD {summary['pgd']['accuracy']:.2%}, "
              f"JIIO {summary['jiio']['accuracy']:.2%}", flush=True)
    print("\ntrain \\ test      clean      PGD     JIIO   s/epoch")
    for adversary, (summary, seconds) in rows.items():
        print(f"{adversary:12s} {summary['clean']['accuracy']:8.2%} {summary['pgd']['accuracy']:8.2%} "
              f"{summary['jiio']['accuracy']:8.2%} {seconds:9.1f}")
    print("\nattack per batch (same model)     PGD ms   JIIO ms  speed-up   PGD loss  JIIO loss")
    for adversary, (summary, _) in rows.items():
        pgd, jiio = summary["pgd"], summary["jiio"]
        print(f"  on the {adversary:4s}-trained model {pgd['ms_per_batch']:9.0f} {jiio['ms_per_batch']:9.0f} "
              f"{pgd['ms_per_batch'] / jiio['ms_per_batch']:8.2f}x {pgd['loss_mean']:10.3f} {jiio['loss_mean']:10.3f}")
    pgd_epoch, jiio_epoch = rows["pgd"][1], rows["jiio"][1]
    print(f"\nJIIO training time per epoch / PGD training's: {jiio_epoch / pgd_epoch:.2f}")
    print(f"whole run: {time.perf_counter() - run_started:.0f} s")


def affordable_epochs(seconds_left: float, epoch_seconds: dict, states: dict, test_count: int, train_count: int,
                      batch_size: int, most: int) -> int:
    """How many epochs (at least the one trained, at most ``most``) every model can train in ``seconds_left``,
    keeping room to evaluate each on the test images. A test batch costs about what a training batch spent on its
    attack: PGD's (as in PGD training) plus JIIO's (as in JIIO training) on each of the three models."""
    batches = math.ceil(train_count / batch_size)
    attack_batch = sum(states[a].history[-1]["attack_seconds"] / batches for a in ("pgd", "jiio"))
    evaluation = 3 * math.ceil(test_count / batch_size) * attack_batch
    more = int((seconds_left - evaluation) // sum(epoch_seconds.values()))
    return max(1, min(most, 1 + more))


if __name__ == "__main__":
    main()
