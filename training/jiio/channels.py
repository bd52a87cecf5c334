"""Gray and colour image batches made to agree: the one place where a channel count is matched.

Used wherever two image sets meet with different channel counts: test images against a decoder, real images
against generated ones for FID, gray images in a colour collection, and the Inception network's RGB input.
"""

from __future__ import annotations

import torch


def match_channels(images: torch.Tensor, channels: int, dim: int = 1) -> torch.Tensor:
    """``images`` with ``channels`` channels along ``dim``: gray is repeated into every channel, colour is averaged
    into gray, and a batch that already matches is returned as it is."""
    have = images.shape[dim]
    if have == channels:
        return images
    if channels == 1:
        return images.mean(dim=dim, keepdim=True)
    if have != 1:
        raise ValueError(f"cannot turn {have}-channel images into {channels} channels; only gray converts")
    repeats = [1] * images.dim()
    repeats[dim] = channels
    return images.repeat(*repeats)
