"""A Gaussian mixture over latent codes, so a generative decoder can be sampled with codes that look like its own.

Fitting uses scikit-learn's EM once, after training; the result is plain tensors that go into a checkpoint,
and sampling needs only torch.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

REG_COVAR = 1e-4  # added to every covariance's diagonal: keeps components from collapsing onto a few codes


MIXTURE_COMPONENTS = 10  # components of the density fitted to a decoder's training latents


def fit_gaussian_mixture(latents: torch.Tensor, components: int = MIXTURE_COMPONENTS, seed: int = 0,
                         notes: list[str] | None = None) -> dict:
    """Fit a full-covariance Gaussian mixture to ``(N, D)`` latent codes.

    Uses ``min(components, N)`` components. Returns ``{"weights": (K,), "means": (K, D),
    "covariances": (K, D, D), "components": K}`` with float32 tensors, ready to store in a checkpoint.
    What scikit-learn warns while fitting (fewer distinct codes than components, no convergence) is appended to
    ``notes`` when given, instead of reaching the terminal.
    """
    # Imported here: fitting needs scikit-learn, sampling (and loading a checkpoint) does not.
    from sklearn.mixture import GaussianMixture

    if latents.ndim != 2:
        raise ValueError(f"latents must be a (count, dimensions) tensor, got shape {tuple(latents.shape)}")
    count = latents.shape[0]
    if count < 2:
        raise ValueError(f"fitting a latent density needs at least 2 latent codes, got {count}")
    if components < 1:
        raise ValueError(f"components must be at least 1, got {components}")
    k = min(components, count)
    mixture = GaussianMixture(n_components=k, covariance_type="full", reg_covar=REG_COVAR,
                              random_state=seed, n_init=1, max_iter=200)
    with warnings.catch_warnings(record=notes is not None) as caught:
        mixture.fit(latents.detach().cpu().double().numpy())
    for warning in caught or []:
        notes.append(f"latent density: {str(warning.message).strip()}")
    return {
        "weights": _float32(mixture.weights_),
        "means": _float32(mixture.means_),
        "covariances": _float32(mixture.covariances_),
        "components": k,
    }


def _float32(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _cholesky_factors(covariances: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factors, adding growing diagonal jitter if float32 rounding left a matrix indefinite."""
    covariances = covariances.double()
    identity = torch.eye(covariances.shape[-1], dtype=covariances.dtype)
    scale = covariances.diagonal(dim1=-2, dim2=-1).abs().mean().clamp_min(1e-12)
    for jitter in (0.0, 1e-8, 1e-6, 1e-4, 1e-2):
        factors, info = torch.linalg.cholesky_ex(covariances + jitter * scale * identity)
        if not bool(info.any()):
            return factors
    raise ValueError("latent density covariances are not positive definite, even with diagonal jitter")


def mixture_problem(density: dict) -> str | None:
    """What keeps a mixture of the shapes :func:`fit_gaussian_mixture` returns, with finite values, from being
    sampled, or None: no components, weights that are negative or sum to zero, covariances that are not positive
    definite (even with the jitter sampling adds)."""
    weights = density["weights"]
    if len(weights) == 0:
        return "has no components"
    if bool((weights < 0).any()) or not float(weights.sum()) > 0:
        return "weights must be 0 or more, and not all 0"
    try:
        _cholesky_factors(density["covariances"])
    except ValueError:
        return "covariances are not positive definite"
    return None


def sample_gaussian_mixture(density: dict, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``count`` codes ``(count, D)`` from a mixture returned by :func:`fit_gaussian_mixture`."""
    weights = density["weights"].double()
    means = density["means"].double()
    factors = _cholesky_factors(density["covariances"])
    if count < 1:
        return torch.zeros((0, means.shape[1]), dtype=torch.float32)
    picks = torch.multinomial(weights, count, replacement=True, generator=generator)
    noise = torch.randn(count, means.shape[1], dtype=torch.float64, generator=generator)
    samples = means[picks] + torch.einsum("nij,nj->ni", factors[picks], noise)
    return samples.float()
