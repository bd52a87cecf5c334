"""Benchmark: every model in every precision mode, compiled and not, against the plain fp32 PyTorch loop.

One run, one device, the same seed and initialisation for every row. For each model it fits camera (resized to
--size) with the textbook loop (full batch, Adam, fp32, no inr machinery: the baseline), then with ``inr``'s fit
in each --modes precision, eager and compiled, and prints per row:

- ms/step (compilation excluded: it is the separate ``compile s`` column) and the ratio to the plain loop;
- PSNR on [0, 1] at half and all of --steps (full evaluations);
- training seconds until the PSNR first reaches 25, 30 and 35 dB (from the full-batch training loss, which is the
  training PSNR before each step's update, at ms/step times the step count);
- peak CUDA memory of the fit.

Implicit models get one more row: their explicit one-pass counterpart in the fastest mode, for the implicit /
explicit ratio. The last lines name, per model, the fastest mode whose final PSNR is within 0.2 dB of fp32 eager:
the evidence for the CUDA default precision. ``--budget-seconds`` skips (and says so) the rows that would start
after that much wall time, so the run fits one device call.

    python benchmarks/speed_modes.py --size 64 --steps 100 --compile off    # CPU, about two minutes
    python benchmarks/speed_modes.py --size 512 --steps 2000 --device cuda --budget-seconds 270
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_args import at_least, name_list  # noqa: E402
from bench_args import checkpoints as benchmark_checkpoints  # noqa: E402
from fit_image import camera, plain_loop  # noqa: E402

from inr_cli.modalities.image import IMAGE  # noqa: E402
from inr_cli.peak_memory import measure_peak_memory  # noqa: E402
from models import get_spec, model_names  # noqa: E402
from training.fitting.config import FitConfig, resolve_config  # noqa: E402
from training.fitting.fit import fit  # noqa: E402
from training.fitting.precision import PRECISIONS  # noqa: E402
from training.fitting.signal import image_signal  # noqa: E402

THRESHOLDS = (25.0, 30.0, 35.0)
SAME_PSNR_DB = 0.2  # a mode may be the default if its final PSNR is within this of fp32 eager


@dataclass
class Row:
    model: str
    label: str
    ms_per_step: float
    psnr: dict[int, float]
    batch_psnr: list[float]
    compile_seconds: float = 0.0
    peak_mb: float | None = None
    notes: list[str] = field(default_factory=list)

    def seconds_to(self, threshold: float) -> float | None:
        for step, value in enumerate(self.batch_psnr, 1):
            if value >= threshold:
                return step * self.ms_per_step / 1e3
        return None


def plain_row(config: FitConfig, pixels: torch.Tensor, checkpoints: list[int]) -> Row:
    with measure_peak_memory(torch.device(config.device)) as peak:
        plain = plain_loop(config, pixels, checkpoints)
    return Row(config.model, "plain fp32 loop", 1e3 * plain.seconds / config.steps, plain.psnr, plain.batch_psnr,
               peak_mb=peak.megabytes)


def inr_row(config: FitConfig, pixels: torch.Tensor, label: str) -> Row:
    device = torch.device(config.device)
    with measure_peak_memory(device) as peak:
        result = fit(image_signal(pixels), config)
    return Row(config.model, label, 1e3 / result.steps_per_second,
               {e["step"]: e["psnr"] for e in result.evaluations}, result.batch_psnr, result.compile_seconds,
               peak.megabytes, result.notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--models", default="siren,gabor-imfn,fourier-imfn",
                        help="SIREN runs 3x--hidden, the others 1L-(--hidden)D (the targets' sizes)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--modes", default=",".join(PRECISIONS), help="precision modes to run")
    parser.add_argument("--compile", choices=("both", "on", "off"), default="both")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget-seconds", type=float, default=None, help="skip rows starting after this")
    parser.add_argument("--json", default=None, help="also write every row here")
    args = parser.parse_args()
    for option in ("--size", "--steps", "--hidden"):
        at_least(parser, option, getattr(args, option[2:]), 1)
    models = name_list(parser, "--models", args.models, model_names(), "model")
    modes = name_list(parser, "--modes", args.modes, PRECISIONS, "precision")

    pixels = camera(args.size)
    signal = image_signal(pixels)
    checkpoints = benchmark_checkpoints(args.steps)
    compile_options = {"both": (False, True), "on": (True,), "off": (False,)}[args.compile]
    began = time.perf_counter()
    rows: list[Row] = []
    skipped: list[str] = []

    def within_budget(label: str) -> bool:
        if args.budget_seconds is not None and time.perf_counter() - began > args.budget_seconds:
            skipped.append(label)
            return False
        return True

    for name in models:
        layers = 3 if name == "siren" else 1
        base = resolve_config(FitConfig(model=name, hidden=args.hidden, layers=layers, steps=args.steps,
                                        device=args.device, batch_size=args.size ** 2, eval_every=checkpoints[0]),
                              signal, IMAGE.recipe)
        if within_budget(f"{name} plain"):
            rows.append(plain_row(base, pixels, checkpoints))
        for mode in modes:
            for compiled in compile_options:
                label = f"inr {mode} {'compiled' if compiled else 'eager'}"
                if within_budget(f"{name} {label}"):
                    rows.append(inr_row(replace(base, precision=mode, compile=compiled), pixels, label))
        if get_spec(name).implicit:
            ours = [r for r in rows if r.model == name and r.label.startswith("inr")]
            if ours and within_budget(f"{name} explicit"):
                fastest = min(ours, key=lambda r: r.ms_per_step)
                _, mode, how = fastest.label.split()
                rows.append(inr_row(replace(base, precision=mode, compile=how == "compiled", explicit=True),
                                    pixels, f"explicit {mode} {how}"))

    device = base.device
    gpu = f" ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else ""
    print(f"camera {args.size}x{args.size}, {args.steps} steps, full batch, device {device}{gpu}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {time.perf_counter() - began:.0f} s")
    head = f"{'model':<13}{'run':<24}{'ms/step':>9}{'x plain':>8}{'compile s':>10}"
    head += "".join(f"{'@' + str(s):>8}" for s in checkpoints)
    head += "".join(f"{'to ' + str(int(t)):>8}" for t in THRESHOLDS) + f"{'peak MB':>9}"
    print(head)
    for row in rows:
        plain = next((r for r in rows if r.model == row.model and r.label == "plain fp32 loop"), None)
        ratio = row.ms_per_step / plain.ms_per_step if plain else float("nan")
        line = f"{row.model:<13}{row.label:<24}{row.ms_per_step:>9.2f}{ratio:>8.2f}{row.compile_seconds:>10.1f}"
        line += "".join(f"{row.psnr.get(s, float('nan')):>8.2f}" for s in checkpoints)
        for threshold in THRESHOLDS:
            seconds = row.seconds_to(threshold)
            line += f"{'-' if seconds is None else f'{seconds:.2f}':>8}"
        line += f"{'-' if row.peak_mb is None else f'{row.peak_mb:.0f}':>9}"
        print(line + ("".join(f"  [{note}]" for note in row.notes)))
    for label in skipped:
        print(f"skipped (past --budget-seconds): {label}")

    print(f"\nfastest mode within {SAME_PSNR_DB} dB of fp32 eager at step {args.steps}, per model:")
    for name in models:
        reference = next((r for r in rows if r.model == name and r.label == "inr fp32 eager"), None)
        ours = [r for r in rows if r.model == name and r.label.startswith("inr ")]
        if reference is None or not ours:
            continue
        good = [r for r in ours if r.psnr[args.steps] >= reference.psnr[args.steps] - SAME_PSNR_DB]
        best = min(good, key=lambda r: r.ms_per_step)
        explicit = next((r for r in rows if r.model == name and r.label.startswith("explicit")), None)
        ratio = ""
        if explicit:
            twin = next(r for r in ours if r.label.split()[1:] == explicit.label.split()[1:])
            ratio = f"; implicit/explicit ms ratio {twin.ms_per_step / explicit.ms_per_step:.2f} ({explicit.label[9:]})"
        print(f"  {name}: {best.label[4:]} {best.ms_per_step:.2f} ms/step, {best.psnr[args.steps]:.2f} dB "
              f"(fp32 eager {reference.psnr[args.steps]:.2f} dB){ratio}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"device": device + gpu, "size": args.size, "steps": args.steps,
                       "rows": [{**row.__dict__, "batch_psnr": None,
                                 "seconds_to": {str(t): row.seconds_to(t) for t in THRESHOLDS}} for row in rows],
                       "skipped": skipped}, out, indent=1)


if __name__ == "__main__":
    main()
