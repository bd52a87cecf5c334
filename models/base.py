"""What every coordinate network in the registry offers beyond ``forward``: its output with solver statistics.

Evaluation and rendering call :meth:`CoordinateNetwork.forward_with_stats` on every chunk and summarise the
statistics they get back; explicit networks have none to give (``None``). Statistics travel as return values,
never as state left on a module.
"""

from __future__ import annotations

import torch
from torch import nn

from models.fixpoint.stats import SolverStats


class CoordinateNetwork(nn.Module):
    def forward_with_stats(self, coords: torch.Tensor) -> tuple[torch.Tensor, SolverStats | None]:
        """The output at ``coords`` and how its fixpoint solve went (``None``: no solve, an explicit network)."""
        return self(coords), None


# Coordinates have at most this many components (audio 1, images 2, video and shapes 3): below it a product with
# them is a few multiply-adds per output, done elementwise in exact float32.
MAX_COORDINATE_DIMS = 4


def reduced_precision_active(device_type: str) -> bool:
    """Whether a float32 matrix product here would not be exact float32: under autocast, or with CUDA TF32 on."""
    if torch.is_autocast_enabled(device_type):
        return True
    return device_type == "cuda" and torch.get_float32_matmul_precision() != "highest"


def coordinate_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x W^T + b`` for low-dimensional coordinates ``x``, always in exact float32 (or better).

    Used for every sine phase taken of the coordinates (SIREN's first layer, MFN filters) and for Gabor distances.
    These arguments reach hundreds of radians, so neither TF32 matrix products nor bf16 autocast may touch them.
    In full precision this is the ordinary matrix product. Under a reduced-precision mode autocast is switched
    off here and the product becomes a sum of ``d`` broadcast multiply-adds, which TF32 cannot round; under
    ``torch.compile`` the sum fuses with the sine that follows. (On a CPU the multiply-adds cost more than the
    product, about 10% of a small SIREN step, hence not in fp32 mode.)
    """
    # At least float32: a float64 model (gradient checks) keeps its precision.
    dtype = torch.promote_types(torch.promote_types(x.dtype, weight.dtype), torch.float32)
    x, weight = x.to(dtype), weight.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    device_type = x.device.type
    if weight.shape[1] > MAX_COORDINATE_DIMS or not reduced_precision_active(device_type):
        with torch.autocast(device_type, enabled=False):
            return nn.functional.linear(x, weight, bias)
    with torch.autocast(device_type, enabled=False):
        out = x[:, :1] * weight[:, 0]
        for k in range(1, weight.shape[1]):
            out = torch.addcmul(out, x[:, k:k + 1], weight[:, k])
        return out if bias is None else out + bias


class OutputLinear(nn.Linear):
    """The output layer ``A z + a``, always in float32 (outside autocast).

    In bf16 the prediction itself would be rounded to an 8-bit mantissa, a floor of roughly 45 dB on values in
    [-1, 1] (measured: a 64-px SIREN at 45.2 dB in fp32 reached 44.5 dB with a bf16 output). One
    width-by-channels product is cheap in float32; the same parameters and checkpoints as ``nn.Linear``.
    """

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(z.device.type, enabled=False):
            dtype = torch.promote_types(z.dtype, self.weight.dtype)
            return nn.functional.linear(z.to(dtype), self.weight.to(dtype), self.bias.to(dtype))
