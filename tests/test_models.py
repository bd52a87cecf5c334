"""Models: initialisation as the papers give it (docs/models.md), forward passes against their formulas, the
registry."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from models import build_model, count_parameters, model_names
from models.mfn import FourierFilter, FourierMFN, GaborFilter, GaborMFN
from models.siren import Siren

# Wide layers so that a uniform draw visibly fills its interval: with >= 512 samples the largest |w| is
# above 0.98 of the bound with overwhelming probability (and the seed is fixed anyway).
WIDE = 256
FILL = 0.95


def assert_uniform_within(tensor: torch.Tensor, bound: float, what: str) -> None:
    """Every value within [-bound, bound], and the values spread over (nearly) the whole interval."""
    values = tensor.detach().double()
    assert values.abs().max().item() <= bound * (1 + 1e-6), f"{what}: max |w| {values.abs().max():.6g} > {bound:.6g}"
    assert values.max().item() >= FILL * bound, f"{what}: largest {values.max():.6g} far below bound {bound:.6g}"
    assert values.min().item() <= -FILL * bound, f"{what}: smallest {values.min():.6g} far above -{bound:.6g}"


def default_linear_bound(in_features: int) -> float:
    """nn.Linear's default weight init is U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5))."""
    return 1.0 / math.sqrt(in_features)


# --------------------------------------------------------------------------------------------------- SIREN


@pytest.mark.parametrize("in_features", [2, 3])
@pytest.mark.parametrize("first_w0", [30.0, 90.0])
def test_siren_init_matches_reference(in_features, first_w0):
    torch.manual_seed(0)
    model = Siren(in_features, 3, hidden=WIDE, layers=2, first_w0=first_w0)
    first, *hidden = list(model.body)
    # First layer: U(-1/n_in, 1/n_in), whatever its frequency.
    assert_uniform_within(first.linear.weight, 1.0 / in_features, "first layer")
    # Every later layer, the linear output head included: U(-sqrt(6/n)/30, sqrt(6/n)/30).
    later_bound = math.sqrt(6.0 / WIDE) / 30.0
    assert len(hidden) == 2
    for i, layer in enumerate(hidden):
        assert_uniform_within(layer.linear.weight, later_bound, f"hidden layer {i}")
    assert_uniform_within(model.head.weight, later_bound, "output head")


def test_siren_first_layer_bound_is_not_the_later_one():
    """Guard against a mixed-up bound: for 2-D input the first layer's bound (0.5) is far wider than the rest."""
    torch.manual_seed(1)
    model = Siren(2, 1, hidden=WIDE, layers=1)
    assert model.body[0].linear.weight.abs().max() > 0.45
    assert model.body[1].linear.weight.abs().max() < math.sqrt(6.0 / WIDE) / 30.0 + 1e-7


def test_siren_forward_is_sine_of_w0_affine():
    """Each layer is sin(w0 (W x + b)) with first_w0 on the first layer and 30 elsewhere; the head is linear."""
    torch.manual_seed(2)
    model = Siren(2, 2, hidden=32, layers=2, first_w0=45.0).double()
    x = torch.rand(50, 2, dtype=torch.float64) * 2 - 1
    z = x
    for i, layer in enumerate(model.body):
        w0 = 45.0 if i == 0 else 30.0
        z = torch.sin(w0 * (z @ layer.linear.weight.T + layer.linear.bias))
    expected = z @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x), expected, rtol=1e-10, atol=1e-10)


def test_siren_layer_count():
    model = Siren(2, 1, hidden=16, layers=3)
    assert len(model.body) == 4  # first sine layer + 3 hidden-to-hidden
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 5  # four sine layers and the linear head


# --------------------------------------------------------------------------------------------------- MFN


