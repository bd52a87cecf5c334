"""The numeric precision a fit trains and evaluates in.

- ``fp32``: everything in float32; the reference, and the default on the CPU.
- ``tf32``: float32 storage, hidden matrix products on CUDA tensor cores in TF32 (10-bit mantissa inputs,
  float32 accumulation). Has no effect on the CPU, which has no TF32 arithmetic.
- ``bf16``: autocast to bfloat16 for the hidden matrix products (CPU and CUDA).

In every mode the sine phases of the coordinates (SIREN's first layer, every MFN filter, iSIREN's injections)
and the Gabor envelopes stay in exact float32 (:func:`models.base.coordinate_linear`): their arguments reach
hundreds of radians, where a 10- or 8-bit mantissa would scramble the phase. Only width-by-width products,
whose arguments are O(1), run in reduced precision.

torch is imported where a precision is applied, not with this module: the modes and defaults are option lists a
command shows in ``--help`` before anything is computed.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

from inr_core.errors import check

if TYPE_CHECKING:
    import torch

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


# Above this PSNR, bf16's 8-bit hidden activations hold a fit back: at 45 dB they cost SIREN 0.29 dB, at 83 dB about
# 18 (camera at 64 px, SIREN 3x256, 150 steps on a CPU: 65.1 dB in bf16 against 83.4 in fp32).
BF16_NOTE_DB = 50.0


def bf16_ceiling_note(precision: str, psnr: float | None) -> str | None:
    """The note for a bf16 fit that reached where bf16's rounding costs whole dB (None: nothing to say)."""
    if precision != "bf16" or psnr is None or not psnr > BF16_NOTE_DB:
        return None
    return (f"bf16 rounds hidden activations to 8 significant bits, which holds fits above about "
            f"{BF16_NOTE_DB:.0f} dB back (camera at 64 px, SIREN 3x256, 150 steps: 65.1 dB in bf16, 83.4 in fp32); "
            "--precision fp32 for fits this high")


@contextmanager
def matmul_precision(precision: str, device: torch.device):
    """For a whole run: switch CUDA float32 matrix products to TF32 in ``tf32`` mode (restored afterwards)."""
    if precision == "tf32" and device.type == "cuda":
        import torch

        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(previous)
    else:
        yield


def autocast(precision: str, device: torch.device):
    """For one forward pass: bf16 autocast in ``bf16`` mode, nothing otherwise.

    Enter it around each training forward, never around a loop of steps: autocast caches its bf16 copies of the
    weights until the context exits, so a loop inside one context would keep computing with the first step's
    weights while the optimizer updates the float32 ones.
    """
    if precision == "bf16":
        import torch

        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def precision_scope(precision: str, device: torch.device):
    """Both switches at once, for work that does not update weights (an evaluation, a render)."""
    with matmul_precision(precision, device), autocast(precision, device):
        yield
