"""Peak memory of a block of work: CUDA's allocator statistics on a GPU, the process's resident-set peak on Linux.

On the CPU we reset the kernel's high-water mark (``/proc/self/clear_refs``, value 5) before the work and read
``VmHWM`` after it. Large tensors are mmapped and returned to the system when freed, so the difference between
the peak and the resident size at the start measures what the work needed. Elsewhere we report nothing
rather than a wrong number.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakMemory:
    def __init__(self):
        self.megabytes: float | None = None
        self.source = "unavailable"


@contextmanager
def measure_peak_memory(device: torch.device):
    result = PeakMemory()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        result.megabytes = (torch.cuda.max_memory_allocated(device) - start) / 2**20
        result.source = "cuda allocator peak"
        return
    start = _status_kib("VmRSS")
    try:
        PROC_CLEAR_REFS.write_text("5")
        resettable = start is not None
    except OSError:
        resettable = False
    yield result
    peak = _status_kib("VmHWM")
    if resettable and peak is not None:
        result.megabytes = max(0, peak - start) / 1024
        result.source = "process resident-set peak"
