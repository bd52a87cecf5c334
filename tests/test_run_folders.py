"""Run folders: one writer over a folder's whole tree, and what a claim tidies (:mod:`inr_cli.run_folder`).

Another run is played by this test process holding a folder's lock the way a run does (an exclusive ``flock`` on
``.inr.lock``, its text the holder's pid), rather than by racing two real runs."""

from __future__ import annotations

import fcntl
from pathlib import Path

import numpy as np
import pytest
from helpers import in_process, save_png

from inr_cli.run_folder import LOCK, RunFolder
from inr_core.errors import UserError


def hold_lock(folder: Path, text: str = "pid 4242 on elsewhere"):
    """Hold ``folder``'s run lock as a live run does; close the handle to let go (as the system does at exit)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK, "a+")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    handle.write(text + "\n")
    handle.flush()
    return handle


def test_a_run_inside_a_folder_another_run_holds_is_refused_before_it_makes_anything(tmp_path):
    """A run into M/c while a run over several inputs wrote M finished with exit 0, and then lost its files to
    the other run's input c."""
    outer = tmp_path / "M"
    holder = hold_lock(outer)
    try:
        with pytest.raises(UserError) as refused:
            RunFolder(outer / "c").claim(overwrite=False, resume=False)
        assert str(refused.value) == (f"{outer / 'c'} is inside {outer.resolve()}, which is being written by another "
                                      f"inr run (pid 4242 on elsewhere); wait for it to finish or choose another --out")
        assert not (outer / "c").exists()
        with pytest.raises(UserError, match="is inside"):  # any depth below it
            RunFolder(outer / "c" / "d").lock()
    finally:
        holder.close()
    RunFolder(outer / "c").claim(overwrite=False, resume=False).release()  # the holder is gone: no block


def test_a_run_over_a_folder_whose_sub_folder_another_run_holds_is_refused(tmp_path):
    """A run over several inputs into M would write its input c into M/c, which another live run holds."""
    outer = tmp_path / "M"
    holder = hold_lock(outer / "c", "pid 5151 on elsewhere")
    try:
        with pytest.raises(UserError) as refused:
            RunFolder(outer).claim(overwrite=False, resume=False, several=True)
        assert str(refused.value) == (f"{outer} holds {outer / 'c'}, which is being written by another inr run "
                                      f"(pid 5151 on elsewhere); wait for it to finish or choose another --out")
        assert sorted(p.name for p in outer.iterdir()) == ["c"]  # its own lock file removed again
    finally:
        holder.close()


def test_stale_locks_of_dead_runs_never_block(tmp_path):
    """A lock file whose holder died (the system dropped its lock) is no one's: above or below, it blocks nothing."""
    for folder in (tmp_path / "M", tmp_path / "M" / "c" / "d"):
        hold_lock(folder).close()
    inner = RunFolder(tmp_path / "M" / "c").claim(overwrite=False, resume=False)
    inner.release()
    RunFolder(tmp_path / "M").claim(overwrite=False, resume=False, several=True).release()


def test_one_process_may_hold_a_folder_and_one_inside_it(tmp_path):
    """The locks this process holds are its own, not another run's."""
    outer = RunFolder(tmp_path / "M").lock()
    try:
        RunFolder(tmp_path / "M" / "c").lock().release()
    finally:
        outer.release()


def test_inr_fit_into_a_sub_folder_of_a_running_run_is_refused_in_one_line(tmp_path, capsys):
    image = save_png(tmp_path / "a.png", np.arange(64, dtype=np.uint8).reshape(8, 8))
    holder = hold_lock(tmp_path / "M")
    try:
        code, out, err = in_process(["fit", "image", image, "--steps", "2", "--out", tmp_path / "M" / "c",
                                     "--quiet", "--device", "cpu"], capsys)
    finally:
        holder.close()
    assert code == 1 and out == ""
    assert err == (f"inr: error: {tmp_path / 'M' / 'c'} is inside {(tmp_path / 'M').resolve()}, which is being "
                   f"written by another inr run (pid 4242 on elsewhere); wait for it to finish or choose another "
                   f"--out\n")
    assert sorted(p.name for p in (tmp_path / "M").iterdir()) == [LOCK]


