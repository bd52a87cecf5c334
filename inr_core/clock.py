"""When this process started, on the ``time.perf_counter`` clock: start-up times are measured from there.

The interpreter and the imports run before any of our code can read a clock, so the process's own start time
is taken from the operating system where it says (Linux ``/proc``); elsewhere, from the first import of this
module, which then misses the interpreter's own start-up.
"""

from __future__ import annotations

import os
import time


def process_age_seconds() -> float:
    """Seconds since this process started (0.0 where the system does not say)."""
    try:
        with open("/proc/self/stat") as stat:
            # Field 22, counted after the command name (which may hold spaces, hence the split at its ")").
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            uptime_seconds = float(uptime.read().split()[0])
        return max(0.0, uptime_seconds - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


PROCESS_STARTED_AT = time.perf_counter() - process_age_seconds()
