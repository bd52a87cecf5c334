"""What a fit needs from whoever runs it, beyond progress: periodic saves of its whole state, a way to be stopped,
a state to resume from; and what it does on its own when the loss runs away (roll back, lower the learning rate).

The state a fit saves is plain data (tensors, numbers, lists, dicts): the caller writes it wherever it likes and
hands it back as ``FitControl.resume``. On the CPU a resumed fit ends bit-identical to an uninterrupted one: the
state holds the weights, the optimizer, the batch order and its generator, the global RNG, the amortized cache,
the loss history and the evaluations so far.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

# With no --checkpoint-every, a fit saves its state after every this many seconds of training.
DEFAULT_SAVE_SECONDS = 300.0

# A loss this many times its best so far (40 dB of PSNR lost) is a run-away, not a spike of training ...
RUNAWAY_FACTOR = 1e4
# ... once it is also back within 20 dB of the fit's first loss. A fit far above its start is in a spike that Adam
# recovers from (and --keep best keeps the network from before it): without this floor, a fit near 100 dB whose
# loss moved 1e4-fold on rounding noise (1e-13 to 1e-9) was rolled back three times and failed as diverged.
RUNAWAY_START_FRACTION = 1e-2
ROLLBACK_LR_FACTOR = 0.5
MAX_ROLLBACKS = 3
# Steps between snapshots of the last good state (taken where the loss is read back anyway).
SNAPSHOT_EVERY = 25


def _never() -> bool:
    return False


@dataclass
class FitControl:
    """``save(state)`` is called every ``save_every_steps`` steps (or ``save_every_seconds`` of training when
    that is None; 0 never) and when ``stop_requested()`` turns true, after which the fit raises
    :class:`Interrupted`. ``resume`` is a state from an earlier ``save`` to continue from."""

    resume: dict | None = None
    save: Callable[[dict], None] | None = None
    save_every_steps: int | None = None
    save_every_seconds: float = DEFAULT_SAVE_SECONDS
    stop_requested: Callable[[], bool] = _never
    _last_saved_at: float = field(default_factory=time.perf_counter)

    def save_due(self, step: int, steps: int) -> bool:
        if self.save is None or step == steps:
            return False
        if self.save_every_steps is not None:
            return self.save_every_steps > 0 and step % self.save_every_steps == 0
        return self.save_every_seconds > 0 and time.perf_counter() - self._last_saved_at >= self.save_every_seconds

    def saved(self) -> None:
        self._last_saved_at = time.perf_counter()


class Interrupted(Exception):
    """The fit stopped because it was asked to, after saving its state at ``step``."""

    def __init__(self, step: int):
        super().__init__(f"interrupted at step {step}")
        self.step = step
        self.fitting: str | None = None  # what was being fitted, for the message: set by whoever knows the inputs


def rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def to_host(value):
    """``value`` with every tensor detached and on the CPU (nested dicts, lists and tuples): plain data to save."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: to_host(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_host(item) for item in value)
    return value


def set_learning_rate(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


def runs_away(worst: float, best: float, first: float) -> bool:
    """Whether ``worst``, the highest loss since the last look, is a run-away for a fit whose lowest loss so far
    is ``best`` and whose first step's loss was ``first``: non-finite, or ``RUNAWAY_FACTOR`` times ``best`` and
    above ``RUNAWAY_START_FRACTION`` of ``first``."""
    if not math.isfinite(worst):
        return True
    return worst > RUNAWAY_FACTOR * best and worst > RUNAWAY_START_FRACTION * first


class RunawayGuard:
    """Watches the loss where the fit reads it back; keeps a snapshot of the last good state every
    ``SNAPSHOT_EVERY`` steps; on a run-away loss (:func:`runs_away`) says so, so the fit can restore the snapshot
    and go on at a lower learning rate (at most ``MAX_ROLLBACKS`` times)."""

    def __init__(self):
        self.best = float("inf")
        self.rollbacks = 0
        self.snapshot: dict | None = None
        self.snapshot_step = 0

    def ran_away(self, worst: float, first: float) -> bool:
        """``first``: the fit's first step's loss (see :func:`runs_away`)."""
        return runs_away(worst, self.best, first)

    def good(self, step: int, loss: float, capture: Callable[[], dict]) -> None:
        self.best = min(self.best, loss)
        if self.snapshot is None or step - self.snapshot_step >= SNAPSHOT_EVERY:
            self.snapshot, self.snapshot_step = copy.deepcopy(capture()), step

    def state(self) -> dict:
        return {"best": self.best, "rollbacks": self.rollbacks}

    def restore(self, state: dict) -> None:
        self.best, self.rollbacks = state["best"], state["rollbacks"]
