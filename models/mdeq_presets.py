"""The MDEQ decoder's sizes, as plain data: importable without torch, so `inr jiio-invert --help` can list the
presets before the decoder itself is loaded (:mod:`models.mdeq` builds a decoder from one)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderPreset:
    image_size: int
    channels: tuple[int, ...]  # per branch, highest resolution first
    latent_dim: int
    groups: int = 4
    # The latent enters each branch as an injection_base x injection_base map, upsampled: a linear map to the full
    # resolution would cost (channels * side^2) x latent parameters. A quarter of the side measured best at 28 px
    # (test reconstruction 16.9 dB against 16.3 dB with 4 x 4, Fashion-MNIST, same training).
    injection_base: int = 4


PRESETS = {
    # trains on a CPU at 28-32 px
    "small": DecoderPreset(image_size=28, channels=(16, 32), latent_dim=32, injection_base=7),
    "large": DecoderPreset(image_size=64, channels=(32, 64, 128, 256), latent_dim=64, groups=8,
                           injection_base=8),  # 64 px, GPU
}
