"""The report of a run: one JSON object with stable keys (README "Report keys"), and a human summary."""

from __future__ import annotations

import functools
import json
import math
import os
import platform
from importlib import metadata

import numpy
import torch

# 2: `config` is the run's whole config, nested (fit settings, solver settings, the command's own options).
REPORT_VERSION = 2


def package_version() -> str:
    try:
        return metadata.version("inr")
    except metadata.PackageNotFoundError:
        return "unknown"


def versions(device: str | None = None) -> dict:
    """What a report was made with; a fresh copy of what this process found the first time (the lookups cost
    tens of milliseconds, and a run over many inputs writes a report for each). ``device`` (``cuda:1``): the GPU
    whose name to give, where the report is written by another thread than the fit's (a background writer's
    current device is the first GPU, not a torchrun rank's own); default: the calling thread's current device."""
    info = dict(_versions())
    if "gpu" in info and device is not None and device.startswith("cuda"):
        info["gpu"] = _gpu_name(device)
    return info


@functools.lru_cache(maxsize=None)
def _gpu_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device))


@functools.lru_cache(maxsize=1)
def _versions() -> dict:
    info = {
        "inr": package_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }
    if os.environ.get("GLIBC_TUNABLES"):  # e.g. glibc.malloc.hugetlb=1, set by the `inr` command (host_memory)
        info["glibc_tunables"] = os.environ["GLIBC_TUNABLES"]
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name()  # the calling thread's current device (see versions)
    return info


def json_number(value):
    """JSON has no infinity: a perfect reconstruction's PSNR is written as null with ``*_exact`` flags elsewhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clean(value):
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return json_number(value)


def to_json(report: dict, indent: int | None = 2) -> str:
    return json.dumps(clean(report), indent=indent, allow_nan=False)


def human_summary(report: dict, quality_line: str) -> str:
    """The run's summary for people: what ran and how fast, the modality's ``quality_line``, notes, the folder."""
    parts = [
        f"{report['input']}: {report['model']} ({report['params']:,} parameters), {report['steps']} steps "
        f"in {report['seconds']:.1f} s ({report['steps_per_second']:.1f} steps/s, {report['device']})",
        quality_line,
    ]
    for note in report.get("notes", []):
        parts.append(f"  note: {note}")
    parts.append(f"  -> {report['output_dir']}")
    return "\n".join(parts)


def db_text(value) -> str:
    return "inf dB" if value is None or not math.isfinite(value) else f"{value:.2f} dB"


def number_text(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