@pytest.mark.parametrize("cls", [FourierMFN, GaborMFN])
def test_mfn_hidden_linears_within_sqrt_one_over_c(cls):
    torch.manual_seed(0)
    model = cls(2, 1, hidden=WIDE, layers=3, input_scale=64.0)
    assert len(model.linears) == 3
    assert len(model.filters) == 4
    for i, linear in enumerate(model.linears):
        assert_uniform_within(linear.weight, math.sqrt(1.0 / WIDE), f"hidden linear {i}")


@pytest.mark.parametrize("input_scale,n_filters", [(64.0, 4), (256.0, 2), (10.0, 1)])
def test_fourier_filter_init(input_scale, n_filters):
    torch.manual_seed(0)
    filt = FourierFilter(2, WIDE, input_scale, n_filters)
    bound = default_linear_bound(2) * input_scale / math.sqrt(n_filters)
    assert_uniform_within(filt.linear.weight, bound, "Fourier filter weight")
    assert_uniform_within(filt.linear.bias, math.pi, "Fourier filter bias")


def test_fourier_filter_forward_is_sine():
    torch.manual_seed(3)
    filt = FourierFilter(2, 16, 32.0, 3).double()
    x = torch.rand(40, 2, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(filt(x), torch.sin(x @ filt.linear.weight.T + filt.linear.bias), rtol=0, atol=1e-12)


def test_gabor_filter_init():
    torch.manual_seed(0)
    n_filters, input_scale = 4, 64.0
    filt = GaborFilter(2, WIDE, input_scale, n_filters, alpha=6.0)
    # mu ~ U(-1, 1), filling the square of coordinates.
    assert_uniform_within(filt.mu, 1.0, "Gabor mu")
    # gamma > 0 (a Gamma draw), one per output unit.
    assert filt.gamma.shape == (WIDE,)
    assert (filt.gamma > 0).all()
    # Filter weights: default Linear init x input_scale / sqrt(n_filters) x sqrt(gamma) per row.
    bound = default_linear_bound(2) * input_scale / math.sqrt(n_filters)
    normalised = filt.linear.weight / filt.gamma.detach().sqrt()[:, None]
    assert_uniform_within(normalised, bound, "Gabor filter weight / sqrt(gamma)")
    assert_uniform_within(filt.linear.bias, math.pi, "Gabor filter bias")


def test_gabor_gamma_follows_alpha_over_n_filters():
    """gamma ~ Gamma(alpha / n_filters, 1): alpha = 6 on the first filter, 3 on the others (mean = shape)."""
    torch.manual_seed(0)
    model = GaborMFN(2, 1, hidden=1024, layers=3, input_scale=64.0)
    means = [f.gamma.mean().item() for f in model.filters]
    # Shapes 6/4 = 1.5 and 3/4 = 0.75; the standard error of a mean of 1024 draws is <= 0.04.
    assert means[0] == pytest.approx(1.5, abs=0.15)
    for m in means[1:]:
        assert m == pytest.approx(0.75, abs=0.1)


def naive_gabor(filt: GaborFilter, x: torch.Tensor) -> torch.Tensor:
    """sin(U x + c) * exp(-gamma/2 ||x - mu||^2) with the explicit N x C x d difference tensor."""
    diff = x[:, None, :] - filt.mu[None, :, :]  # (N, C, d)
    sq_dist = (diff ** 2).sum(-1)  # (N, C)
    return torch.sin(x @ filt.linear.weight.T + filt.linear.bias) * torch.exp(-0.5 * filt.gamma.clamp_min(0) * sq_dist)


@pytest.mark.parametrize("in_features", [1, 2, 3])
def test_gabor_filter_forward_matches_naive_formula(in_features):
    torch.manual_seed(4)
    filt = GaborFilter(in_features, 64, 32.0, 3, alpha=3.0).double()
    with torch.no_grad():
        filt.gamma.mul_(20.0)  # narrow envelopes too, so the exp term is far from 1 for most points
    x = torch.rand(300, in_features, dtype=torch.float64) * 2 - 1
    x[:10] = filt.mu[:10].detach()  # points exactly at a centre: ||x - mu|| = 0 for one unit
    expected = naive_gabor(filt, x)
    assert expected.abs().min() < 1e-3 < expected.abs().max()  # a non-trivial range of envelope values
    torch.testing.assert_close(filt(x), expected, rtol=1e-10, atol=1e-12)


def test_gabor_envelope_never_exceeds_one_when_gamma_turns_negative():
    torch.manual_seed(7)
    filt = GaborFilter(2, 32, 16.0, 2, alpha=3.0)
    with torch.no_grad():
        filt.gamma[:8] = -2.0  # training can push gamma below zero
    x = torch.rand(400, 2) * 2 - 1
    values = filt(x)
    assert values.abs().max() <= 1.0 + 1e-6
    # A unit with negative gamma is a plain sinusoid, not an envelope growing away from mu.
    torch.testing.assert_close(values[:, :8], torch.sin(x @ filt.linear.weight[:8].T + filt.linear.bias[:8]))


def test_gabor_filter_forward_float32_close_to_naive():
    torch.manual_seed(5)
    filt = GaborFilter(2, 64, 64.0, 2, alpha=6.0)
    x = torch.rand(500, 2) * 2 - 1
    with torch.no_grad():
        expected = naive_gabor(copy.deepcopy(filt).double(), x.double()).float()
        torch.testing.assert_close(filt(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [FourierMFN, GaborMFN])
def test_mfn_forward_is_the_multiplicative_recursion(cls):
    torch.manual_seed(6)
    model = cls(2, 3, hidden=24, layers=2, input_scale=16.0).double()
    x = torch.rand(30, 2, dtype=torch.float64) * 2 - 1
    z = model.filters[0](x)
    for filt, linear in zip(model.filters[1:], model.linears):
        z = filt(x) * (z @ linear.weight.T + linear.bias)
    expected = z @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x), expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------------- registry


def test_registry_has_the_explicit_models():
    assert {"siren", "fourier-mfn", "gabor-mfn"} <= set(model_names())


def test_unknown_model_raises_value_error_listing_names():
    with pytest.raises(ValueError) as info:
        build_model("no-such-net", 2, 1, hidden=8, layers=1, frequency=30.0)
    message = str(info.value)
    assert "no-such-net" in message
    for name in model_names():
        assert name in message


def expected_parameters(name: str, hidden: int, layers: int, d: int, out: int) -> int:
    if name == "siren":
        return (d * hidden + hidden) + layers * (hidden * hidden + hidden) + (hidden * out + out)
    filters = layers + 1
    per_filter = d * hidden + hidden + (d * hidden + hidden if name == "gabor-mfn" else 0)  # + mu, gamma
    return filters * per_filter + layers * (hidden * hidden + hidden) + (hidden * out + out)


@pytest.mark.parametrize("name", ["siren", "fourier-mfn", "gabor-mfn"])
@pytest.mark.parametrize("hidden,layers", [(16, 1), (32, 3)])
def test_parameter_counts(name, hidden, layers):
    torch.manual_seed(0)
    a = build_model(name, 2, 3, hidden=hidden, layers=layers, frequency=30.0)
    torch.manual_seed(1)
    b = build_model(name, 2, 3, hidden=hidden, layers=layers, frequency=60.0)
    assert count_parameters(a) == count_parameters(b) == expected_parameters(name, hidden, layers, 2, 3)
    # Same architecture, different draws.
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert any(not torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


@pytest.mark.parametrize("name", ["siren", "fourier-mfn", "gabor-mfn"])
def test_models_map_coordinates_to_channels(name):
    model = build_model(name, 2, 4, hidden=16, layers=1, frequency=30.0)
    out = model(torch.rand(11, 2) * 2 - 1)
    assert out.shape == (11, 4)
    assert torch.isfinite(out).all()


def test_stacked_coordinate_products_on_a_cpu_take_the_multiply_adds():
    """A group's coordinate products (SIREN's first layer, MFN filters, Gabor distances) on a CPU: MKL's threads
    split the batched product of 2-3 terms per output differently from one process to the next (a group fit
    started again did not end bit for bit as it had), so these take the multiply-adds, the same operations in
    every process; the values are the product's."""
    from helpers import CallCounter

    from models.base import coordinate_linear

    torch.manual_seed(0)
    x, weight, bias = torch.rand(576, 2) * 2 - 1, torch.rand(3, 24, 2) * 30, torch.rand(3, 24)
    for operator in (torch.ops.aten.baddbmm.default, torch.ops.aten.bmm.default):
        with CallCounter(operator) as counter:
            out = coordinate_linear(x, weight, bias)
        assert counter.calls == 0
    torch.testing.assert_close(out, torch.stack([x @ weight[i].T + bias[i] for i in range(3)]))
    single = coordinate_linear(x, weight[0], bias[0])  # a fit alone keeps the ordinary product
    torch.testing.assert_close(single, out[0])
    if torch.backends.mkl.is_available():
        # The multiply-adds sum as MKL's product does (the products, then the bias), so each signal's first layer
        # is its network's alone bit for bit: with the bias added first, one crop in 32 of benchmarks/
        # many_images.py ended 0.23 dB from its fit alone, against the 0.05 dB a group fit must stay within.
        for i in range(3):
            assert torch.equal(out[i], torch.nn.functional.linear(x, weight[i], bias[i]))


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_stacked_products_for_an_odd_group_are_cut_into_row_blocks_the_threads_share(two_threads):
    """3 signals on 2 threads: a batched product hands whole signals to threads, so each signal's rows are cut
    in two (6 products); an even group, and blocks under MIN_BLOCK_ROWS, stay whole."""
    from models.base import MIN_BLOCK_ROWS, row_blocks_per_signal

    assert row_blocks_per_signal(torch.empty(3, 2 * MIN_BLOCK_ROWS, 8)) == 2
    assert row_blocks_per_signal(torch.empty(4, 2 * MIN_BLOCK_ROWS, 8)) == 1
    assert row_blocks_per_signal(torch.empty(3, 2 * MIN_BLOCK_ROWS - 2, 8)) == 1  # blocks too small
    assert row_blocks_per_signal(torch.empty(3, 2 * MIN_BLOCK_ROWS + 1, 8)) == 1  # rows do not divide
    torch.set_num_threads(1)
    assert row_blocks_per_signal(torch.empty(3, 2 * MIN_BLOCK_ROWS, 8)) == 1


def test_a_stacked_product_cut_into_row_blocks_is_each_signals_own_product_to_second_derivatives(two_threads):
    """The cut changes how the work is shared, not what is computed: values, first derivatives (training) and
    second derivatives (a shape fit's gradient penalty differentiates a gradient) equal each signal's own
    product's, in float64."""
    from helpers import CallCounter

    from models.base import MIN_BLOCK_ROWS, affine

    torch.manual_seed(0)
    signals, rows, width = 3, 2 * MIN_BLOCK_ROWS, 5
    x = torch.randn(signals, rows, width, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(signals, 4, width, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(signals, 4, dtype=torch.float64, requires_grad=True)

    def derivatives(forward):
        out = forward()
        grads = torch.autograd.grad(torch.sin(out).sum(), (x, weight, bias), create_graph=True)
        second = torch.autograd.grad(grads[0].square().sum(), (x, weight))
        return out, *grads, *second

    with CallCounter(torch.ops.aten.baddbmm.default) as counter:
        cut = derivatives(lambda: affine(x, weight, bias))
    assert counter.shapes[0][1] == (2 * signals, rows // 2, width)  # six products of half the rows
    own = derivatives(lambda: torch.stack([nn.functional.linear(x[i], weight[i], bias[i]) for i in range(signals)]))
    for ours, theirs in zip(cut, own, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
