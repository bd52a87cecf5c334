"""Which loaded inputs fit together: same-shaped inputs wait for their group to fill (to ``--group-size``, or as
many as fit in memory), within a bound on how many inputs and bytes may wait."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from training.fitting.devices import auto_group_size
from training.fitting.grouped import group_key, stack_key

if TYPE_CHECKING:
    from inr_cli.fitting import Job

MAX_AUTO_GROUP = 64  # signals per stacked fit when --group-size is not given
# Loaded inputs waiting for a group to fill, at most: inputs of one shape join a group even when other shapes
# come between them, but a long run of all-different shapes must not hold the whole dataset in memory.
MAX_WAITING_INPUTS = 64
MAX_WAITING_BYTES = 2 << 30


def group_limit(requested: int | None, job: Job) -> int:
    """How many inputs the group ``job`` starts may take: ``--group-size``, or as many as fit in memory."""
    if requested is not None:
        return requested
    config, signal = job.fit_config, job.loaded.signal
    return auto_group_size(min(signal.train_count, config.batch_size), config.hidden, config.layers,
                           torch.device(config.device), cap=MAX_AUTO_GROUP, solver_tensors=config.solver_tensors(),
                           resident_bytes=4 * signal.train_count * (config.hidden + signal.dims + signal.channels))


def _held_bytes(job: Job) -> int:
    signal = job.loaded.signal
    return 4 * signal.num_points * (signal.dims + signal.channels)


class WaitingGroups:
    """Loaded inputs waiting to fit, grouped by what they can share (resolved config, its frequency scale aside, and
    signal shape)."""

    def __init__(self, group_size: int | None):
        self.group_size = group_size
        self.waiting: dict[tuple, list[Job]] = {}  # by key, in the order the groups were opened
        self.limits: dict[tuple, int] = {}

    def add(self, job: Job) -> list[Job] | None:
        """Add ``job``; returns a group to fit now: one that is full, or the oldest when too many wait."""
        key = (stack_key(job.fit_config), group_key(job.loaded.signal))
        if key not in self.waiting:
            self.waiting[key], self.limits[key] = [], group_limit(self.group_size, job)
        self.waiting[key].append(job)
        if len(self.waiting[key]) >= self.limits[key]:
            return self._take(key)
        jobs = [waiting for group in self.waiting.values() for waiting in group]
        if len(jobs) > MAX_WAITING_INPUTS or sum(_held_bytes(waiting) for waiting in jobs) > MAX_WAITING_BYTES:
            return self._take(min(self.waiting, key=lambda k: self.waiting[k][0].index))
        return None

    def _take(self, key: tuple) -> list[Job]:
        del self.limits[key]
        return self.waiting.pop(key)

    def drain(self):
        """The groups still waiting, oldest first."""
        while self.waiting:
            yield self._take(min(self.waiting, key=lambda k: self.waiting[k][0].index))
