"""The MDEQ decoder: state packing, a contractive fixpoint at initialisation, and exact gradients to the latent."""

import torch
from helpers import CallCounter

from models.fixpoint import SolverSettings
from models.mdeq import DECODER_SOLVER, MDEQDecoder
from models.mdeq_presets import PRESETS


def test_state_packing_round_trips_and_output_shape():
    torch.manual_seed(0)
    decoder = MDEQDecoder(PRESETS["small"], out_channels=1)
    assert decoder.sides == [28, 14]
    assert decoder.state_size() == 16 * 28 * 28 + 32 * 14 * 14
    z = torch.randn(3, decoder.state_size())
    branches = decoder.unpack(z)
    assert [tuple(b.shape) for b in branches] == [(3, 16, 28, 28), (3, 32, 14, 14)]
    assert torch.equal(branches[1].flatten(1), z[:, 16 * 28 * 28:])  # the second branch follows the first
    assert torch.equal(decoder.pack(branches), z)
    image = decoder.decode(z)
    assert image.shape == (3, 1, 28, 28) and image.abs().max() <= 1


def test_the_small_preset_contracts_to_1e_4_within_20_anderson_steps_at_initialisation():
    torch.manual_seed(0)
    decoder = MDEQDecoder(PRESETS["small"], out_channels=1).eval()
    latent = torch.randn(4, PRESETS["small"].latent_dim)
    z, stats = decoder.solve(latent, settings=SolverSettings(solver="anderson", tol=1e-4, max_iter=20))
    # Measured: relative residual 1.0 -> 5e-5 in 10 steps (0.22, 0.07, 0.023, ... : about 3x per step).
    assert stats.converged and stats.steps <= 20 and stats.max_rel_residual <= 1e-4
    assert stats.rel_residual.shape == (4,)
    with torch.no_grad():
        fz = decoder.f(z, decoder.injections(latent))
    relative = (fz - z).norm(dim=1) / fz.norm(dim=1)
    assert torch.allclose(relative, stats.rel_residual, rtol=1e-3, atol=1e-9)  # the stats describe the returned z
    assert DECODER_SOLVER == SolverSettings(solver="anderson", tol=1e-4, max_iter=60)
    _, default = decoder.solve(latent)  # the decoder's own default reaches the same tolerance
    assert default.converged and default.max_rel_residual <= 1e-4


def test_gradients_reach_every_parameter_and_the_latent_gradient_is_exact():
    torch.manual_seed(0)
    decoder = MDEQDecoder(PRESETS["small"], out_channels=3).double()
    latent = torch.randn(2, PRESETS["small"].latent_dim, dtype=torch.float64, requires_grad=True)

    def loss_of(x):
        z = decoder.zeros(2, dtype=torch.float64)
        for _ in range(3):
            z = decoder.f_from_latent(z, x)
        return decoder.decode(z).square().mean()

    loss_of(latent).backward()
    for name, parameter in decoder.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    # The latent's gradient agrees with a central difference along a random direction (measured: 3e-4 apart
    # relative at this step; ReLU kinks keep the difference first-order in the step).
    direction = torch.randn_like(latent)
    with torch.no_grad():
        step = 1e-6
        numeric = float(loss_of(latent + step * direction) - loss_of(latent - step * direction)) / (2 * step)
    analytic = float((latent.grad * direction).sum())
    assert abs(analytic - numeric) <= 2e-3 * abs(numeric) and abs(numeric) > 1e-4


def test_bilinear_resize_is_torchs_bilinear_interpolation_forward_and_backward():
    from torch.nn import functional as F

    from models.mdeq import bilinear_resize

    torch.manual_seed(0)
    # The decoder's shapes (7 -> 28 and 7 -> 14 injections, 14 -> 28 fusion), a downsizing and odd sides.
    for shape, size in [((3, 2, 7, 7), 28), ((3, 2, 7, 7), 14), ((2, 4, 14, 14), 28), ((2, 1, 9, 9), 4),
                        ((1, 3, 5, 5), 13)]:
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        ours = bilinear_resize(x, size)
        reference = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        assert ours.shape == reference.shape
        assert torch.allclose(ours, reference, rtol=0, atol=1e-13), (shape, size)
        weights = torch.randn_like(reference)
        (grad_ours,) = torch.autograd.grad(ours, x, weights)
        (grad_reference,) = torch.autograd.grad(reference, x, weights)
        assert torch.allclose(grad_ours, grad_reference, rtol=0, atol=1e-12), (shape, size)
    # float32 input gets float32 weights (not float64 results), on the input's device.
    assert bilinear_resize(torch.ones(1, 1, 7, 7), 14).dtype == torch.float32


def test_a_restoration_computes_each_weight_once_and_gets_the_same_values():
    from training.jiio.inference import jiio
    from training.jiio.inverse_tasks import corrupt, restore
    from training.jiio.settings import JIIOSettings

    torch.manual_seed(0)
    decoder = MDEQDecoder(PRESETS["small"], out_channels=1)  # training mode: its weights carry gradients
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    convolutions = sum(1 for name, _ in decoder.named_parameters() if name.endswith("original1"))
    calls = {}
    for iterations in (4, 12):
        with CallCounter(torch.ops.aten._weight_norm_interface.default) as counter:
            restore(decoder, corrupt(images, "reconstruct"), JIIOSettings(iterations=iterations))
        calls[iterations] = counter.calls
    assert calls[4] == calls[12] == convolutions  # once each, however many times f is applied

    def cost(z):
        return (decoder.decode(z) - images).pow(2).flatten(1).sum(1)

    def run():
        return jiio(decoder.f_from_latent, cost, decoder.zeros(3), torch.zeros(3, 32), JIIOSettings(iterations=6))

    plain = run()
    with decoder.fixed_weights():
        held = run()
    assert torch.equal(plain.x, held.x) and torch.equal(plain.last_mu, held.last_mu)
