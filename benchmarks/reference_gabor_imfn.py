"""Benchmark: our Gabor-iMFN and training step against the implicit-layer paper's released code, same weights.

For each seed the reference code builds its Gabor-iMFN 1L (spectral norm 0.97, amortized fixpoint, one-step
backward) with its own initialisation; those weights (and its power-iteration vectors) are copied into
``models.implicit.ImplicitINR``, and each network is then trained by its own loop: the reference's (solve once,
then one f evaluation per step from the last step's output, the one-step backward) and ours
(``training.fitting.amortized.FixpointCache`` with the truncated Neumann backward). Same image (camera, resized
with Lanczos), full batch, Adam at one learning rate, fp32. It prints, per seed, both final PSNRs (a solve from
zero, as each code evaluates) and the loss of both loops at a few steps; then the mean paired difference against
the seed-to-seed spread.

A full-size run is long on a CPU (camera 512², 2,000 steps: about 2.5 s per step and loop on two cores), so
``--losses FILE`` keeps every step's loss of both loops in a JSON file, rewritten every ``--save-every`` steps: a
run cut short still leaves both training curves to compare at equal steps.

It needs a checkout of the reference code (github.com/locuslab/ImpSq), whose ``modules`` package it imports;
nothing of it is copied here. Two of that package's imports (plyfile, configargparse) serve other scripts and are
stubbed.

    python benchmarks/reference_gabor_imfn.py --reference ~/src/ImpSq --size 128 --steps 500 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inr_cli.files import atomic_write_text  # noqa: E402
from models.implicit import ImplicitINR  # noqa: E402
from training.fitting.amortized import FixpointCache  # noqa: E402
from training.fitting.render import grid_coordinates  # noqa: E402

LOGGED_STEPS = (0, 1, 10, 100, 1000)


def camera(size: int) -> torch.Tensor:
    """(size^2, 1) values in [-1, 1], row-major."""
    image = Image.fromarray(data.camera()).resize((size, size), Image.LANCZOS)
    return torch.tensor(np.asarray(image, dtype=np.float32) / 255.0).reshape(-1, 1) * 2 - 1


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """On [0, 1], clamped, as both codes report it."""
    mse = float((((prediction + 1) / 2).clamp(0, 1) - (target + 1) / 2).pow(2).mean())
    return -10 * math.log10(mse)


def reference_model(hidden: int, input_scale: float):
    from modules.modeling_utils import construct_model_args, get_model
    config = construct_model_args("implicit", 1, 2, hidden, 1, input_scale=input_scale, use_implicit=True,
                                  filter_type="gabor", filter_options={"alpha": 3.0}, norm_type="spectral_norm",
                                  forward_solver="forward_iter", backward_solver="onestep")
    return get_model(config)


def ours_from(reference, hidden: int, input_scale: float) -> ImplicitINR:
    """Our network holding the reference network's weights (coordinates are given to both in one order)."""
    ours = ImplicitINR(2, 1, hidden, 1, input_scale, kind="gabor")
    mfn = reference.implicit_layer.f
    layer = mfn.layers[0]
    with torch.no_grad():
        for mine, theirs in ((ours.filters[0], mfn.init_filter), (ours.filters[1], layer.filter)):
            mine.linear.weight.copy_(theirs.x_map.weight)
            mine.linear.bias.copy_(theirs.x_map.bias)
            mine.mu.copy_(theirs.mu)
            mine.gamma.copy_(theirs.gamma)
        ours.linears[0].weight.copy_(layer.z_map.weight_orig)
        ours.linears[0].bias.copy_(layer.z_map.bias)
        ours.head.weight.copy_(reference.output_map.weight)
        ours.head.bias.copy_(reference.output_map.bias)
        ours.norms[0].u.copy_(layer.z_map.weight_u)
        ours.norms[0].v.copy_(layer.z_map.weight_v)
    return ours


class LossLog:
    """Every step's loss of both loops, per seed, rewritten atomically to a JSON file every few steps."""

    def __init__(self, path: Path | None, every: int, settings: dict):
        self.path, self.every, self.record = path, every, {"settings": settings, "seeds": {}}

    def losses(self, seed: int, loop: str) -> list[float]:
        return self.record["seeds"].setdefault(str(seed), {}).setdefault(loop, [])

    def step_done(self, losses: list[float]) -> None:
        if self.path is not None and len(losses) % self.every == 0:
            self.save()

    def finish(self, seed: int, reference_psnr: float, ours_psnr: float) -> None:
        self.record["seeds"][str(seed)].update(reference_psnr=reference_psnr, ours_psnr=ours_psnr)
        self.save()

    def save(self) -> None:
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(self.record))


