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


def matched_with_note(images: torch.Tensor, channels: int, model: str, notes: list[str]) -> torch.Tensor:
    """Test images (N, C, H, W) with the channel count of the ``model`` ("decoder", "classifier") they go to,
    saying so in ``notes`` when they had to change."""
    if images.shape[1] != channels:
        notes.append(f"test images converted to gray (the {model} is single-channel)" if channels == 1
                     else f"gray test images repeated to {channels} channels")
    return match_channels(images, channels)