def test_claiming_a_folder_removes_the_temporary_files_of_writes_that_never_finished(tmp_path):
    """A write killed between its temporary file and the rename left a hidden full-size copy (``.NAME.XXXXXXXX.tmp``,
    as inr_cli.files.atomic_write_bytes names it) that no later run removed."""
    root = tmp_path / "run"
    stale = [root / ".checkpoint.pt.34ljf3bk.tmp", root / "a" / ".report.json.abcd_123.tmp",
             root / "inpaint" / "jiio" / ".0000.png.zz9y8x7w.tmp"]
    kept = [root / ".notes.tmp", root / "a" / ".x.short.tmp", root / ".checkpoint.pt.34ljf3bk.tmp.bak",
            root / "inpaint" / "jiio" / "deeper" / ".0001.png.abcdefgh.tmp"]  # not inr's pattern, or too deep
    for path in [*stale, *kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
    RunFolder(root).claim(overwrite=False, resume=False, several=True).release()
    assert [path.exists() for path in stale] == [False] * 3
    assert [path.read_bytes() for path in kept] == [b"x" * 100] * 4


def test_a_folder_another_run_holds_keeps_its_temporary_files(tmp_path):
    """A live writer's temporary file is not stale: a claim refused by its lock removes nothing."""
    temporary = tmp_path / "M" / "c" / ".checkpoint.pt.abcdefgh.tmp"
    holder = hold_lock(temporary.parent)
    temporary.write_bytes(b"half")
    try:
        with pytest.raises(UserError):
            RunFolder(tmp_path / "M").lock()
        with pytest.raises(UserError):
            RunFolder(temporary.parent).lock()
    finally:
        holder.close()
    assert temporary.read_bytes() == b"half"


def test_inr_fit_into_a_folder_holding_only_a_stale_temporary_removes_it(tmp_path, capsys):
    image = save_png(tmp_path / "a.png", np.arange(64, dtype=np.uint8).reshape(8, 8))
    (tmp_path / "k2").mkdir()
    (tmp_path / "k2" / ".checkpoint.pt.abcd1234.tmp").write_bytes(b"\0" * 1000)
    code, _, err = in_process(["fit", "image", image, "--steps", "2", "--out", tmp_path / "k2", "--quiet",
                               "--device", "cpu"], capsys)
    assert code == 0, err
    assert not any(path.name.endswith(".tmp") for path in (tmp_path / "k2").iterdir())


def test_a_temporary_file_being_written_now_is_not_swept(tmp_path, monkeypatch):
    """`inr sample` writes into a run's folder without claiming it: a run claiming the folder at that moment swept
    the sample's temporary file away, and the sample's rename then failed. A writer holds a lock on its temporary
    file while it writes; the sweep leaves a locked one and removes an unlocked one (a write that died)."""
    import inr_cli.files as files
    from inr_cli.run_folder import RunFolder

    root = tmp_path / "run"
    root.mkdir()

    def claim_and_release():
        RunFolder(root).claim(overwrite=False, resume=False).release()

    with files.atomic_output_path(root / "sample.mp4") as temporary:  # an encoder writing a frame at a time
        temporary.write_bytes(b"frames")
        claim_and_release()
        assert temporary.read_bytes() == b"frames"
    assert (root / "sample.mp4").read_bytes() == b"frames"

    writing = files._write_all

    def claimed_while_writing(fd, data):  # another run claims the folder in the middle of a write
        writing(fd, data[:2])
        claim_and_release()
        writing(fd, data[2:])

    other = tmp_path / "other"
    other.mkdir()
    root = other
    monkeypatch.setattr(files, "_write_all", claimed_while_writing)
    files.atomic_write_bytes(other / "sample.png", b"pixels")
    assert (other / "sample.png").read_bytes() == b"pixels"

    dead = other / ".sample2.png.abcdefgh.tmp"  # its writer is gone: nobody holds it
    dead.write_bytes(b"half")
    (other / "sample.png").unlink()
    claim_and_release()
    assert not dead.exists()
