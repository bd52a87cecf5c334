"""Fréchet Inception Distance: the distance between two Gaussians fitted to Inception features of two image sets.

Tensors in, numbers out; which network computes the features is the caller's choice (``inr_cli.jiio.fid_model``
finds and loads one). The network is expected to take ``(N, 3, 299, 299)`` images in TensorFlow-Inception's
input range ``(-1, 0.9921875)`` and return ``(N, 2048)`` pooled features.

Two cautions for anyone reading the numbers:

* The images are resized to 299x299 here, with torch's bilinear interpolation. Other FID implementations
  resample differently (PIL, TensorFlow, antialiased or not), and FID is sensitive to that, so our values
  are comparable between our own runs but not necessarily digit-for-digit with numbers from other code.
* FID is biased upward when few samples are used: the covariance estimates are noisy, and the noise adds
  distance. Values from different sample counts are not comparable, so a report should carry the count.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from training.jiio.channels import match_channels

INCEPTION_SIZE = 299
INCEPTION_RANGE = (-1.0, 0.9921875)  # TensorFlow-Inception's input convention: 255 levels mapped to [-1, 1 - 1/128]


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))`` between two Gaussians.

    When the product of the covariances is too close to singular for a finite matrix square root
    (common with fewer samples than feature dimensions), ``eps`` times the identity is added to both
    covariances and the root is taken again. A negligible imaginary part of the root (numerical noise)
    is dropped; a large one means the inputs are not valid covariances and raises ValueError.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched Gaussian parameters: means {mu1.shape}, {mu2.shape}; "
                         f"covariances {sigma1.shape}, {sigma2.shape}")

    diff = mu1 - mu2
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(root).all():
        offset = np.eye(sigma1.shape[0]) * eps
        root = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        largest_imaginary = np.max(np.abs(root.imag))
        if not np.allclose(np.diagonal(root).imag, 0.0, atol=1e-3):
            raise ValueError(f"matrix square root has a large imaginary part ({largest_imaginary:.3g}): "
                             "the covariances are not positive semi-definite")
        root = root.real
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))
    # Rounding can leave a tiny negative value for identical distributions; a distance is never negative.
    return max(distance, 0.0)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples) of ``(N, D)`` features, as float64. Needs at least 2 rows."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be a (samples, dimensions) array, got shape {features.shape}")
    if features.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {features.shape[0]}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance_of_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two ``(N, D)`` feature sets (each needs at least 2 rows).

    For small sets (``N1 * N2 <= D * D``, e.g. a few hundred images against 2048 Inception features) this
    avoids the ``D x D`` matrix square root, which costs tens of seconds on a small CPU and is least accurate
    exactly there, because covariances from fewer samples than dimensions are singular. With ``A`` and ``B``
    the centred features, ``sigma1 sigma2 = A^T A B^T B / c`` (``c = (N1 - 1)(N2 - 1)``) has the same non-zero
    eigenvalues as ``(A B^T)(A B^T)^T / c``, so ``Tr sqrtm(sigma1 sigma2)`` is the sum of the singular values
    of ``A B^T`` divided by ``sqrt(c)``: exact, from an ``N1 x N2`` SVD. Larger sets take the usual route
    through :func:`frechet_distance`.
    """
    features1 = np.asarray(features1, dtype=np.float64)
    features2 = np.asarray(features2, dtype=np.float64)
    for features in (features1, features2):
        if features.ndim != 2:
            raise ValueError(f"features must be a (samples, dimensions) array, got shape {features.shape}")
        if features.shape[0] < 2:
            raise ValueError(f"a covariance needs at least 2 samples, got {features.shape[0]}")
    if features1.shape[1] != features2.shape[1]:
        raise ValueError(f"feature dimensions differ: {features1.shape[1]} and {features2.shape[1]}")
    (n1, dims), n2 = features1.shape, features2.shape[0]
    if n1 * n2 > dims * dims:
        return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))
    mu1, mu2 = features1.mean(axis=0), features2.mean(axis=0)
    centred1, centred2 = features1 - mu1, features2 - mu2
    scale1, scale2 = n1 - 1.0, n2 - 1.0
    trace_root = np.linalg.svd(centred1 @ centred2.T, compute_uv=False).sum() / np.sqrt(scale1 * scale2)
    diff = mu1 - mu2
    distance = float(diff @ diff + np.sum(centred1 ** 2) / scale1 + np.sum(centred2 ** 2) / scale2
                     - 2.0 * trace_root)
    return max(distance, 0.0)


def _inception_input(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, S, S)`` images in [-1, 1] (C = 1 or 3) as ``(B, 3, 299, 299)`` in the Inception input range."""
    unit = match_channels(((images.float() + 1.0) * 0.5).clamp(0.0, 1.0), 3)
    resized = F.interpolate(unit, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                            align_corners=False, antialias=False)
    low, high = INCEPTION_RANGE
    return (resized * (high - low) + low).clamp(low, high)


def inception_features(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 32,
                       device: str | torch.device = "cpu") -> np.ndarray:
    """Features of ``(N, C, S, S)`` images in [-1, 1] (C = 1 or 3), as a float64 ``(N, 2048)`` array.

    Images are resized and fed in batches of ``batch_size``, so thousands of images need only one
    batch's worth of 299x299 inputs and activations at a time. Spatial feature maps, if the model
    returns them, are averaged away.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    batches = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = _inception_input(images[start:start + batch_size].to(device))
            features = model(batch)
            if features.ndim > 2:
                features = features.flatten(2).mean(dim=2)
            batches.append(features.double().cpu())
    if not batches:
        return np.zeros((0, 0), dtype=np.float64)
    return torch.cat(batches).numpy()


def fid(model: torch.nn.Module, real: torch.Tensor, generated: torch.Tensor, batch_size: int = 32,
        device: str | torch.device = "cpu") -> float:
    """FID between two ``(N, C, S, S)`` image sets in [-1, 1] (each needs at least 2 images)."""
    return frechet_distance_of_features(inception_features(model, real, batch_size, device),
                                        inception_features(model, generated, batch_size, device))
