"""Choosing a device and sizing batches and render chunks to the memory it has."""

from __future__ import annotations

import os

import torch

from inr_core.errors import UserError, check

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def check_device_name(name: str, setting: str = "device") -> None:
    """Raise InvalidSetting unless ``name`` is a device we know how to resolve (``cuda:N`` included)."""
    check(name in DEVICE_CHOICES or name.startswith("cuda:"), setting,
          f"must be one of: {', '.join(DEVICE_CHOICES)} (or cuda:N); got {name!r}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); "
                            "use --device cpu")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"unknown device {name!r}; choose one of: {', '.join(DEVICE_CHOICES)}")


def memory_budget_bytes(device: torch.device) -> int:
    """Memory a fit may plan to use for activations: half the GPU memory free to this process, shared with the
    other processes of this machine that use the same GPU, or a quarter of the host's RAM."""
    if device.type == "cuda":
        return cuda_free_bytes(device) // (2 * processes_per_gpu())
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return total // 4


def cuda_free_bytes(device: torch.device) -> int:
    """GPU memory this process can still use: what the driver reports free, plus what PyTorch's caching allocator
    holds without using (memory an earlier fit in the process freed). Without the second part, fits after the
    first in a process would plan with less memory than the first, and the same input could get another batch
    size (and so another result) depending on what the process had fitted before it."""
    free, _total = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def processes_per_gpu() -> int:
    """How many processes of this machine's torchrun job share each GPU (``LOCAL_WORLD_SIZE`` ranks over the
    GPUs there are; 1 outside torchrun), so that ranks sharing a GPU do not each plan with its whole memory."""
    try:
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        return 1
    return max(1, -(-local_processes // max(1, torch.cuda.device_count())))


def available_host_bytes() -> int:
    """Memory the kernel can give this process now (MemAvailable), else the share a fit would plan with."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 2 * memory_budget_bytes(torch.device("cpu"))


def activation_bytes_per_point(hidden: int, layers: int, training: bool) -> int:
    """A deliberately generous estimate of float32 activation memory per input point.

    Each hidden layer keeps a few width-``hidden`` tensors alive (pre-activation, activation, filter output);
    backward needs about as much again for gradients.
    """
    per_layer_tensors = 8 if training else 2
    return 4 * hidden * (layers + 2) * per_layer_tensors


def auto_batch_size(n_points: int, hidden: int, layers: int, device: torch.device, solver_tensors: int = 0) -> int:
    """Full batch when it fits in the memory budget, else the largest power of two that does.

    ``solver_tensors``: width-``hidden`` tensors per point a fixpoint solver keeps (0 for explicit models).
    """
    per_point = max(activation_bytes_per_point(hidden, layers, training=True), 4 * hidden * solver_tensors)
    fits = memory_budget_bytes(device) // per_point
    if fits >= n_points:
        return n_points
    return max(1024, 1 << max(0, int(fits).bit_length() - 1))


# On a CPU a stacked fit gains only the per-operation overhead of small fits (it is bound by arithmetic), and loses
# when one stacked activation outgrows what the allocator recycles: measured on 2 cores, SIREN 3x256 on 32 px,
# 16 signals per group ran at the speed of one at a time, 32 at 0.70x (each (G, 1024, 256) tensor then exceeded
# glibc's 32 MiB mmap threshold and was mapped and zeroed afresh every step). Groups stay below this. (Since group
# steps run in pieces on a CPU, a group of 32 is 11% faster than it was, and two groups of 16 still faster.)
CPU_STACKED_TENSOR_BYTES = 16 << 20


def auto_group_size(points_per_step: int, hidden: int, layers: int, device: torch.device, cap: int = 64,
                    solver_tensors: int = 0, resident_bytes: int = 0) -> int:
    """How many same-shaped signals one stacked fit takes: as many as fit the memory budget the batch sizes are
    planned with, at most ``cap``. Per signal: the activations of one step's points (and a fixpoint solver's
    state, ``solver_tensors`` width-``hidden`` tensors per point), plus ``resident_bytes`` it keeps for the whole
    fit (its targets, coordinates and amortized cache)."""
    per_point = max(activation_bytes_per_point(hidden, layers, training=True), 4 * hidden * solver_tensors)
    per_signal = per_point * points_per_step + resident_bytes
    if device.type == "cpu":
        cap = min(cap, CPU_STACKED_TENSOR_BYTES // (4 * hidden * points_per_step))
    return int(max(1, min(cap, memory_budget_bytes(device) // per_signal)))


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for honest wall times); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loss_read_interval(device: torch.device) -> int:
    """Steps between reading the training loss back to the host (progress, divergence check): each read makes a
    GPU wait for the host to queue more work, so on CUDA only every 50th step; on the CPU it costs nothing."""
    return 50 if device.type == "cuda" else 1


# On a CPU, a forward or backward pass over many points is fastest in pieces whose width-``hidden`` tensors stay
# within about this size: they then stay in the caches and in the memory glibc's allocator recycles (below its
# 32 MiB mmap threshold, see inr_core.host_memory), instead of being mapped and faulted in afresh each time.
# Measured on 2 cores with benchmarks/cpu_pieces.py (huge pages on, as `inr` runs): one training step of 131,072
# points, whole -> in pieces of 32,768 / 16,384 / 8,192 / 4,096 points (8,192 at width 256 is 8 MiB), ms:
# SIREN 3x256 897 -> 724 / 586 / 530 / 530; Fourier-MFN 3x256 932 -> 862 / 817 / 667 / 639; Gabor-MFN 3x256
# 2,751 -> 2,351 / 1,775 / 1,684 / 1,295; Fourier-iMFN 1L-256D (amortized) 598 -> 458 / 364 / 325 / 328;
# Gabor-iMFN 1L-256D 1,389 -> 1,202 / 861 / 689 / 584. A forward without gradients over them ran 0.37-0.62 of
# the whole pass's time in chunks of 8,192 or 4,096 (the two within 3% of each other). Whole `inr fit` commands
# did not confirm the Gabor models' further gain at 4,096 (12 steps at 512 px: Gabor-iMFN 757 ms per step in
# pieces of 8,192, 770 in pieces of 4,096; Fourier-iMFN 475 against 515), so the pieces stay at 8 MiB.
CPU_PIECE_TENSOR_BYTES = 8 << 20


def cpu_piece_points(hidden: int) -> int:
    """Points per piece of a CPU forward or backward pass: a width-``hidden`` float32 tensor of them fills
    :data:`CPU_PIECE_TENSOR_BYTES` (8,192 points at width 256), and never fewer than 1,024."""
    return max(1024, CPU_PIECE_TENSOR_BYTES // (4 * hidden))


def render_chunk_size(hidden: int, layers: int, device: torch.device, solver_tensors: int = 0) -> int:
    """Points per forward pass when rendering without gradients: bounded so a 4096^2 image is never one batch,
    and on a CPU to the pieces it runs fastest in (:func:`cpu_piece_points`)."""
    per_point = activation_bytes_per_point(hidden, layers, training=False) + 4 * hidden * solver_tensors
    fits = memory_budget_bytes(device) // per_point
    chunk = int(min(1 << 18, max(4096, fits)))
    return min(chunk, cpu_piece_points(hidden)) if device.type == "cpu" else chunk
