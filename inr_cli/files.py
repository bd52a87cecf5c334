"""Writing files so that a crash or a full disk never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from inr_core.errors import UserError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(path: Path, error: OSError) -> UserError:
    """The one line for an output that could not be written (a full disk, a read-only or failing filesystem)."""
    return UserError(f"{path}: cannot write: {error.strerror or first_line(error)}")


def _write_all(fd: int, data: bytes) -> None:
    # Straight to the descriptor, no buffered file object: a buffered one that failed to write flushes its buffer
    # again on close, raising a second error chained to the first.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file in the same folder, flush it to disk, then rename it over ``path``. A
    failure (a full disk, a read-only filesystem) removes the temporary file and is a one-line UserError naming
    ``path``."""
    with _locked_temporary(path) as (fd, tmp_name):
        _write_all(fd, data)
        os.fsync(fd)
        os.replace(tmp_name, path)  # still locked: a sweep never takes a finished file for a stale one


@contextlib.contextmanager
def _locked_temporary(path: Path) -> Iterator[tuple[int, str]]:
    """A temporary file beside ``path`` (``.NAME.XXXXXXXX.tmp``, the permissions a plain open() gives), open and
    locked (:func:`hold_while_written`) while the block fills it and renames it over ``path``. If the block fails
    the file is removed, and an OSError is the one-line UserError naming ``path``; if it succeeds, ``path`` is
    listed for :func:`remove_written_on_failure`. Yields the descriptor and the file's name."""
    path = Path(path)
    fd, tmp_name = None, None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        hold_while_written(fd)
        # mkstemp creates the file private (0600); give it the permissions a plain open() would have.
        os.fchmod(fd, 0o666 & ~_current_umask())
        yield fd, tmp_name
    except BaseException as error:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        if isinstance(error, OSError):
            raise write_error(path, error) from None
        raise
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):  # a write's own error is the one to report; the data is on disk
                os.close(fd)
    for written in getattr(_recorders, "lists", ()):
        written.append(path)


# The files written in this thread inside each active remove_written_on_failure() block (a fit's files are
# written in a background thread on CUDA while the next input trains).
_recorders = threading.local()


@contextlib.contextmanager
def remove_written_on_failure() -> Iterator[list[Path]]:
    """Inside the block, every file the atomic writers finish (in this thread) is listed; if the block fails (an
    error, an interrupt) they are removed again: a set of outputs that could not be finished leaves none of its
    files, never a part that later runs would take for someone else's files. Yields the list."""
    written: list[Path] = []
    lists = getattr(_recorders, "lists", [])
    _recorders.lists = [*lists, written]
    try:
        yield written
    except BaseException:
        for path in reversed(written):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        raise
    finally:
        _recorders.lists = lists


@contextlib.contextmanager
def atomic_output_path(path: Path) -> Iterator[Path]:
    """For writers that open and fill the file themselves (a video encoder fed a frame at a time, so the file never
    exists whole in memory as :func:`atomic_write_bytes` needs it): yields a temporary path in ``path``'s folder,
    named as that function names its temporaries (so a run folder's sweep of stale ones finds it after a kill -9).
    When the block ends, the file is flushed to disk and renamed over ``path``; if the block fails (an error, an
    interrupt) the temporary file is removed and ``path`` is left as it was. An OSError (a full disk) is the same
    one-line UserError naming ``path``."""
    with _locked_temporary(path) as (_, tmp_name):  # held open and locked while the writer uses its own descriptor
        yield Path(tmp_name)
        fd = os.open(tmp_name, os.O_RDONLY)  # the writer has closed its own descriptor: sync through a new one
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)


