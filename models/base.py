"""What every coordinate network in the registry offers beyond ``forward``: its output with solver statistics.

Evaluation and rendering call :meth:`CoordinateNetwork.forward_with_stats` on every chunk and summarise the
statistics they get back; explicit networks have none to give (``None``). Statistics travel as return values,
never as state left on a module.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.fixpoint.stats import SolverStats


class CoordinateNetwork(nn.Module):
    # True where ``forward`` also takes G stacked networks' parameters (through ``torch.func.functional_call``:
    # every weight and bias with a leading signal axis) and returns ``(G, N, C)``: a group fit then calls it as it
    # is, with one batched product per layer (see :func:`affine`). Group fits take only such networks.
    stacks_natively = False

    def forward_with_stats(self, coords: torch.Tensor) -> tuple[torch.Tensor, SolverStats | None]:
        """The output at ``coords`` and how its fixpoint solve went (``None``: no solve, an explicit network)."""
        return self(coords), None


# Coordinates have at most this many components (audio 1, images 2, video and shapes 3): below it a product with
# them is a few multiply-adds per output, done elementwise in exact float32.
MAX_COORDINATE_DIMS = 4


def affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x W^T + b`` for one network's ``weight`` ``(out, in)``, or for G stacked networks' ``weight``
    ``(G, out, in)`` and ``bias`` ``(G, out)``, with ``x`` ``(G, N, in)`` or shared by all ``(N, in)``.

    The stacked form is one ``baddbmm``, the bias added inside the product. ``torch.vmap`` of ``F.linear`` would
    give a ``bmm`` and then two more passes over the ``(G, N, out)`` output (a multiply and an add), which made a
    group step of SIREN 3x64 on 32 x 1024 points 1.4x slower on a 2-core CPU (49 against 35 ms)."""
    if weight.dim() == 2:
        return nn.functional.linear(x, weight, bias)
    if x.dim() == 2:
        x = x.expand(weight.shape[0], *x.shape)
    blocks = row_blocks_per_signal(x)
    if blocks > 1:
        return _affine_in_row_blocks(x, weight, bias, blocks)
    if bias is None:
        return torch.bmm(x, weight.transpose(-1, -2))
    return torch.baddbmm(bias.unsqueeze(-2), x, weight.transpose(-1, -2))


# Blocks of fewer rows cost about as much in their own products' overhead as the balance gains (measured on 2 cores,
# forward and backward of 3 signals cut in two, medians of 25 alternating runs: blocks of 1,365 rows at width 256
# 19% faster, of 512 rows at width 64 5% faster, of 170 rows at width 256 6% faster, of 100 rows 6% slower).
MIN_BLOCK_ROWS = 512
# The share of the threads' time a cut must keep busy: 3 signals on 2 threads keep 75% (3 of 4 thread-turns), cut
# in two 100%; 17 on 16 threads keep 53%, cut in six 91%.
BALANCED_SHARE = 0.9


def row_blocks_per_signal(x: torch.Tensor) -> int:
    """Into how many blocks of rows each signal's product is cut so that a CPU's threads share them evenly.

    A batched product on a CPU hands whole signals to threads: 3 signals on 2 threads leave one thread idle for a
    third of the time: a group of 3 photos at 128 px (SIREN 3x256) trained 1.15x slower than the same 3 fits one
    at a time on 2 cores. Cut into ``b`` blocks, ``G * b`` products divide among the threads (that group: 20.6 s
    uncut, 15.8 s cut in two, for 30 steps). Every output row is still one row of its own signal's product, so
    the results are the uncut product's but for the order of the sums in the weight's gradient."""
    if x.device.type != "cpu" or x.dim() != 3:
        return 1
    threads, (signals, rows) = torch.get_num_threads(), x.shape[:2]
    for blocks in range(1, threads + 1):
        if rows % blocks or rows // blocks < MIN_BLOCK_ROWS:
            continue
        products = signals * blocks
        if products / (threads * math.ceil(products / threads)) >= BALANCED_SHARE:
            return blocks
    return 1


