"""Peak device memory of a block of work, from CUDA's allocator statistics.

On the CPU there is no trustworthy equivalent (the C allocator reuses freed blocks without changing the
process's resident size), so there we report nothing rather than a wrong number; the allocator-independent
measure that works everywhere is :func:`training.fitting.step_memory.training_step_bytes`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class PeakMemory:
    def __init__(self):
        self.megabytes: float | None = None


@contextmanager
def measure_peak_memory(device: torch.device):
    result = PeakMemory()
    if device.type != "cuda":
        yield result
        return
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    yield result
    torch.cuda.synchronize(device)
    result.megabytes = (torch.cuda.max_memory_allocated(device) - start) / 2**20
