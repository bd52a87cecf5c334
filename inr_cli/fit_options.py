"""Where and how `inr fit` reports: the output options every fit command shares, apart from the fitting
machinery so that the commands (and their ``--help``) can be built without importing it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OutputOptions:
    out: Path | None = None  # the run folder (one sub-folder per input when there are several)
    as_json: bool = False  # one JSON report per input on stdout, nothing else
    show_progress: bool = True
    # Write one input's files on a background thread while the next trains. None: on CUDA, where the host is
    # idle while the device trains. On a CPU the writer would take cores from training (and make its threads
    # wait on each other), so there the files are written between fits.
    write_in_background: bool | None = None
    # Same-shaped inputs fitted together as one stacked network: at most this many (None: as many as fit in
    # memory; 1: one at a time).
    group_size: int | None = None
    # Save each fit's whole state every this many steps (0: never; None: every few minutes of training).
    checkpoint_every: int | None = None
    resume: bool = False  # continue the run in ``out``: finished inputs kept, unfinished ones from their state
    overwrite: bool = False  # replace a run already in ``out`` (its old outputs removed first)
    tensorboard: Path | None = None  # a TensorBoard run per input under this folder (--tensorboard)
