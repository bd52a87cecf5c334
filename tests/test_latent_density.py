"""The latent Gaussian mixture: fitting recovers a known mixture, sampling reproduces the mixture's moments, and a
mixture that cannot be sampled is named for what is wrong with it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from training.jiio.latent_density import fit_gaussian_mixture, mixture_problem, sample_gaussian_mixture

DIMS = 4
KNOWN_WEIGHTS = np.array([0.3, 0.7])
KNOWN_MEANS = np.array([[-4.0, 0.0, 2.0, 0.0], [4.0, 1.0, -2.0, 0.5]])
KNOWN_SCALES = np.array([0.5, 1.0])  # per-component standard deviation, isotropic


def known_mixture_samples(count: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    picks = rng.choice(2, size=count, p=KNOWN_WEIGHTS)
    points = KNOWN_MEANS[picks] + rng.standard_normal((count, DIMS)) * KNOWN_SCALES[picks, None]
    return torch.from_numpy(points).float()


def mixture_moments(density: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the mixture as a whole (law of total covariance)."""
    weights = density["weights"].double().numpy()
    means = density["means"].double().numpy()
    covariances = density["covariances"].double().numpy()
    mean = weights @ means
    spread = means - mean
    covariance = np.einsum("k,kij->ij", weights, covariances) + np.einsum("k,ki,kj->ij", weights, spread, spread)
    return mean, covariance


@pytest.fixture(scope="module")
def fitted() -> dict:
    return fit_gaussian_mixture(known_mixture_samples(2000), components=2, seed=0)


def test_fitting_recovers_a_well_separated_mixture(fitted):
    assert fitted["components"] == 2
    assert fitted["weights"].shape == (2,) and fitted["means"].shape == (2, DIMS)
    assert fitted["covariances"].shape == (2, DIMS, DIMS)
    assert all(fitted[key].dtype == torch.float32 for key in ("weights", "means", "covariances"))
    order = torch.argsort(fitted["means"][:, 0]).numpy()  # the component order is arbitrary
    np.testing.assert_allclose(fitted["weights"].numpy()[order], KNOWN_WEIGHTS, atol=0.03)
    np.testing.assert_allclose(fitted["means"].numpy()[order], KNOWN_MEANS, atol=0.1)
    for component, scale in zip(order, KNOWN_SCALES, strict=True):
        np.testing.assert_allclose(fitted["covariances"][component].numpy(), np.eye(DIMS) * scale ** 2,
                                   atol=0.1 * scale ** 2 + 0.02)


def test_samples_reproduce_the_mixture_moments(fitted):
    samples = sample_gaussian_mixture(fitted, 20000, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (20000, DIMS) and samples.dtype == torch.float32
    mean, covariance = mixture_moments(fitted)
    drawn = samples.double().numpy()
    np.testing.assert_allclose(drawn.mean(axis=0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(drawn, rowvar=False), covariance, atol=0.1 * np.abs(covariance).max())


def test_a_generator_makes_sampling_repeatable(fitted):
    first = sample_gaussian_mixture(fitted, 50, generator=torch.Generator().manual_seed(3))
    second = sample_gaussian_mixture(fitted, 50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


def test_one_component_is_the_sample_mean_and_covariance():
    latents = known_mixture_samples(300, seed=1)
    density = fit_gaussian_mixture(latents, components=1)
    points = latents.double().numpy()
    np.testing.assert_allclose(density["means"][0].numpy(), points.mean(axis=0), atol=1e-4)
    # EM's covariance is the maximum-likelihood one (divides by N) plus the regulariser on the diagonal.
    expected = np.cov(points, rowvar=False, bias=True) + 1e-4 * np.eye(DIMS)
    np.testing.assert_allclose(density["covariances"][0].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_fewer_than_two_latents_is_refused():
    with pytest.raises(ValueError, match="at least 2 latent codes"):
        fit_gaussian_mixture(torch.zeros(1, DIMS))


def test_components_are_clamped_to_the_number_of_latents():
    latents = known_mixture_samples(5, seed=2)
    density = fit_gaussian_mixture(latents, components=10)
    assert density["components"] == 5 and density["weights"].shape == (5,)
    assert density["covariances"].shape == (5, DIMS, DIMS)
    # One component on each code, equally weighted.
    means = density["means"].numpy()
    np.testing.assert_allclose(means[np.lexsort(means.T[::-1])], latents.numpy()[np.lexsort(latents.numpy().T[::-1])],
                               atol=1e-4)
    np.testing.assert_allclose(density["weights"].numpy(), np.full(5, 0.2), atol=1e-6)
    samples = sample_gaussian_mixture(density, 7, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (7, DIMS) and torch.isfinite(samples).all()


def test_nearly_singular_covariances_still_sample():
    # float32 rounding can leave a stored covariance a hair indefinite; sampling adds jitter rather than fail.
    density = {"weights": torch.tensor([1.0]), "means": torch.zeros(1, 3),
               "covariances": torch.tensor([[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]) - 1e-6 * torch.eye(3)}
    samples = sample_gaussian_mixture(density, 100, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (100, 3) and torch.isfinite(samples).all()
    # The draws keep the covariance's structure: the first two coordinates move together (measured: at most 0.04
    # apart, jitter included), the third on its own with unit spread.
    assert float((samples[:, 0] - samples[:, 1]).abs().max()) < 0.1
    assert 0.8 < float(samples[:, 0].std()) < 1.2 and 0.8 < float(samples[:, 2].std()) < 1.3


def _edited(density: dict, **changes) -> dict:
    return {**{key: value.clone() for key, value in density.items() if key != "components"}, **changes}


def test_a_sampleable_mixture_has_no_problem(fitted):
    assert mixture_problem(fitted) is None


@pytest.mark.parametrize("change, problem", [
    (lambda d: _edited(d, covariances=-d["covariances"]), "covariances are not positive definite"),
    (lambda d: _edited(d, weights=torch.zeros(2)), "weights must be 0 or more, and not all 0"),
    (lambda d: _edited(d, weights=-torch.ones(2)), "weights must be 0 or more, and not all 0"),
    (lambda d: _edited(d, weights=torch.zeros(0), means=torch.zeros(0, DIMS), covariances=torch.zeros(0, DIMS, DIMS)),
     "has no components"),
])
def test_mixtures_that_cannot_be_sampled_are_named(fitted, change, problem):
    """Each of these made sampling fail with a traceback (not positive definite, invalid multinomial)."""
    assert mixture_problem(change(fitted)) == problem


def test_fitting_warnings_become_notes():
    """Identical codes (a decoder checkpoint whose latents were never spread) leave scikit-learn fewer clusters
    than components: it says so as a note, not as raw text on stderr."""
    notes = []
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        density = fit_gaussian_mixture(torch.ones(5, DIMS), components=3, notes=notes)
    assert not escaped and density["weights"].shape == (3,)
    assert notes == ["latent density: Number of distinct clusters (1) found smaller than n_clusters (3). Possibly due "
                     "to duplicate points in X."]
