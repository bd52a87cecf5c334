"""What `inr jiio-robust` is asked to do (:class:`RobustRun`), apart from the run itself
(:mod:`inr_cli.jiio.robust_runs`) so that the command and its ``--help`` are built without torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.jiio.robust.config import RobustConfig


@dataclass
class RobustRun:
    """What `inr jiio-robust` was asked to do (validated by the command)."""

    config: RobustConfig = field(default_factory=RobustConfig)
    data: str | None = None  # train on this labelled collection
    labels: str | None = None  # IDX labels of --data, when not beside it
    classifier: Path | None = None  # or use this classifier (with resume: continue training it)
    resume: bool = False
    train_count: int | None = None  # None: all but the held-out images
    test_data: str | None = None
    test_labels: str | None = None
    test_count: int = 500
    attacks: tuple[str, ...] = ("pgd", "jiio")
    eval_batch_size: int | None = None
    device: str = "auto"
    overwrite: bool = False
    # The settings given explicitly (config field: its flag): a resume refuses any that differs from its run's.
    given: dict[str, str] = field(default_factory=dict)

    def trains(self) -> bool:
        return self.data is not None or self.resume
