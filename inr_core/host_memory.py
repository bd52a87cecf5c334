"""Keeping freed host memory for reuse, so CPU training does not page-fault every step (glibc's allocator).

Every training step allocates and frees the same activations. PyTorch's CPU allocator hands each request to
malloc, and glibc's malloc, by default, serves a large request with a fresh ``mmap`` (and unmaps it when freed),
or returns the top of its heap to the system once more than twice the last such size lies free there. Either way
the next step's tensors land on pages the kernel must fault in and zero again: measured on 2 cores, a grouped fit
of 32 crops (SIREN 3x64, (32, 1024, 64) activations of 8 MiB) spent 3.8 s of a 16.4 s training in the kernel.

:func:`keep_freed_host_memory` raises both limits: requests up to glibc's ceiling for the mmap threshold
(32 MiB on 64-bit systems) come from the heap, and freed memory stays in the process for the next step instead
of going back to the system. The same fit then trained in 13.3 s with 0.9 s in the kernel. The cost: a process
keeps the memory of its largest step until it exits, which its peak had claimed anyway. (Setting only the trim
limit is worse than nothing: it freezes the mmap threshold at 128 KiB, so every tensor is mapped afresh.)

Elsewhere (macOS, Windows, musl) nothing is changed. Command-line entry points call it once at start-up; a
library user can call it, or set ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``, to the same effect.

Larger tensors, from 32 MiB, are mapped afresh each time: glibc refuses a higher mmap threshold, and serving them
from the heap instead (``M_MMAP_MAX`` 0) made such fits 1.6x faster but fragmented the heap to 1.5-3x the peak
memory. What costs is faulting the new mappings in 4 KiB page by page. Where the kernel gives transparent huge pages
only to memory that asks for them (``/sys/kernel/mm/transparent_hugepage/enabled`` reads ``[madvise]``, the default
of many distributions), glibc 2.35 and later ask for them when started with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, and each 2 MiB is then one fault. A tunable is read only at start-up, so
:func:`relaunch_with_huge_pages` replaces the process (same id, name, arguments and standard streams) with itself
started that way.

Measured on 2 cores (``benchmarks/host_allocator.py``, medians of 2). Before CPU steps ran in pieces, a SIREN 3x256
step on a 256 x 256 image or a 50,000-point SDF batch made dozens of such tensors: 40 steps on camera 256 x 256
trained in 15.4 s instead of 21.0 s, 60 steps of an SDF fit in 16.8 s instead of 23.9 s, with the same peak memory.
In pieces of 8 MiB no fit makes them every step, and the one command that still does, FID's Inception pass, gained
nothing measurable (0.95x, within the runs' spread); docs/performance.md has the table. A ``GLIBC_TUNABLES`` that
already names ``glibc.malloc.hugetlb`` (``=0`` to switch it off) is left as it is.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

# mallopt parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses a larger mmap threshold on 64-bit systems (HEAP_MAX_SIZE / 2).
MMAP_THRESHOLD_CEILING = 32 << 20
# Free memory at the top of the heap beyond this goes back to the system: far above one step's activations on
# a CPU. (mallopt takes an int: at most 2 GiB - 1.)
TRIM_THRESHOLD = 1 << 30


def keep_freed_host_memory() -> bool:
    """Tell glibc's malloc to serve tensors up to 32 MiB from its heap and keep freed memory (see the module
    doc). Returns whether the settings took effect (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl's mallopt is a stub that ignores its arguments
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # The mmap threshold first: setting either one switches off glibc's own adjustment of both.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_CEILING)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb"
TRANSPARENT_HUGE_PAGES = Path("/sys/kernel/mm/transparent_hugepage/enabled")
FIRST_GLIBC_WITH_HUGE_PAGES = (2, 35)


def glibc_version() -> tuple[int, int] | None:
    """(major, minor) of the C library this process runs on, or None when it is not glibc."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, ValueError, OSError):
        return None


def huge_pages_on_request(mode_file: Path = TRANSPARENT_HUGE_PAGES) -> bool:
    """Whether the kernel gives transparent huge pages only to memory that asks for them ("madvise" mode): then
    asking gains something. ("always" gives them anyway, "never" not at all.)"""
    try:
        return "[madvise]" in mode_file.read_text()
    except OSError:
        return False


def environment_with_huge_pages(environ: dict[str, str], mode_file: Path = TRANSPARENT_HUGE_PAGES,
                                glibc: tuple[int, int] | None = None) -> dict[str, str] | None:
    """``environ`` with glibc's malloc told to ask for huge pages, or None where that would change nothing: not
    glibc 2.35 or later, the kernel not in "madvise" mode, or ``GLIBC_TUNABLES`` already deciding it."""
    glibc = glibc_version() if glibc is None else glibc
    tunables = environ.get("GLIBC_TUNABLES", "")
    if glibc is None or glibc < FIRST_GLIBC_WITH_HUGE_PAGES or HUGE_PAGES_TUNABLE in tunables:
        return None
    if not huge_pages_on_request(mode_file):
        return None
    setting = f"{HUGE_PAGES_TUNABLE}=1"
    return {**environ, "GLIBC_TUNABLES": f"{tunables}:{setting}" if tunables else setting}


def restart_command(original: list[str], script: str, executable: str) -> tuple[str, list[str]]:
    """What to execute to start this process again, given its whole command line (``sys.orig_argv``), its
    ``sys.argv[0]`` and its interpreter: a script started through its ``#!`` line (``python SCRIPT ARGS``) is
    executed itself, so the process keeps the script's name as ``ps``, ``pgrep`` and ``killall`` show it;
    anything else (``python -m ...``, interpreter options) is the interpreter with the same arguments."""
    if len(original) >= 2 and original[1] == script and os.path.isfile(script) and os.access(script, os.X_OK):
        return script, original[1:]
    return executable, original


def relaunch_with_huge_pages() -> None:
    """Replace this process with itself started again (:func:`restart_command`), with glibc's malloc asking for
    huge pages (see the module doc); return without doing anything where that would change nothing or the
    process cannot be started again. Call it first thing, before anything is read from stdin or written."""
    environment = environment_with_huge_pages(dict(os.environ)) if sys.platform.startswith("linux") else None
    startable = bool(sys.executable) and bool(getattr(sys, "orig_argv", None)) and not getattr(sys, "frozen", False)
    if environment is None or not startable:
        return
    program, arguments = restart_command(list(sys.orig_argv), sys.argv[0], sys.executable)
    try:
        os.execve(program, arguments, environment)
    except OSError:
        return  # carry on as started: slower on large CPU fits, never different
