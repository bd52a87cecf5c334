"""A run folder belongs to one process at a time, and a finished run is never silently mixed with a new one.

- **Lock.** The process writing a run holds an exclusive ``flock`` on ``.inr.lock`` in the run's root folder for
  as long as it runs. A second ``inr`` process aimed at the same folder is refused at once, in one line. The
  operating system drops the lock when its holder dies, even by ``kill -9``, so a stale lock file never blocks
  anyone (its contents, the holder's pid and host, are only for the message). The lock covers the folder's
  whole tree: a run into a folder inside one that another live run holds (an input's sub-folder of a run over
  several inputs) is refused, and so is a run into a folder with a sub-folder that another live run holds; each
  would write files the other one writes.
- **Reuse.** A folder that already holds a run (a ``report.json``, a ``summary.json``, or a saved training state,
  at the root or in an input's sub-folder) is refused unless ``--overwrite`` or ``--resume`` (finished inputs
  are kept, unfinished ones continue from their saved state).
- **Overwrite without loss.** ``--overwrite`` first sets the old run's outputs aside, in a hidden folder inside
  the run folder, so every ``report.json`` belongs to the files beside it. They are deleted once the new run has
  finished something (a report, a summary), stay set aside while it is unfinished (stopped with a state to
  resume from), and are put back exactly as they were if it left neither (every input failed, or it was stopped
  before its first save): a failing or interrupted replacement never costs the old run.
- **Not someone else's folder.** A folder that holds files but no run (a folder of photos, a home folder) is
  refused: a run writes ``target.png``, ``index.html`` and more into its folder, and would replace the user's
  files of those names.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import socket
import warnings
from pathlib import Path

import torch

from inr_cli.files import (atomic_write_bytes, missing_ancestors, refuse_dangling_link, remove_if_empty,
                           written_by_a_live_process)
from inr_core.errors import UserError

LOCK = ".inr.lock"
REPORT = "report.json"
TRAINING_STATE = "training-state.pt"
SUMMARY_FILES = ("summary.json", "summary.md", "summary.png")
OVERVIEW_PAGE = "index.html"  # beside summary.json: removed with it, never on its own (it may be the user's)
SET_ASIDE = ".inr-replaced"  # an overwritten run's outputs, until the new run has finished something
# What a run over several inputs writes or keeps in its root, beside the inputs' folders: no input's folder may
# take one of these names.
ROOT_FILES = (LOCK, *SUMMARY_FILES, OVERVIEW_PAGE, SET_ASIDE)


class RunFolder:
    """The root folder of one `inr fit` run, claimed for this process (see the module's doc)."""

    def __init__(self, root: Path, own_files: tuple[str, ...] = (), offers_overwrite: bool = True,
                 cannot_resume: str | None = None, listed_pictures: str | None = None,
                 run_marks: tuple[str, ...] = ()):
        """``own_files``: names beyond reports, training states and summaries that mark a folder as this command's
        run (e.g. the classifier an unfinished `inr jiio-robust` run saves after each epoch); --overwrite sets them
        aside with the rest, so a replacement that fails before its first save puts them back.
        ``offers_overwrite``: whether the command has ``--overwrite``, and ``cannot_resume`` why this run has no
        --resume, if it has none (its refusals name only the ways out it has).
        ``listed_pictures``: a glob (e.g. ``[0-9][0-9][0-9][0-9].png``) of the files a report's listed sub-folders
        (ROOT/KIND/METHOD/, as `inr jiio-invert` lists its restorations) hold; --overwrite sets those aside too.
        ``run_marks``: names that show the folder holds this command's run without being a state to go on from (a
        shape fit's checkpoint, kept when its mesh failed): they let --resume and --overwrite in, and --overwrite
        sets them aside, but a replacement that leaves only such a file gets the old run back (own_files keep it
        set aside: the replacement has something to resume)."""
        self.listed_pictures = listed_pictures
        self.root = Path(root)
        self.own_files, self.offers_overwrite, self.cannot_resume = own_files, offers_overwrite, cannot_resume
        self.run_marks = run_marks
        self._created = missing_ancestors(self.root)
        self._handle = None

    def claim(self, *, overwrite: bool, resume: bool, several: bool | None = None) -> RunFolder:
        """Lock the folder for this process and check what it holds (see the module's doc). ``several``: whether
        this run is one over several inputs (each in its own sub-folder) or of one input (in the root), so that
        --resume refuses a folder laid out the other way; None: the command has one layout."""
        self.lock()
        try:
            self._check_reuse(overwrite, resume, several)
        except BaseException:
            self.release()
            raise
        return self

    def lock(self) -> RunFolder:
        """Make the folder if need be and hold its lock, refusing at once a folder another process holds; a
        command that checks the folder's contents its own way calls this alone (and :meth:`release` after)."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--out {self.root} is a file, not a folder; choose a folder for the run")
        _refuse_held_ancestor(self.root)  # before making anything inside another run's folder
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / LOCK, "a+")
        except OSError as error:
            refuse_dangling_link(self.root)  # 'File exists' would name a folder the user cannot see
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
        _HELD.add(self._lock_key())
        try:
            # Checked again now that this run holds its own lock: of two runs starting at once, one inside the
            # other's folder, each takes its lock before it looks for the other's, so at least one sees the other.
            _refuse_held_ancestor(self.root)
            _refuse_held_descendant(self.root)
        except BaseException:
            self._unlock()
            raise
        remove_stale_temporaries(self.root)
        return self

    def _lock_key(self) -> Path:
        return (self.root / LOCK).resolve()

    def _unlock(self) -> None:
        """Drop the lock (and its file), and the folders this run made if they are still empty."""
        _HELD.discard(self._lock_key())
        (self.root / LOCK).unlink(missing_ok=True)
        self._handle.close()
        self._handle = None
        remove_if_empty(self._created)

    def _check_reuse(self, overwrite: bool, resume: bool, several: bool | None) -> None:
        reports, states = _finished_and_unfinished(self.root)
        summary = [self.root / name for name in SUMMARY_FILES if (self.root / name).exists()]
        if summary and (self.root / OVERVIEW_PAGE).exists():
            summary.append(self.root / OVERVIEW_PAGE)  # the summary's page goes with it
        if not (reports or states or summary or
                any((self.root / name).exists() for name in (*self.own_files, *self.run_marks))):
            refuse_foreign_files(self.root)
            return
        if resume:
            if several is not None:
                self._check_layout(several, reports, states, summary)
            return
        if not overwrite:
            replace_it = "add --overwrite to replace it, " if self.offers_overwrite else ""
            if self.cannot_resume:
                raise UserError(f"{self.root} already holds a run; {replace_it}{'or ' if replace_it else ''}choose "
                                f"another --out ({self.cannot_resume})")
            kind = "a finished" if reports or summary else "an unfinished"
            raise UserError(f"{self.root} already holds {kind} run; {replace_it}add --resume to continue it, or "
                            f"choose another --out")
        aside = self.root / SET_ASIDE
        shutil.rmtree(aside, ignore_errors=True)  # a set-aside left by a run that was killed: it is being replaced
        # An unfinished run's checkpoint, or a failed input's kept one (listed by no report).
        own = [self.root / name for name in (*self.own_files, *self.run_marks)]
        outputs = [*(output for report in reports for output in _run_outputs(report, self.listed_pictures)), *states,
                   *summary]
        for path in [*outputs, *(path for path in own if path.is_file() and path not in outputs)]:
            kept = aside / path.relative_to(self.root)
            kept.parent.mkdir(parents=True, exist_ok=True)
            path.rename(kept)
        for folder in {report.parent for report in reports} - {self.root}:
            remove_if_empty([folder])
        for folder in {path.parent for path in outputs} - {report.parent for report in reports}:  # ROOT/KIND/METHOD/
            remove_if_empty([folder, folder.parent])

    def _check_layout(self, several: bool, reports: list[Path], states: list[Path], summary: list[Path]) -> None:
        """Refuse to resume a run of one input in the folder of a run over several, or the other way round: each
        would write its files over the other's (the page, the report) and leave a folder that is neither."""
        holds_single = any(path.parent == self.root for path in [*reports, *states])
        holds_set = bool(summary) or any(path.parent != self.root for path in [*reports, *states])
        replace_it = "--overwrite to replace it, or " if self.offers_overwrite else ""
        if several and holds_single and not holds_set:
            raise UserError(f"{self.root} holds the run of one input, not of several; resume it with that input "
                            f"alone, or use {replace_it}another --out")
        if not several and holds_set and not holds_single:
            raise UserError(f"{self.root} holds a run over several inputs, not of one; resume it with all of its "
                            f"inputs, or use {replace_it}another --out")

    def _settle_set_aside(self) -> None:
        """Delete an overwritten run's outputs once the new run has finished something (a report, a summary).
        A new run that was stopped with only a state to resume from keeps them set aside: its --resume settles
        them when it finishes, and a second --overwrite discards them. A new run that left neither (every input
        failed) gets them back."""
        aside = self.root / SET_ASIDE
        if not aside.is_dir():
            return
        reports, states = _finished_and_unfinished(self.root)
        if reports or (self.root / SUMMARY_FILES[0]).exists():
            shutil.rmtree(aside, ignore_errors=True)
            return
        if states or any((self.root / name).exists() for name in self.own_files):
            return
        for kept in sorted(path for path in aside.rglob("*") if path.is_file()):
            original = self.root / kept.relative_to(aside)
            original.parent.mkdir(parents=True, exist_ok=True)
            kept.rename(original)
        shutil.rmtree(aside, ignore_errors=True)

    def release(self) -> None:
        """Give up the folder; remove the lock file, and the folder itself if this run created it and left it
        empty (a run whose every input failed)."""
        if self._handle is None:
            return
        self._settle_set_aside()
        self._unlock()


# The lock files this process holds (resolved): a folder this process claimed is not "another run's".
_HELD: set[Path] = set()
# How deep below a claimed folder other runs' locks are looked for: an input's folder of a run over several inputs
# (ROOT/INPUT), and `inr jiio-invert`'s restorations (ROOT/KIND/METHOD) are the folders runs write into.
DESCENDANT_DEPTH = 2


def lock_holder(lock: Path) -> str | None:
    """Who holds the lock file ``lock`` (its text, ``pid N on HOST``) if a live process other than this one holds
    it; None when nobody does (no file, or a stale one left by a process that died: the system dropped its lock)."""
    try:
        if lock.resolve() in _HELD or not lock.is_file():
            return None
        with open(lock) as handle:
            try:  # a shared lock is refused only while some process holds the exclusive one a run takes
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return handle.read().strip() or "another process"
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:  # a lock file we may not read cannot be tested; it does not block (as before)
        return None
    return None


def _refuse_held_ancestor(root: Path) -> None:
    """Refuse a run folder inside a folder that another live inr run holds: that run writes into its sub-folders
    (one per input) and would replace this run's files, or this run its."""
    try:
        where = Path(root).resolve()  # through symbolic links: the folder the files would land in
    except (OSError, RuntimeError):
        where = Path(os.path.abspath(root))
    for folder in where.parents:
        holder = lock_holder(folder / LOCK)
        if holder is not None:
            raise UserError(f"{root} is inside {folder}, which is being written by another inr run ({holder}); wait "
                            f"for it to finish or choose another --out")


def _refuse_held_descendant(root: Path) -> None:
    """Refuse a run folder with a sub-folder (up to :data:`DESCENDANT_DEPTH` down) that another live inr run holds:
    this run would write its inputs' files there."""
    level = [Path(root)]
    for _ in range(DESCENDANT_DEPTH):
        below = []
        for folder in level:
            try:
                below += sorted(child for child in folder.iterdir() if child.is_dir() and not child.is_symlink()
                                and not child.name.startswith("."))
            except OSError:
                continue
        for folder in below:
            holder = lock_holder(folder / LOCK)
            if holder is not None:
                raise UserError(f"{root} holds {folder}, which is being written by another inr run ({holder}); "
                                f"wait for it to finish or choose another --out")
        level = below


# The temporary file inr_cli.files.atomic_write_bytes writes beside NAME before renaming it over NAME
# (tempfile.mkstemp's 8 random characters between the prefix ".NAME." and the suffix ".tmp").
STALE_TEMPORARY = re.compile(r"\A\..+\.[a-z0-9_]{8}\.tmp\Z")


def remove_stale_temporaries(root: Path) -> None:
    """Remove the temporary files of writes that never finished (their process was killed, or the machine lost
    power) from a folder this process has just claimed, and from its sub-folders (up to
    :data:`DESCENDANT_DEPTH` down, no other live run holds one: :meth:`RunFolder.lock`). Holding the folder's lock
    proves no live inr run writes there, but `inr sample` writes into a run's folder without claiming it: a
    temporary file whose writer still holds its own lock (:func:`inr_cli.files.hold_while_written`) is being
    written now, and stays. Any other is dead weight: a full-size copy of a checkpoint, hidden."""
    level = [Path(root)]
    for _ in range(DESCENDANT_DEPTH + 1):
        below = []
        for folder in level:
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                if entry.is_symlink():
                    continue
                if entry.is_dir() and not entry.name.startswith("."):
                    below.append(entry)
                elif STALE_TEMPORARY.match(entry.name) and entry.is_file() and not written_by_a_live_process(entry):
                    try:
                        entry.unlink()
                    except OSError:  # not ours to remove after all (another owner): it only takes space
                        pass
        level = below


def refuse_foreign_files(folder: Path, own_files: tuple[str, ...] = ()) -> None:
    """Refuse a folder that holds files (hidden ones aside) of which none is ``own_files``: a folder of photos, a
    home folder, where a run's ``target.png`` or ``index.html`` would replace the user's own (see the module's
    doc). A folder that does not exist yet, or holds only sub-folders, is fine."""
    folder = Path(folder)
    if not folder.is_dir() or any((folder / name).is_file() for name in own_files):
        return
    foreign = sorted(entry.name for entry in folder.iterdir() if entry.is_file() and not entry.name.startswith("."))
    if foreign:
        listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(f"{folder} holds files that are not an inr run's ({listed}); a run writes its files into "
                        f"--out, so choose a new or empty folder")


def _finished_and_unfinished(root: Path) -> tuple[list[Path], list[Path]]:
    """Reports and saved training states at the root and in its immediate sub-folders (one per input)."""
    folders = [root, *(child for child in sorted(root.iterdir()) if child.is_dir() and child.name != SET_ASIDE)]
    reports = [folder / REPORT for folder in folders if (folder / REPORT).is_file()]
    states = [folder / TRAINING_STATE for folder in folders if (folder / TRAINING_STATE).is_file()]
    return reports, states


def _run_outputs(report_path: Path, listed_pictures: str | None = None) -> list[Path]:
    """A finished run's report, then every file it lists (only files the report itself names, in its folder), and
    with ``listed_pictures`` the files of that pattern in the FOLDER/KIND/METHOD/ folders it lists."""
    try:
        files = json.loads(report_path.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        files = {}
    folder = report_path.parent
    named = [folder / str(name) for name in (files.values() if isinstance(files, dict) else [])]
    pictures = [picture for path in named if listed_pictures and path.is_dir()
                and path.resolve().parent.parent == folder.resolve() for picture in sorted(path.glob(listed_pictures))]
    return [report_path, *(path for path in named if path.parent == folder and path.is_file() and path != report_path),
            *pictures]


# Settings that decide how a fit runs, not what it computes: a finished input is kept whatever they are now.
RUN_ONLY_SETTINGS = frozenset({"device", "compile"})
# Settings added after runs were first recorded, with the value every run recorded before them had (as dotted
# names in a command's config): a report or saved state without one ran that way. Before --keep, every fit kept
# its last network; before --lr-schedule, every fit ran at a constant rate.
BEFORE_THE_SETTING = {"fit.keep": "last", "fit.lr_schedule": "constant"}


def finished_report(folder: Path, source: str, config: dict) -> dict | None:
    """The report of ``source`` already finished in ``folder`` (for --resume), or None when it has none.

    ``config`` is this run's command config as given (``FitCommandConfig.to_dict()``, ``None`` where the fit
    resolves a value itself). A report of another input, or of settings that differ from the ones given here, is
    refused in one line rather than passed off as this run's result; so is a report that is not an inr report."""
    path = Path(folder) / REPORT
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("config"), dict) or "psnr" not in report \
            or not isinstance(report.get("input"), str):
        raise UserError(f"{path}: not a readable inr report; remove it to fit {source} again, or use --overwrite")
    if not _same_input(report["input"], source):
        raise UserError(f"{path}: a run of {report['input']}, not of {source}; use another --out, or --overwrite")
    differing = _differing_settings(config, report["config"])
    if differing:
        raise UserError(f"{path}: finished with other settings (differs in {', '.join(differing)}); run with the "
                        f"same options, or use --overwrite")
    return report


def _same_input(recorded: str, source: str) -> bool:
    """Whether two spellings of an input name the same one (``./a.png`` and ``a.png``; ``skimage:`` names)."""
    if recorded == source:
        return True
    try:
        return Path(recorded).resolve() == Path(source).resolve() and Path(source).exists()
    except (OSError, RuntimeError, ValueError):
        return False


def _differing_settings(given: dict, recorded: dict, prefix: str = "") -> list[str]:
    """The settings given for this run (not None) whose recorded value differs, as dotted names. A setting added
    after the run was recorded counts as what runs did before it (:data:`BEFORE_THE_SETTING`)."""
    differing = []
    for key, value in given.items():
        if value is None or key in RUN_ONLY_SETTINGS:
            continue
        theirs = recorded.get(key, BEFORE_THE_SETTING.get(prefix + key))
        if isinstance(value, dict):
            differing += _differing_settings(value, theirs if isinstance(theirs, dict) else {}, f"{prefix}{key}.")
        elif value != theirs:
            differing.append(prefix + key)
    return differing


def refuse_changed_settings(asked, saved, given: dict[str, str], resumed: Path) -> None:
    """A resumed run keeps the settings saved with it: refuse, in one line, any setting given on the command line
    (``given``: dotted field of the config, its flag) whose value differs from the run's, instead of ignoring it."""
    def value(config, setting: str):
        for part in setting.split("."):
            config = getattr(config, part)
        return config

    differing = [f"{flag} {value(asked, setting)} (the run has {value(saved, setting)})"
                 for setting, flag in given.items() if value(asked, setting) != value(saved, setting)]
    if differing:
        raise UserError(f"{resumed}: a resumed run keeps its own settings, and {'; '.join(differing)} would change "
                        f"them; drop the option, or start a new run in another --out")


def refuse_setting_aside_an_input(checkpoint: Path | None, out: Path, overwrite: bool, role: str) -> None:
    """--overwrite sets the run in ``out`` aside, its checkpoint included: a ``checkpoint`` this run reads from
    inside ``out`` (``role``: how the message names it) would be gone before the run read it."""
    if overwrite and checkpoint is not None and Path(out).resolve() in Path(checkpoint).resolve().parents:
        raise UserError(f"--overwrite would set aside {checkpoint}, {role}, with the run in {out}; choose another "
                        "--out")


def refuse_replacing_another_run(target: Path, source: Path) -> None:
    """A run resumed from the checkpoint ``source`` goes on saving to ``target``: refuse when ``target`` is another
    file that exists (another run's checkpoint), which the first save would replace."""
    if Path(target).exists() and Path(source).resolve() != Path(target).resolve():
        raise UserError(f"{target} holds another run's checkpoint, which continuing {source} here would replace; "
                        f"choose another --out")


def save_training_state(folder: Path, state: dict) -> None:
    """Write a fit's saved state (plain data: see :mod:`training.fitting.control`) atomically into ``folder``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(Path(folder) / TRAINING_STATE, buffer.getvalue())


def load_training_state(folder: Path, config: dict, source: str, signal: str) -> dict | None:
    """The state saved in ``folder`` for a fit of ``config`` (a resolved FitConfig's dict) to the input ``source``
    whose :func:`training.fitting.signal.fingerprint` is ``signal``; None when there is none. Read without running
    code from the file; a state of another configuration, or saved while fitting another input, is refused in one
    line. (States saved before they recorded their input's fingerprint are taken as they are.)"""
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
    if isinstance(saved, dict):  # saved before a fit setting existed: it ran as fits did then
        saved = {**{key[len("fit."):]: value for key, value in BEFORE_THE_SETTING.items() if key.startswith("fit.")},
                 **saved}
    if saved != config:
        differing = sorted(key for key in set(saved or {}) | set(config) if (saved or {}).get(key) != config.get(key))
        raise UserError(f"{path}: saved for another configuration (differs in {', '.join(differing) or 'format'}); "
                        f"run with the same options, or use --overwrite to start again")
    if state.get("signal", signal) != signal:
        raise UserError(f"{path}: saved while fitting another input than {source} (its values differ); use "
                        f"another --out, or --overwrite to start again")
    return state