def hold_while_written(fd: int) -> None:
    """Lock a temporary file, open as ``fd``, for as long as it is open: a run that claims the folder sweeps the
    temporaries of writes that never finished (inr_cli.run_folder.remove_stale_temporaries) and leaves those whose
    writer still holds this lock (an `inr sample` writing into a run's folder takes no lock on the folder). The
    system drops it when the writer closes the file or dies, even by kill -9. Where files cannot be locked
    (some network filesystems) the write goes on unlocked, as before."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def written_by_a_live_process(path: Path) -> bool:
    """Whether a temporary file is being written now (its writer holds :func:`hold_while_written`'s lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        return error.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)  # (closing drops the lock just taken)
    return False


def atomic_write_text(path: Path, text: str) -> None:
    # A file name whose bytes are not UTF-8 reaches Python as surrogates, which UTF-8 cannot hold: written as
    # escapes (\udcff), so a report or table naming it is still written.
    atomic_write_bytes(path, text.encode("utf-8", errors="backslashreplace"))


def atomic_write_with(path: Path, write) -> None:
    """Atomic write for writers that want a file object: ``write(buffer)`` fills an in-memory buffer first."""
    buffer = io.BytesIO()
    write(buffer)
    atomic_write_bytes(path, buffer.getvalue())


# What an input path that is neither a file nor a folder is, by its stat mode: refused before anything opens it.
_SPECIAL_FILES = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"))


def existing_file(source: str, what: str) -> Path:
    """The path of an input file, or a one-line UserError if it is missing, a directory or not a regular file."""
    path = Path(source)
    if not path.exists():
        raise UserError(f"{source}: no such file")
    if path.is_dir():
        raise UserError(f"{source}: is a directory, not {what}")
    # Opening a named pipe waits for a writer, for good if none comes; a device reads forever (/dev/zero) or
    # nothing: stat them (which opens nothing) and refuse.
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _SPECIAL_FILES if test(mode)), "a special file")
        raise UserError(f"{source}: not a regular file ({kind})")
    return path


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type): third-party errors can run to many lines."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def missing_ancestors(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first: what creating it would add."""
    missing = []
    for candidate in [Path(path), *Path(path).parents]:
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def remove_if_empty(folders: list[Path]) -> None:
    """Remove folders we created (deepest first) that are still empty; stop at the first one that is not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def refuse_dangling_link(path: Path) -> None:
    """Refuse an output folder that is, or lies under, a symbolic link to nothing: making it fails with 'File
    exists', which names a folder the user cannot see. (Called once making the folder has failed.)"""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.is_symlink() and not candidate.exists():
            where = f"--out {path}" if candidate == path else f"--out {path}: {candidate}"
            raise UserError(f"{where} is a symbolic link to {os.readlink(candidate)}, which does not exist")


def prepare_output_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and prove we can write there, before any long computation starts."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".inr-write-test.", delete=True)
        probe.close()
    except OSError as error:
        refuse_dangling_link(path)
        raise UserError(f"cannot write to output folder {path}: {error.strerror or error}") from None
    return path


def numbered(names: list[str], taken: tuple[str, ...] = ()) -> list[str]:
    """``names`` made unique in order: a name's second and later uses numbered ``NAME-2``, ``NAME-3``, ... (how
    `inr fit` names the folders of inputs that share a stem, and `inr sample` the samples of runs that share one).
    A name in ``taken`` (a file written beside them) counts as used once already."""
    seen: dict[str, int] = {name: 1 for name in taken}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def expand_inputs(paths: list[str], default: str | None, folder_suffixes: tuple[str, ...] = ()) -> list[str]:
    """``-`` stands for one path per line on stdin; no paths at all means the modality's default input. With
    ``folder_suffixes``, a folder (named here or on stdin) stands for its files of those types, in name order; a
    folder holding none stays one input, to fail on its own turn (:func:`refuse_empty_folder`)."""
    expanded: list[str] = []
    for path in paths:
        named = [line.strip() for line in sys.stdin if line.strip()] if path == "-" else [path]
        for one in named:
            if folder_suffixes and Path(one).is_dir():
                try:
                    expanded += sorted(str(p) for p in Path(one).iterdir()
                                       if p.is_file() and p.suffix.lower() in folder_suffixes) or [one]
                except OSError as error:  # a folder we may not list (permission denied)
                    raise UserError(f"{one}: unreadable folder ({error.strerror or first_line(error)})") from None
            else:
                expanded.append(one)
    if not paths:
        if default is None:
            raise UserError("no input given")
        expanded = [default]
    elif not expanded:
        raise UserError("no input paths on stdin")
    return expanded


def refuse_empty_folder(source: str, folder_suffixes: tuple[str, ...]) -> None:
    """One input left a folder by :func:`expand_inputs` is a folder with nothing to fit in it: say so."""
    if folder_suffixes and Path(source).is_dir():
        raise UserError(f"{source}: a folder with no files to fit in it (looked for {', '.join(folder_suffixes)})")
