"""A run folder belongs to one process at a time, and a finished run is never silently mixed with a new one.

- **Lock.** The process writing a run holds an exclusive ``flock`` on ``.inr.lock`` in the run's root folder for
  as long as it runs. A second ``inr`` process aimed at the same folder is refused at once, in one line. The
  operating system drops the lock when its holder dies, even by ``kill -9``, so a stale lock file never blocks
  anyone (its contents, the holder's pid and host, are only for the message).
- **Reuse.** A folder that already holds a run (a ``report.json``, a ``summary.json``, or a saved training state,
  at the root or in an input's sub-folder) is refused unless ``--overwrite`` (its old outputs are removed first,
  so every ``report.json`` belongs to the files beside it) or ``--resume`` (finished inputs are kept, unfinished
  ones continue from their saved state).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import socket
import warnings
from pathlib import Path

import torch

from inr_cli.files import atomic_write_bytes, missing_ancestors, remove_if_empty
from inr_core.errors import UserError

LOCK = ".inr.lock"
REPORT = "report.json"
TRAINING_STATE = "training-state.pt"
SUMMARY_FILES = ("summary.json", "summary.md", "summary.png")
OVERVIEW_PAGE = "index.html"  # beside summary.json: removed with it, never on its own (it may be the user's)


class RunFolder:
    """The root folder of one `inr fit` run, claimed for this process (see the module's doc)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._created = missing_ancestors(self.root)
        self._handle = None

    def claim(self, *, overwrite: bool, resume: bool) -> RunFolder:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / LOCK, "a+")
        except OSError as error:
            raise UserError(f"cannot write to output folder {self.root}: {error.strerror or error}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"{self.root} is being written by another inr run ({holder}); wait for it to finish "
                            f"or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle
        try:
            self._check_reuse(overwrite, resume)
        except BaseException:
            self.release()
            raise
        return self

    def _check_reuse(self, overwrite: bool, resume: bool) -> None:
        reports, states = _finished_and_unfinished(self.root)
        summary = [self.root / name for name in SUMMARY_FILES if (self.root / name).exists()]
        if summary and (self.root / OVERVIEW_PAGE).exists():
            summary.append(self.root / OVERVIEW_PAGE)  # the summary's page goes with it
        if not (reports or states or summary) or resume:
            return
        if not overwrite:
            kind = "a finished" if reports or summary else "an unfinished"
            raise UserError(f"{self.root} already holds {kind} run; add --overwrite to replace it, --resume to "
                            f"continue it, or choose another --out")
        for report in reports:
            _remove_run_outputs(report)
        for path in [*states, *summary]:
            path.unlink(missing_ok=True)

    def release(self) -> None:
        """Give up the folder; remove the lock file, and the folder itself if this run created it and left it
        empty (a run whose every input failed)."""
        if self._handle is None:
            return
        (self.root / LOCK).unlink(missing_ok=True)
        self._handle.close()
        self._handle = None
        remove_if_empty(self._created)


def _finished_and_unfinished(root: Path) -> tuple[list[Path], list[Path]]:
    """Reports and saved training states at the root and in its immediate sub-folders (one per input)."""
    folders = [root, *(child for child in sorted(root.iterdir()) if child.is_dir())]
    reports = [folder / REPORT for folder in folders if (folder / REPORT).is_file()]
    states = [folder / TRAINING_STATE for folder in folders if (folder / TRAINING_STATE).is_file()]
    return reports, states


def _remove_run_outputs(report_path: Path) -> None:
    """Remove a finished run's report first (so a half-removed run never looks finished), then every file it
    lists; the folder goes too if nothing else is left in it."""
    try:
        files = json.loads(report_path.read_text()).get("files", {})
    except (OSError, ValueError):
        files = {}
    report_path.unlink(missing_ok=True)
    folder = report_path.parent
    for name in files.values() if isinstance(files, dict) else []:
        target = folder / str(name)
        if target.parent == folder and target.is_file():  # only files the report itself names, in its folder
            target.unlink()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def finished_report(folder: Path) -> dict | None:
    """The report of an input already finished in ``folder`` (for --resume), or None."""
    try:
        return json.loads((folder / REPORT).read_text())
    except (OSError, ValueError):
        return None


def save_training_state(folder: Path, state: dict) -> None:
    """Write a fit's saved state (plain data: see :mod:`training.fitting.control`) atomically into ``folder``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(Path(folder) / TRAINING_STATE, buffer.getvalue())


def load_training_state(folder: Path, config: dict) -> dict | None:
    """The state saved in ``folder`` for a fit of ``config`` (a resolved FitConfig's dict), None when there is
    none. Read without running code from the file; a state of another configuration is refused in one line."""
    path = Path(folder) / TRAINING_STATE
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - the safe loader raises many types on damaged files
        raise UserError(f"{path}: not a readable training state; remove it, or use --overwrite to start again") \
            from None
    saved = state.get("config") if isinstance(state, dict) else None
    if saved != config:
        differing = sorted(key for key in set(saved or {}) | set(config) if (saved or {}).get(key) != config.get(key))
        raise UserError(f"{path}: saved for another configuration (differs in {', '.join(differing) or 'format'}); "
                        f"run with the same options, or use --overwrite to start again")
    return state
