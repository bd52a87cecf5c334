"""The JIIO-vs-Adam protocol, shared by `inr jiio-invert --method both` and `benchmarks/jiio_vs_adam.py`.

On one batch of corrupted images:

1. JIIO restores the batch; its mean cost (at the solved equilibria) becomes the target.
2. Adam runs for as many steps as JIIO's iterations (equal iterations), once per learning rate given; the
   learning rate reaching the lowest mean cost is kept, so the baseline is not handicapped by a poor step size.
3. Adam, with that learning rate, runs again until its mean best cost reaches JIIO's (equal loss), for at most
   ``chase_steps``. If it never gets there, ``reached`` is False and its time ratio is only a lower bound.

Time ratios are Adam's seconds over JIIO's. Every run is timed the same way (:func:`training.jiio.inverse_tasks.
timed`, final equilibrium solve included); ``measure`` lets a benchmark repeat each run and keep, say, its median
time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from models.mdeq import MDEQDecoder
from training.jiio.inverse_tasks import Corruption, Restoration, restore, restore_adam
from training.jiio.settings import AdamSettings, JIIOSettings

# Adam "reached" JIIO's loss when its cost is within this relative margin of it (float rounding of the means).
REACHED_MARGIN = 1e-6

Measure = Callable[[Callable[[], Restoration]], Restoration]


def run_once(run: Callable[[], Restoration]) -> Restoration:
    return run()


@dataclass
class BatchComparison:
    jiio: Restoration
    adam: Restoration  # at equal iterations, with the learning rate that reached the lowest mean cost
    adam_settings: AdamSettings  # that learning rate's settings
    sweep: list[Restoration]  # Adam at equal iterations for every learning rate tried, in the order given
    to_equal_loss: Restoration  # Adam run until its mean cost reaches ``target_cost`` (or its step cap)
    target_cost: float  # JIIO's mean cost on the batch

    @property
    def reached(self) -> bool:
        chase = self.to_equal_loss
        return float(chase.cost.mean()) <= self.target_cost * (1 + REACHED_MARGIN) or \
            chase.cost_trace[-1] <= self.target_cost


def compare_on_batch(decoder: MDEQDecoder, corruption: Corruption, jiio: JIIOSettings,
                     adam: Sequence[AdamSettings], chase_steps: int, measure: Measure = run_once) -> BatchComparison:
    """Steps 1-3 of the protocol on one batch. ``adam`` holds one settings per learning rate to try, each with
    ``steps`` equal to JIIO's iterations."""
    if not adam:
        raise ValueError("the protocol needs at least one Adam setting")
    jiio_run = measure(lambda: restore(decoder, corruption, jiio))
    sweep = [measure(lambda settings=settings: restore_adam(decoder, corruption, settings)) for settings in adam]
    best = min(range(len(sweep)), key=lambda i: float(sweep[i].cost.mean()))
    target = float(jiio_run.cost.mean())
    chase = measure(lambda: restore_adam(decoder, corruption, replace(adam[best], steps=chase_steps),
                                         target_cost=target))
    return BatchComparison(jiio_run, sweep[best], adam[best], sweep, chase, target)


def summarize_comparisons(batches: list[BatchComparison], chase_steps: int) -> dict:
    """The report's ``comparison`` block over every batch: times summed, costs averaged over images."""
    jiio_seconds = sum(b.jiio.seconds for b in batches)
    adam_seconds = sum(b.adam.seconds for b in batches)
    chase_seconds = sum(b.to_equal_loss.seconds for b in batches)
    reached = all(b.reached for b in batches)
    return {
        "equal_iterations": {
            "iterations": batches[0].jiio.iterations,
            "jiio_seconds": jiio_seconds, "adam_seconds": adam_seconds,
            "time_ratio": adam_seconds / jiio_seconds,
            "jiio_cost": float(torch.cat([b.jiio.cost for b in batches]).mean()),
            "adam_cost": float(torch.cat([b.adam.cost for b in batches]).mean()),
        },
        "equal_loss": {
            "target_cost": sum(b.target_cost for b in batches) / len(batches),
            "adam_steps": [b.to_equal_loss.iterations for b in batches],
            "adam_seconds": chase_seconds, "jiio_seconds": jiio_seconds,
            "time_ratio": chase_seconds / jiio_seconds,
            "reached": reached,
            "note": None if reached else f"Adam did not reach JIIO's loss within {chase_steps} steps: "
                                         "the ratio is a lower bound",
        },
    }
