"""`inr sample DECODER_CKPT -n 64`: draw latents from the Gaussian mixture fitted to a JIIO-trained decoder's
training latents, decode them at their equilibria, write a grid (and, with --fid, FID against real images)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from inr_cli.media.datasets import load_images
from inr_cli.jiio.fid_model import fid_report, load_fid_model
from inr_cli.figures import write_image_grid
from inr_cli.files import atomic_write_text, prepare_output_dir
from inr_cli.reports import REPORT_VERSION, to_json, versions
from training.jiio.channels import match_channels
from training.jiio.decoder_checkpoint import decoder_from_payload
from training.fitting.devices import resolve_device
from inr_core.errors import UserError
from training.jiio.latent_density import fit_gaussian_mixture, sample_gaussian_mixture

GRID_LIMIT = 256  # images shown in the grid; FID uses all of them
FID_REAL_IMAGES = 10_000  # the usual count on the real side


def sample_decoder(checkpoint: Path, payload: dict, *, out: Path | None, device_name: str = "auto",
                   count: int | None = None, fid: str | None = None, fid_model: Path | None = None,
                   fid_count: int | None = None, seed: int = 0, as_json: bool = False) -> Path | None:
    """Draw ``count`` images (default 64); the options were checked by ``DecoderSampleOptions.validate``."""
    count = 64 if count is None else count
    fid_count = FID_REAL_IMAGES if fid_count is None else fid_count
    out = out or checkpoint.parent / f"samples-{count}.png"
    if out.suffix.lower() != ".png":
        raise UserError(f"{out}: decoder samples are written as a PNG grid; give a .png file name")
    device = resolve_device(device_name)
    decoder, config = decoder_from_payload(payload, str(checkpoint), device)
    decoder.requires_grad_(False)
    model, reason = load_fid_model(fid_model) if fid is not None else (None, None)
    real = load_images(fid, config.image_size, limit=fid_count) if fid is not None else None
    density = payload.get("density")
    notes = []
    if density is None:  # a checkpoint written mid-training: fit the mixture now, from the latents it holds
        density = fit_gaussian_mixture(payload["latents"].float(), seed=config.seed)
        notes.append(f"latent density fitted now from the checkpoint's {len(payload['latents'])} latents "
                     f"(training had not finished)")
    latents = sample_gaussian_mixture(density, count, torch.Generator().manual_seed(seed)).to(device)
    images, residuals = decoder.generate(latents)
    images = images.cpu()
    prepare_output_dir(out.parent)
    write_image_grid(out, [images[:GRID_LIMIT]], columns=16)
    report = {
        "report_version": REPORT_VERSION, "command": "sample", "checkpoint": str(checkpoint), "samples": count,
        "grid": str(out), "seed": seed, "density_components": int(density["weights"].numel()),
        "equilibrium_rel_residual_max": float(residuals.max()),
        "equilibrium_rel_residual_mean": float(residuals.mean()),
        "notes": notes, "versions": versions(),
    }
    if real is not None:
        real = match_channels(real, images.shape[1])
        report["fid_real_images"] = fid
        report.update(fid_report(model, reason, real, images, device, model_path=fid_model))
    report_path = out.with_suffix(".json")
    atomic_write_text(report_path, to_json(report) + "\n")
    if as_json:
        sys.stdout.write(to_json(report, indent=None) + "\n")
        return None
    if real is not None:
        fid_text = (f"FID {report['fid']:.2f} ({count} samples vs {len(real)} real images)"
                    if report.get("fid") is not None else f"FID unavailable: {report['fid_unavailable']}")
        print(fid_text, file=sys.stderr)
    return out
