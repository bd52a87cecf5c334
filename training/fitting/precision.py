"""The numeric precision a fit trains and evaluates in.

- ``fp32``: everything in float32; the reference, and the default on the CPU.
- ``tf32``: float32 storage, hidden matrix products on CUDA tensor cores in TF32 (10-bit mantissa inputs,
  float32 accumulation). Has no effect on the CPU, which has no TF32 arithmetic.
- ``bf16``: autocast to bfloat16 for the hidden matrix products (CPU and CUDA).

In every mode the sine phases of the coordinates (SIREN's first layer, every MFN filter, iSIREN's injections)
and the Gabor envelopes stay in exact float32 (:func:`models.base.coordinate_linear`): their arguments reach
hundreds of radians, where a 10- or 8-bit mantissa would scramble the phase. Only width-by-width products,
whose arguments are O(1), run in reduced precision.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from inr_core.errors import check

PRECISIONS = ("fp32", "tf32", "bf16")
# The default on CUDA: TF32 halves a SIREN step against fp32 at the same PSNR on an H200 (docs/performance.md);
# bf16 is faster again but is the mode whose PSNR must be measured per model before it can be the default.
CUDA_DEFAULT_PRECISION = "tf32"
CPU_DEFAULT_PRECISION = "fp32"


def check_precision(name: str | None, setting: str = "precision") -> None:
    check(name is None or name in PRECISIONS, setting, f"must be one of: {', '.join(PRECISIONS)}; got {name!r}")


def default_precision(device: torch.device) -> str:
    return CUDA_DEFAULT_PRECISION if device.type == "cuda" else CPU_DEFAULT_PRECISION


def precision_note(precision: str, device: torch.device) -> str | None:
    """What a user should know about running ``precision`` on ``device`` (None: nothing)."""
    if precision == "tf32" and device.type != "cuda":
        return "tf32 has no effect on the CPU: its matrix products ran in fp32"
    return None


@contextmanager
def precision_scope(precision: str, device: torch.device):
    """Run a block (training steps, evaluations) in ``precision``; global switches are restored afterwards."""
    if precision == "tf32" and device.type == "cuda":
        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(previous)
    elif precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
