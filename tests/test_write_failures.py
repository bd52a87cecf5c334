"""Outputs that cannot be written (a full disk, a read-only filesystem): one line naming the file, exit 1, and no
part of the failed outputs left behind. A full disk is simulated in this process for one file only: the system
calls that write its temporary file fail with ENOSPC, as they do on a full filesystem (no root, no mounts)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from helpers import in_process, run_cli, save_png

TINY_FIT = ["--steps", "3", "--hidden", "8", "--layers", "1", "--device", "cpu", "--eval-every", "0", "--quiet"]
FULL = os.strerror(errno.ENOSPC)


def disk_full(monkeypatch, *targets: Path) -> None:
    """Make writing any of ``targets`` fail as a full disk does. The atomic writer writes ``.NAME.XXXXXXXX.tmp``
    beside NAME; a write(2) (or fsync(2): where the filesystem allocates late, ENOSPC surfaces there) on an open
    file of that pattern raises ENOSPC. Other files are written as usual."""
    full = {(os.path.realpath(target.parent), target.name) for target in targets}
    real_write, real_fsync = os.write, os.fsync

    def is_full(fd: int) -> bool:
        try:
            opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return False
        return any(str(opened.parent) == folder and opened.name.startswith(f".{name}.") and opened.suffix == ".tmp"
                   for folder, name in full)

    def write(fd, data):
        if is_full(fd):
            raise OSError(errno.ENOSPC, FULL)
        return real_write(fd, data)

    def fsync(fd):
        if is_full(fd):
            raise OSError(errno.ENOSPC, FULL)
        return real_fsync(fd)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)


def files_in(folder: Path) -> list[str]:
    """Every file under ``folder`` (hidden ones too), relative, sorted."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def images(tmp_path_factory, camera_u8, astronaut_u8):
    folder = tmp_path_factory.mktemp("images")
    return [save_png(folder / "a.png", camera_u8[::32, ::32]), save_png(folder / "b.png", astronaut_u8[::32, ::32]),
            save_png(folder / "c.png", camera_u8[100:116, 200:216])]


pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds open files through /proc")


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, images, capsys, monkeypatch):
    """It was a 45-line traceback ending in OSError."""
    out = tmp_path / "run"
    disk_full(monkeypatch, out / "checkpoint.pt")
    code, stdout, stderr = in_process(["fit", "image", images[0], *TINY_FIT, "--out", out], capsys)
    assert (code, stdout, stderr) == (1, "", f"inr: error: {out / 'checkpoint.pt'}: cannot write: {FULL}\n")
    assert not any(name.endswith(".tmp") for name in files_in(tmp_path))


def test_a_full_disk_in_compare_and_sample_is_one_line(tmp_path, images, capsys, monkeypatch):
    """compare printed two chained tracebacks (its writer flushed again on close after the failed write); sample
    one traceback."""
    fitted = tmp_path / "fitted"
    code, _, stderr = in_process(["fit", "image", images[0], *TINY_FIT, "--out", fitted], capsys)
    assert code == 0, stderr
    out = tmp_path / "cmp"
    big = tmp_path / "big.png"
    disk_full(monkeypatch, out / "compare.json", big)
    code, stdout, stderr = in_process(["compare", "image", images[0], "--steps", "2", "--models", "siren", "--sizes",
                                       "1L4D", "--device", "cpu", "--quiet", "--out", out], capsys)
    assert (code, stdout, stderr) == (1, "", f"inr: error: {out / 'compare.json'}: cannot write: {FULL}\n")
    code, stdout, stderr = in_process(["sample", fitted / "checkpoint.pt", "--scale", "2", "--out", big], capsys)
    assert (code, stdout, stderr) == (1, "", f"inr: error: {big}: cannot write: {FULL}\n")
    assert not any(name.endswith(".tmp") for name in files_in(tmp_path))


