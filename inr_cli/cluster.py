"""Several processes sharing one `inr fit` run, as launched by torchrun (``torch.distributed``, no other engine).

``torchrun --nproc_per_node=K -m inr_cli fit image - < paths.txt`` starts K copies of the command, with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in their environment. Rank 0 reads the inputs
(stdin included) and names the run folder; every rank learns both from it, takes every K-th input (rank r: inputs
r, r + K, ...), fits them on its own GPU (``cuda:LOCAL_RANK``) or on the CPU, and writes their folders exactly as
a single process would. Outcomes travel back to rank 0, which prints them in input order and writes the
dataset summary; every rank then exits with the same code, so the launcher sees one verdict.

Only small Python objects are exchanged (paths, reports), so the gloo backend serves both CPUs and GPUs and every
rank needs only a shared filesystem for the run folder (on several machines: a network filesystem).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, TypeVar

import torch

from inr_cli.errors import LeftToRankZero
from inr_core.errors import InvalidSetting, UserError

T = TypeVar("T")
# Ranks wait for each other only at the start and once all their fits are done: as long as the longest share.
COLLECTIVE_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Cluster:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Cluster:
        """This process's place in a torchrun launch (joining its process group), or a cluster of one."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            # Anything made without an explicit device (and the CUDA context itself) lands on this rank's GPU.
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return cls(dist.get_rank(), dist.get_world_size(), local_rank)

    def close(self, wait: bool = True) -> None:
        """Leave the process group; ``wait=False`` (an interrupted run) leaves without waiting for the others."""
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                # Leave together: a rank tearing its group down while another's last collective is still in
                # flight can abort the process (gloo's threads are destroyed while joinable).
                if wait:
                    dist.barrier()
                dist.destroy_process_group()

    def my_share(self, count: int) -> list[int]:
        """The indices of the inputs this rank fits: every world_size-th, starting at its rank."""
        return list(range(self.rank, count, self.world_size))

    def device_for(self, name: str) -> str:
        """The device a rank fits on: its own GPU (``cuda:LOCAL_RANK``) for ``auto``/``cuda`` where there are GPUs;
        an explicit ``cuda:N`` or ``cpu`` as given."""
        if not self.distributed or name not in ("auto", "cuda") or not torch.cuda.is_available():
            return name
        return f"cuda:{self.local_rank % torch.cuda.device_count()}"

    def from_leader(self, compute: Callable[[], T]) -> T:
        """``compute()`` on rank 0, its value on every rank. A UserError raised there is raised on rank 0 (which
        prints its one line) and ends every other rank with the same exit code, silently: the line once, not once
        per rank."""
        if not self.distributed:
            return compute()
        import torch.distributed as dist

        box: list = [None]
        if self.is_leader:
            try:
                box[0] = ("value", compute())
            except UserError as error:
                box[0] = ("error", error)
        dist.broadcast_object_list(box, src=0)
        kind, payload = box[0]
        if kind == "error":
            if self.is_leader:
                raise payload
            raise LeftToRankZero(2 if isinstance(payload, InvalidSetting) else 1)
        return payload

    def gather_to_leader(self, mine: dict) -> dict | None:
        """Every rank's dict merged on rank 0 (None elsewhere)."""
        if not self.distributed:
            return dict(mine)
        import torch.distributed as dist

        parts: list | None = [None] * self.world_size if self.is_leader else None
        dist.gather_object(mine, parts, dst=0)
        if not self.is_leader:
            return None
        merged: dict = {}
        for part in parts:
            merged.update(part)
        return merged

    def agree(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (e.g. the exit code)."""
        return self.from_leader(lambda: value)
