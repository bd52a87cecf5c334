"""Benchmark: how fast each learning rate and schedule reaches a PSNR, for the default recipe's choice.

Fits camera (resized to --size) once per learning rate in --lrs and schedule in --schedules, in one process (so a
compiled step is compiled once), in the default precision and compile mode of the device, and prints per run: the
step and training seconds at which the full-batch training PSNR first reaches 25, 30 and 35 dB, and the PSNR of
the full evaluation at --steps (of the last step's network). A recipe is a better default when it reaches 30 dB
sooner without a lower final PSNR.

    python benchmarks/recipe_sweep.py --size 64 --steps 300 --lrs 1e-4,3e-4,1e-3     # CPU, a minute
    python benchmarks/recipe_sweep.py --size 512 --steps 2000 --device cuda          # SIREN at 512 px
    python benchmarks/recipe_sweep.py --size 512 --steps 2000 --device cuda --schedules constant,cosine
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_args import at_least, name_list, number_list, one_of  # noqa: E402
from fit_image import camera  # noqa: E402

from inr_cli.modalities.image import IMAGE  # noqa: E402
from inr_core.errors import InvalidSetting  # noqa: E402
from models import model_names  # noqa: E402
from training.fitting.config import FitConfig, resolve_config  # noqa: E402
from training.fitting.fit import fit  # noqa: E402
from training.fitting.signal import image_signal  # noqa: E402
from training.schedule import LR_SCHEDULES  # noqa: E402

THRESHOLDS = (25.0, 30.0, 35.0)


def first_step_at(batch_psnr: list[float], threshold: float) -> int | None:
    return next((step for step, value in enumerate(batch_psnr, 1) if value >= threshold), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--model", default="siren")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=None, help="default: 3 for SIREN, 1 otherwise")
    parser.add_argument("--lrs", default="1e-4,2e-4,5e-4,1e-3")
    parser.add_argument("--schedules", default="constant", help="comma-separated: constant, cosine")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    for option in ("--size", "--steps", "--hidden", "--layers"):
        at_least(parser, option, getattr(args, option[2:]), 1)
    one_of(parser, "--model", args.model, model_names(), "model")
    schedules = name_list(parser, "--schedules", args.schedules, LR_SCHEDULES, "schedule")
    lrs = number_list(parser, "--lrs", args.lrs, float)

    signal = image_signal(camera(args.size))
    layers = args.layers if args.layers is not None else (3 if args.model == "siren" else 1)
    base = FitConfig(model=args.model, hidden=args.hidden, layers=layers, steps=args.steps, device=args.device,
                     batch_size=args.size ** 2, eval_every=0)
    recipe_lr = resolve_config(base, signal, IMAGE.recipe).lr
    configs = [FitConfig(**{**base.__dict__, "lr": lr, "lr_schedule": schedule})
               for schedule in schedules for lr in lrs]
    for config in configs:  # all of them before the first fit
        try:
            config.validate()
        except InvalidSetting as error:
            parser.error(str(error))
    rows = []
    for config in configs:
        result = fit(signal, resolve_config(config, signal, IMAGE.recipe))
        ms = 1e3 / result.steps_per_second
        rows.append((config.lr, config.lr_schedule, ms, result,
                     [first_step_at(result.batch_psnr, t) for t in THRESHOLDS]))

    config = rows[0][3].config
    gpu = f" ({torch.cuda.get_device_name(0)})" if config.device.startswith("cuda") else ""
    print(f"{args.model} {layers}L-{args.hidden}D, camera {args.size}x{args.size}, {args.steps} steps, full batch, "
          f"{config.precision}{', compiled' if config.compile else ''}, device {config.device}{gpu}; "
          f"the recipe's rate here is {recipe_lr:g}")
    print(f"{'lr':>8}{'schedule':>10}{'ms/step':>9}"
          + "".join(f"{'step to ' + str(int(t)):>13}{'s':>7}" for t in THRESHOLDS)
          + f"{'PSNR @' + str(args.steps):>12}")
    for lr, schedule, ms, result, steps in rows:
        line = f"{lr:>8g}{schedule:>10}{ms:>9.2f}"
        for step in steps:
            line += f"{'-':>13}{'-':>7}" if step is None else f"{step:>13}{step * ms / 1e3:>7.2f}"
        print(line + f"{result.final.psnr:>12.2f}")


if __name__ == "__main__":
    main()