def _affine_in_row_blocks(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          blocks: int) -> torch.Tensor:
    signals, rows, width = x.shape
    out_features = weight.shape[-2]
    x = x.reshape(signals * blocks, rows // blocks, width)
    weight = weight.unsqueeze(1).expand(signals, blocks, *weight.shape[-2:]).reshape(signals * blocks, out_features,
                                                                                    width)
    if bias is None:
        out = torch.bmm(x, weight.transpose(-1, -2))
    else:
        bias = bias.unsqueeze(1).expand(signals, blocks, out_features).reshape(signals * blocks, 1, out_features)
        out = torch.baddbmm(bias, x, weight.transpose(-1, -2))
    return out.reshape(signals, rows, out_features)


def reduced_precision_active(device_type: str) -> bool:
    """Whether a float32 matrix product here would not be exact float32: under autocast, or with CUDA TF32 on."""
    if torch.is_autocast_enabled(device_type):
        return True
    # The cuBLAS TF32 switch itself, which torch.set_float32_matmul_precision("high") sets: torch.compile reads it
    # as a constant (and recompiles when it changes), where get_float32_matmul_precision() breaks the graph at
    # every call (a compiled SIREN forward fell into 6 graphs, Gabor-MFN into 8).
    return device_type == "cuda" and torch.backends.cuda.matmul.allow_tf32


def coordinate_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x W^T + b`` for low-dimensional coordinates ``x``, always in exact float32 (or better); ``weight`` and
    ``bias`` may be stacked (see :func:`affine`).

    Used for every sine phase taken of the coordinates (SIREN's first layer, MFN filters) and for Gabor distances.
    These arguments reach hundreds of radians, so neither TF32 matrix products nor bf16 autocast may touch them.
    In full precision this is the ordinary matrix product. Under a reduced-precision mode autocast is switched
    off here and the product becomes a sum of ``d`` broadcast multiply-adds, which TF32 cannot round; under
    ``torch.compile`` the sum fuses with the sine that follows. (On a CPU a small single network's product is the
    faster, 0.12 against 0.35 ms forward and backward at 1,024 points x 64, hence not in fp32 mode there.)
    """
    # At least float32: a float64 model (gradient checks) keeps its precision.
    dtype = torch.promote_types(torch.promote_types(x.dtype, weight.dtype), torch.float32)
    x, weight = x.to(dtype), weight.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    device_type = x.device.type
    # Stacked networks (a group fit) on a CPU take the multiply-adds too: MKL's threads split a batched product
    # this thin (2 or 3 terms per output) differently from one process to the next, and a group's first layer
    # then came out different in its last bits in one process in five to ten (3 signals of 576 points, 2 threads;
    # a contiguous copy of the points did not help), so a group fit started again did not end as it had. The
    # multiply-adds give every output the same operations. Their cost in a tiny group (SIREN 3x64, 32 signals of
    # 1,024 points, 2 cores; first layer forward and backward, runs interleaved): 2.7 ms on contiguous columns
    # (below), 3.9 ms on strided ones, 0.7 ms for the product, in a step of about 41 ms.
    stacked_on_cpu = device_type == "cpu" and weight.dim() == 3
    if weight.shape[-1] > MAX_COORDINATE_DIMS or not (reduced_precision_active(device_type) or stacked_on_cpu):
        with torch.autocast(device_type, enabled=False):
            return affine(x, weight, bias)
    if weight.dim() == 3:  # stacked: (G, 1, out) rows against (G or 1, N, 1) coordinates
        weight, bias = weight.unsqueeze(1), None if bias is None else bias.unsqueeze(1)
    terms = [(x[..., k:k + 1], weight[..., k]) for k in range(weight.shape[-1])]
    if device_type == "cpu":
        # A column of the points or of the weights is a view with stride d; broadcast multiply-adds on such views
        # ran 5x slower on a CPU than on contiguous copies (32 signals x 1,024 points x 64 wide, 2 cores: a first
        # layer took 1.2 against 0.24 ms forward), and copies of columns this small cost next to nothing.
        terms = [(column.contiguous(), row.contiguous()) for column, row in terms]
    with torch.autocast(device_type, enabled=False):
        (column, row), rest = terms[0], terms[1:]
        out = column * row
        for column, row in rest:
            out = torch.addcmul(out, column, row)
        # The bias last, in its own pass: the order of a matrix product's sums (products, then the bias), so a
        # group's first layer rounds as the same network's alone does. With the bias first, one image of 32 in
        # benchmarks/many_images.py ended 0.23 dB from its fit alone (at most 0.013 dB this way).
        return out if bias is None else out + bias


class OutputLinear(nn.Linear):
    """The output layer ``A z + a``, in float32 storage and arithmetic whatever autocast asks (under ``tf32`` on
    CUDA its product, as every float32 matrix product there, takes TF32's 10-bit inputs with float32 sums).

    In bf16 the prediction itself would be rounded to an 8-bit mantissa, a floor of roughly 45 dB on values in
    [-1, 1] (measured: a 64-px SIREN at 45.2 dB in fp32 reached 44.5 dB with a bf16 output). One
    width-by-channels product is cheap in float32; the same parameters and checkpoints as ``nn.Linear``.
    """

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(z.device.type, enabled=False):
            dtype = torch.promote_types(z.dtype, self.weight.dtype)
            return affine(z.to(dtype), self.weight.to(dtype), self.bias.to(dtype))