def test_one_input_that_cannot_be_written_fails_alone(tmp_path, images, capsys, monkeypatch):
    """The second input's checkpoint could not be written: a traceback ended the run there, the third input was
    never written, and there was no JSON line for the second, no summary."""
    out = tmp_path / "multi"
    disk_full(monkeypatch, out / "b" / "checkpoint.pt")
    code, stdout, stderr = in_process(["fit", "image", *images, *TINY_FIT, "--json", "--out", out], capsys)
    failure = f"{out / 'b' / 'checkpoint.pt'}: cannot write: {FULL}"
    assert (code, stderr) == (1, f"inr: error: {failure}\n")
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [line["input"] for line in lines] == [str(image) for image in images]
    assert lines[1] == {"input": str(images[1]), "status": "failed", "error": failure}
    assert "psnr" in lines[0] and "psnr" in lines[2]
    summary = json.loads((out / "summary.json").read_text())
    assert [row["status"] for row in summary["rows"]] == ["fitted", "failed", "fitted"]
    assert summary["rows"][1]["error"] == failure
    assert (out / "c" / "report.json").is_file()


def test_a_run_that_cannot_be_written_leaves_nothing_and_can_be_run_again(tmp_path, images, capsys, monkeypatch):
    """The pictures written before the checkpoint stayed, without a report, and every later run into the folder
    (--resume and --overwrite too) refused them as 'files that are not an inr run's'."""
    out = tmp_path / "run"
    args = ["fit", "image", images[0], *TINY_FIT, "--out", out]
    with monkeypatch.context() as patched:
        disk_full(patched, out / "checkpoint.pt")
        code, _, stderr = in_process(args, capsys)
    assert code == 1, stderr
    assert not out.exists()  # the run made the folder: it goes too
    out.mkdir()  # a folder the user made stays, empty
    with monkeypatch.context() as patched:
        disk_full(patched, out / "report.json")
        code, _, stderr = in_process(args, capsys)
    assert code == 1, stderr
    assert files_in(out) == []
    code, _, stderr = in_process(args, capsys)
    assert (code, stderr) == (0, "")
    finished = {name: (out / name).read_bytes() for name in files_in(out)}
    # An --overwrite that cannot write its files puts the finished run back as it was, and nothing else.
    with monkeypatch.context() as patched:
        disk_full(patched, out / "index.html")
        code, _, stderr = in_process([*args, "--overwrite", "--seed", "1"], capsys)
    assert code == 1, stderr
    assert {name: (out / name).read_bytes() for name in files_in(out)} == finished


def test_an_input_that_cannot_be_written_leaves_no_folder_and_resume_fits_it(tmp_path, images, capsys, monkeypatch):
    out = tmp_path / "multi"
    args = ["fit", "image", *images, *TINY_FIT, "--out", out]
    with monkeypatch.context() as patched:
        disk_full(patched, out / "b" / "checkpoint.pt")
        code, _, stderr = in_process(args, capsys)
    assert code == 1, stderr
    assert not (out / "b").exists() and (out / "c" / "report.json").is_file()
    code, _, stderr = in_process([*args, "--resume"], capsys)
    assert (code, stderr) == (0, "")
    assert (out / "b" / "report.json").is_file()
    assert json.loads((out / "summary.json").read_text())["fitted"] == 3


def test_outputs_written_in_the_background_are_removed_too(tmp_path, images, capsys, monkeypatch):
    """On CUDA an input's files are written by a thread while the next input trains: the same cleanup there."""
    from dataclasses import replace

    from inr_cli.fitting import OutputOptions, run_fit_command
    from inr_cli.modalities.base import FitCommandConfig
    from inr_cli.modalities.image import ImageOptions
    from training.fitting.config import FitConfig

    out = tmp_path / "multi"
    disk_full(monkeypatch, out / "a" / "report.json")
    fit = FitConfig(model="siren", hidden=8, layers=1, steps=3, device="cpu", eval_every=0)
    output = OutputOptions(out=out, as_json=True, show_progress=False)
    code = run_fit_command(FitCommandConfig("image", fit, ImageOptions()), [str(image) for image in images[:2]],
                           replace(output, write_in_background=True))
    assert code == 1
    assert not (out / "a").exists() and (out / "b" / "report.json").is_file()
    capsys.readouterr()