def train_reference(model, coords, target, steps: int, lr: float, losses: list[float],
                    log: LossLog) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    z = torch.zeros(len(coords), model.interm_channels)
    for step in range(steps):
        out = model(coords, z, skip_solver=step > 0)
        z = out["imp_layer_output"].detach()
        loss = torch.mean((out["output"] - target) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        log.step_done(losses)
    with torch.no_grad():
        final = model(coords, torch.zeros(1, model.interm_channels))["output"]
    return psnr(final, target)


def train_ours(model: ImplicitINR, coords, target, steps: int, lr: float, losses: list[float], log: LossLog) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    cache = FixpointCache(len(coords), model.hidden, torch.device("cpu"))
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.mean((cache.predict(model, coords, None) - target) ** 2)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        log.step_done(losses)
    model.eval()
    with torch.no_grad():
        final = model(coords)
    return psnr(final, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of github.com/locuslab/ImpSq")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--lr", type=float, default=None, help="default: ours at --size (3e-3 at 128 px)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--losses", type=Path, default=None, help="keep every step's loss of both loops here (JSON)")
    parser.add_argument("--save-every", type=int, default=100, help="steps between rewrites of --losses")
    args = parser.parse_args()
    if not (args.reference / "modules" / "models.py").exists():
        sys.exit(f"{args.reference}: not a checkout of the reference code (no modules/models.py)")
    for stub in ("plyfile", "configargparse"):
        sys.modules.setdefault(stub, types.ModuleType(stub))
    sys.path.insert(0, str(args.reference))

    from training.fitting.recipes import learning_rate_for_side
    lr = args.lr or learning_rate_for_side("gabor-imfn", args.size)
    scale = args.size / 2  # our input scale at this side (the paper's 256 at 512 px)
    target, coords = camera(args.size), grid_coordinates((args.size, args.size))
    print(f"Gabor-iMFN 1L-{args.hidden}D, camera {args.size} px, {args.steps} full-batch steps, Adam {lr:g}, "
          f"input scale {scale:g}, fp32, {torch.get_num_threads()} threads")
    log = LossLog(args.losses, args.save_every,
                  {"size": args.size, "steps": args.steps, "lr": lr, "hidden": args.hidden, "input_scale": scale,
                   "loss": "mean squared error on [-1, 1] of the amortized training prediction"})
    pairs = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        np.random.seed(seed)
        reference = reference_model(args.hidden, scale)
        ours = ours_from(reference, args.hidden, scale)
        started = time.perf_counter()
        theirs_losses, our_losses = log.losses(seed, "reference"), log.losses(seed, "ours")
        theirs = train_reference(reference, coords, target, args.steps, lr, theirs_losses, log)
        middle = time.perf_counter()
        mine = train_ours(ours, coords, target, args.steps, lr, our_losses, log)
        ended = time.perf_counter()
        pairs.append((theirs, mine))
        log.finish(seed, theirs, mine)
        print(f"seed {seed}: reference {theirs:.2f} dB ({middle - started:.0f} s), ours {mine:.2f} dB "
              f"({ended - middle:.0f} s), difference {mine - theirs:+.2f} dB")
        print("  loss at step " + ", ".join(f"{s}: {theirs_losses[s]:.5g} / {our_losses[s]:.5g}"
                                            for s in LOGGED_STEPS if s < args.steps))
    theirs_all, ours_all = [p[0] for p in pairs], [p[1] for p in pairs]
    differences = [m - t for t, m in pairs]
    print(f"reference {statistics.mean(theirs_all):.2f} dB (range {min(theirs_all):.2f}-{max(theirs_all):.2f}), "
          f"ours {statistics.mean(ours_all):.2f} dB (range {min(ours_all):.2f}-{max(ours_all):.2f}); "
          f"paired difference {statistics.mean(differences):+.2f} dB"
          + (f" +- {statistics.stdev(differences):.2f}" if len(differences) > 1 else ""))


if __name__ == "__main__":
    main()