def test_a_summary_that_cannot_be_written_leaves_none_of_its_files(tmp_path, images, capsys, monkeypatch):
    """summary.json stayed without summary.md, summary.png and the overview page."""
    out = tmp_path / "multi"
    disk_full(monkeypatch, out / "summary.md")
    code, _, stderr = in_process(["fit", "image", *images[:2], *TINY_FIT, "--out", out], capsys)
    assert (code, stderr) == (1, f"inr: error: {out / 'summary.md'}: cannot write: {FULL}\n")
    assert [name for name in files_in(out) if "/" not in name] == []


def test_a_comparison_that_cannot_be_written_leaves_the_folder_as_it_was(tmp_path, images, capsys, monkeypatch):
    """compare.md stayed without compare.json, and every later comparison into the folder refused it as someone
    else's file."""
    out = tmp_path / "cmp"
    args = ["compare", "image", images[0], "--steps", "2", "--models", "siren", "--sizes", "1L4D", "--device",
            "cpu", "--quiet", "--out", out]
    with monkeypatch.context() as patched:
        disk_full(patched, out / "compare.json")
        code, _, stderr = in_process(args, capsys)
    assert code == 1, stderr
    assert not out.exists()
    code, _, stderr = in_process(args, capsys)
    assert (code, stderr) == (0, "")
    earlier = {name: (out / name).read_bytes() for name in files_in(out)}
    assert "compare.md" in earlier and "pictures/siren-1L-4D-explicit-0.png" in earlier
    # An --overwrite whose page cannot be written (its pictures, compare.md and compare.json are by then) puts the
    # earlier comparison back whole.
    with monkeypatch.context() as patched:
        disk_full(patched, out / "index.html")
        code, _, stderr = in_process([*args, "--sizes", "1L2D", "--overwrite"], capsys)
    assert code == 1, stderr
    assert {name: (out / name).read_bytes() for name in files_in(out)} == earlier
    code, _, stderr = in_process([*args, "--sizes", "1L2D", "--overwrite"], capsys)
    assert (code, stderr) == (0, "")
    assert not (out / "pictures" / "siren-1L-4D-explicit-0.png").exists()  # the replaced comparison's pictures
    assert not (out / ".inr-replaced").exists()


def test_an_input_that_is_not_a_regular_file_is_refused_before_it_is_opened(tmp_path, capsys):
    """A named pipe as input blocked the run for good, opening it waiting for a writer that never came."""
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    proc = run_cli(["fit", "image", fifo, *TINY_FIT, "--out", tmp_path / "run"], cwd=tmp_path, timeout=60)
    assert (proc.returncode, proc.stderr) == (1, f"inr: error: {fifo}: not a regular file (a named pipe)\n")
    assert not (tmp_path / "run").exists()
    code, _, stderr = in_process(["fit", "audio", os.devnull, *TINY_FIT, "--out", tmp_path / "sound"], capsys)
    assert (code, stderr) == (1, f"inr: error: {os.devnull}: not a regular file (a character device)\n")


def test_a_symbolic_link_to_nothing_as_the_output_folder_says_so(tmp_path, images, capsys):
    """It said 'cannot write to output folder ...: File exists', of a folder that does not exist."""
    from inr_cli.files import prepare_output_dir
    from inr_core.errors import UserError

    fitted = tmp_path / "fitted"
    code, _, stderr = in_process(["fit", "image", images[0], *TINY_FIT, "--out", fitted], capsys)
    assert code == 0, stderr
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    code, _, stderr = in_process(["sample", fitted / "checkpoint.pt", "--out", dangling / "big.png"], capsys)
    assert (code, stderr) == (1, f"inr: error: --out {dangling} is a symbolic link to {tmp_path / 'gone'}, which "
                                 "does not exist\n")
    with pytest.raises(UserError) as refused:
        prepare_output_dir(dangling / "run")
    assert str(refused.value) == (f"--out {dangling / 'run'}: {dangling} is a symbolic link to {tmp_path / 'gone'}, "
                                  "which does not exist")
    # inr fit's run folder is made by its lock, which said the same 'File exists'.
    code, _, stderr = in_process(["fit", "image", images[0], *TINY_FIT, "--out", dangling], capsys)
    assert (code, stderr) == (1, f"inr: error: --out {dangling} is a symbolic link to {tmp_path / 'gone'}, which "
                                 "does not exist\n")
    assert not (tmp_path / "gone").exists()
