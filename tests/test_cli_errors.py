"""Bad input through the command line: a non-zero exit, exactly one line on stderr, no traceback, nothing written.

Run in this process by helpers.run_here, which shows on stderr what a user would see there (warnings and log
records included); the broken-pipe cases start real processes, whose exit path is what they check.
"""

from __future__ import annotations

import io
import os
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import cli_env, run_here
from inr_cli.app import escape_unencodable_output
from inr_cli.errors import out_of_memory_message
from inr_cli.figures.layout import png_caption
from inr_core.errors import out_of_memory

TINY = ["--hidden", "8", "--layers", "1", "--steps", "5", "--device", "cpu"]


def make_png(folder: Path, name: str = "ok.png") -> Path:
    path = folder / name
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10), dtype=np.uint8)).save(path)
    return path


def assert_one_line_error(proc, *, code: int | None = None) -> str:
    assert proc.returncode != 0
    if code is not None:
        assert proc.returncode == code
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"stderr was: {proc.stderr!r}"
    assert "error" in lines[0]
    assert proc.stdout == ""
    return lines[0]


# Each case: (prepare(folder) -> input argument, extra options, text the error line must contain)
def missing(folder):
    return "nope.png"


def directory(folder):
    (folder / "pictures").mkdir()
    return "pictures"


def truncated(folder):
    path = make_png(folder, "cut.png")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "cut.png"


def not_an_image(folder):
    (folder / "notes.png").write_text("hello, these are notes\n")
    return "notes.png"


def empty(folder):
    (folder / "empty.png").write_bytes(b"")
    return "empty.png"


def good(folder):
    make_png(folder)
    return "ok.png"


CASES = {
    "missing-path": (missing, [], "nope.png"),
    "directory": (directory, [], "pictures"),
    "truncated-png": (truncated, [], "cut.png"),
    "text-file": (not_an_image, [], "notes.png"),
    "empty-file": (empty, [], "empty.png"),
    "steps-zero": (good, ["--steps", "0"], "--steps"),
    "steps-negative": (good, ["--steps", "-5"], "--steps"),
    "unknown-holdout": (good, ["--holdout", "random"], "holdout"),
    "resize-zero": (good, ["--resize", "0"], "--resize"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fit_bad_input(tmp_path, case):
    prepare, extra, must_mention = CASES[case]
    argument = prepare(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_here(["fit", "image", argument, *TINY, *extra, "--out", "out"], cwd=tmp_path)
    line = assert_one_line_error(proc)
    assert must_mention in line
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing else appeared either (no runs/)


def test_unknown_model_lists_the_models(tmp_path):
    make_png(tmp_path)
    proc = run_here(["fit", "image", "ok.png", *TINY, "--model", "resnet", "--out", "out"], cwd=tmp_path)
    line = assert_one_line_error(proc, code=2)  # a usage error
    for name in ("siren", "fourier-mfn", "gabor-mfn"):
        assert name in line


def test_unwritable_output_folder(tmp_path):
    """--out below a regular file: mkdir fails even for root."""
    make_png(tmp_path)
    (tmp_path / "afile").write_text("keep me")
    proc = run_here(["fit", "image", "ok.png", *TINY, "--out", "afile/run"], cwd=tmp_path)
    line = assert_one_line_error(proc, code=1)
    assert "afile" in line
    assert (tmp_path / "afile").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "ok.png"]


def test_empty_stdin(tmp_path):
    proc = run_here(["fit", "image", "-", *TINY, "--out", "out"], cwd=tmp_path, stdin="\n\n")
    assert "stdin" in assert_one_line_error(proc)
    assert not (tmp_path / "out").exists()


def test_one_bad_input_among_good_ones(tmp_path):
    """Each failure is one stderr line; the good inputs are still fitted; the exit code says something failed."""
    make_png(tmp_path)
    proc = run_here(["fit", "image", "ok.png", "nope.png", *TINY, "--json", "--quiet", "--out", "out"], cwd=tmp_path)
    assert proc.returncode == 1
    report, failure = (json.loads(line) for line in proc.stdout.splitlines())  # a line per input, in order
    assert report["input"] == "ok.png" and "psnr" in report
    assert failure == {"input": "nope.png", "status": "failed", "error": "nope.png: no such file"}
    assert len(proc.stderr.splitlines()) == 1 and "nope.png" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "ok" / "report.json").is_file()
    assert not (tmp_path / "out" / "nope").exists()


def test_a_reader_that_stops_early_ends_the_run_with_the_broken_pipe_code(tmp_path):
    """`inr fit image ... --json | head -1`: stdout closed under the command is exit 141 (as a shell reports a
    writer stopped by SIGPIPE), not 1, which would say an input failed; the fit's report is still written."""
    make_png(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "inr_cli", "fit", "image", "ok.png", *TINY, "--json", "--quiet",
                             "--out", "out"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env())
    proc.stdout.close()  # the reader is gone before the report line is written
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert stderr == ""
    report = tmp_path / "out" / "report.json"  # one input: --out is its folder
    assert json.loads(report.read_text())["input"] == "ok.png"


def test_a_reader_that_stops_early_leaves_no_empty_input_folder(tmp_path):
    """Several inputs, stdout closed: the run stops at the first line it cannot print, while the next input,
    already fitted, waits for its files; its folder was left empty."""
    names = []
    for side in (12, 14, 16):  # sizes apart: fitted one after another
        Image.fromarray(np.full((side, side), 90, dtype=np.uint8)).save(tmp_path / f"s{side}.png")
        names.append(f"s{side}.png")
    proc = subprocess.Popen([sys.executable, "-m", "inr_cli", "fit", "image", *names, *TINY, "--json", "--quiet",
                             "--out", "out"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env())
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert (tmp_path / "out" / "s12" / "report.json").is_file()
    assert [path for path in (tmp_path / "out").rglob("*") if path.is_dir() and not any(path.iterdir())] == []


def test_failed_fit_leaves_no_output_folder(tmp_path):
    """A fit that fails after its output folder was created (here: it diverges) removes that folder again."""
    make_png(tmp_path)
    proc = run_here(["fit", "image", "ok.png", "--hidden", "8", "--layers", "1", "--steps", "20", "--lr", "1e30",
                    "--device", "cpu", "--quiet", "--out", "out"], cwd=tmp_path)
    assert "ok.png: training diverged" in assert_one_line_error(proc, code=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]


def test_failed_fit_leaves_no_parent_folders(tmp_path):
    make_png(tmp_path)
    proc = run_here(["fit", "image", "ok.png", "--hidden", "8", "--layers", "1", "--steps", "20", "--lr", "1e30",
                    "--device", "cpu", "--quiet", "--out", "new/run"], cwd=tmp_path)
    assert "diverged" in assert_one_line_error(proc)
    assert not (tmp_path / "new" / "run").exists()
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("option, value, allowed", [
    ("--steps", "99999999999999999999999", "between 1 and 1,000,000,000"),
    ("--seed", str(2**64), "between 0 and 9,223,372,036,854,775,807"),
    ("--seed", "-1", "between 0 and 9,223,372,036,854,775,807"),
    ("--hidden", str(2**63), "between 1 and 16,777,216"),
], ids=["steps-overflow", "seed-overflow", "seed-negative", "hidden-overflow"])
def test_an_integer_out_of_range_is_a_usage_error_naming_its_range(tmp_path, option, value, allowed):
    make_png(tmp_path)
    proc = run_here(["fit", "image", "ok.png", *TINY, option, value, "--out", "out"], cwd=tmp_path)
    assert assert_one_line_error(proc, code=2) == f"inr: error: {option} must be {allowed}, got {value}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]


# Sizes no memory holds, short of overflowing torch's sizes: one 2**24-wide hidden-to-hidden weight is a petabyte.
@pytest.mark.parametrize("command", [
    ["fit", "image", "ok.png", "--hidden", str(2**24), "--layers", "1", "--steps", "1"],
    ["compare", "image", "ok.png", "--models", "siren", "--sizes", f"1L{2**24}D", "--steps", "1"],
], ids=["fit", "compare"])
def test_a_network_too_big_for_memory_is_one_line_saying_what_to_lower(tmp_path, command):
    make_png(tmp_path)
    proc = run_here([*command, "--device", "cpu", "--out", "out"], cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = proc.stderr.splitlines()[-1]  # compare announces each model on stderr before fitting it
    assert line.startswith("inr: error: out of memory (asked for ") and "does not fit" in line
    assert ("--hidden" if command[0] == "fit" else "layers") in line
    assert not (tmp_path / "out").exists()  # a failed run leaves no folder of its own making


def test_allocation_failures_are_told_from_other_errors():
    import torch

    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 4000000000000 bytes. Error code 12 (Cannot allocate memory)")
    cuda = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total "
                                       "capacity of 79.15 GiB of which 3.19 GiB is free.")
    assert out_of_memory_message(cpu, "lower --hidden") == ("out of memory (asked for 3,725.3 GiB at once): "
                                                            "lower --hidden")
    assert out_of_memory_message(cuda, "lower --hidden").startswith("out of memory (asked for 20.00 GiB at once)")
    assert out_of_memory(cpu) and out_of_memory(cuda) and out_of_memory(MemoryError())
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not out_of_memory(KeyError("can't allocate memory"))  # only allocators' errors, not any that says so


# A file name's carriage return and line feed, or its bytes that are not UTF-8 (surrogates to Python).
AWKWARD_NAMES = {
    "control-characters": ("cr\rlf\nhere.png", "cr\\rlf\\nhere.png"),
    "not-utf-8": ("bad" + b"\xff\xfe".decode("utf-8", "surrogateescape") + "utf.png", "bad\\xff\\xfeutf.png"),
}


@pytest.mark.parametrize("case", list(AWKWARD_NAMES))
def test_an_awkward_file_name_is_fitted_and_shown_as_escapes(tmp_path, case):
    name, shown = AWKWARD_NAMES[case]
    make_png(tmp_path, name)
    proc = run_here(["fit", "image", name, *TINY, "--quiet", "--json", "--out", "run"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["input"] == json.loads(proc.stdout)["input"] == name  # JSON escapes give the name back exactly
    assert png_caption(tmp_path / "run" / "comparison.png").startswith(f"{shown} · ")
    assert f"<title>{shown}</title>" in (tmp_path / "run" / "index.html").read_bytes().decode("utf-8")


def test_a_run_of_several_inputs_writes_its_summary_for_a_name_that_is_not_utf_8(tmp_path):
    name, _ = AWKWARD_NAMES["not-utf-8"]
    make_png(tmp_path, name)
    make_png(tmp_path, "plain.png")
    proc = run_here(["fit", "image", name, "plain.png", *TINY, "--quiet", "--json", "--out", "set"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "\\udcff" in (tmp_path / "set" / "summary.md").read_text()  # the byte, as an escape
    summary = json.loads((tmp_path / "set" / "summary.json").read_text())
    assert (tmp_path / "set" / "index.html").exists() and (summary["inputs"], summary["fitted"]) == (2, 2)


def test_compare_writes_its_page_for_a_name_that_is_not_utf_8(tmp_path):
    name, shown = AWKWARD_NAMES["not-utf-8"]
    make_png(tmp_path, name)
    proc = run_here(["compare", "image", name, "--models", "siren", "--sizes", "1L8D", "--steps", "2",
                    "--device", "cpu", "--json", "--out", "out"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert shown in (tmp_path / "out" / "index.html").read_bytes().decode("utf-8")


def test_text_stdout_cannot_encode_is_printed_as_escapes(monkeypatch):
    strict = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", strict)
    escape_unencodable_output()
    print("bad" + b"\xff".decode("utf-8", "surrogateescape") + ".png", end="")
    strict.flush()
    assert strict.buffer.getvalue() == b"bad\\udcff.png"


# --------------------------------------------------------------------------------------------- inr sample


def test_sample_missing_file(tmp_path):
    proc = run_here(["sample", "nope.pt"], cwd=tmp_path)
    assert "nope.pt" in assert_one_line_error(proc)
    assert list(tmp_path.iterdir()) == []


def test_sample_directory(tmp_path):
    (tmp_path / "run").mkdir()
    proc = run_here(["sample", "run"], cwd=tmp_path)
    assert "run" in assert_one_line_error(proc)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + bytes(100), b"\x00" * 50],
                         ids=["empty", "png", "zeros"])
def test_sample_non_checkpoint(tmp_path, content):
    (tmp_path / "model.pt").write_bytes(content)
    proc = run_here(["sample", "model.pt", "--scale", "2"], cwd=tmp_path)
    assert "model.pt" in assert_one_line_error(proc, code=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no sample-*.png


def test_sample_image_file_instead_of_checkpoint(tmp_path):
    make_png(tmp_path)
    proc = run_here(["sample", "ok.png"], cwd=tmp_path)
    assert "ok.png" in assert_one_line_error(proc, code=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]


@pytest.mark.parametrize("text", ["hello world\n", "some notes\n"])
def test_sample_text_file(tmp_path, text):
    (tmp_path / "notes.txt").write_text(text)
    proc = run_here(["sample", "notes.txt"], cwd=tmp_path)
    assert_one_line_error(proc, code=1)


def test_sample_plain_pickle(tmp_path):
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    proc = run_here(["sample", "model.pkl"], cwd=tmp_path)
    assert_one_line_error(proc, code=1)


def test_run_here_shows_what_a_subprocess_would_print_on_stderr(tmp_path, monkeypatch):
    """The in-process runner these tests use must not let pytest take a warning or a log record a user would see:
    a test that asserts "one line on stderr" would then pass over them."""
    import logging
    import warnings

    import inr_cli.app

    def noisy():
        warnings.warn("a user would see this", UserWarning)
        warnings.warn("and not this", DeprecationWarning)  # the interpreter's default filters ignore it
        logging.getLogger("some.library").warning("nor miss this")

    monkeypatch.setattr(inr_cli.app, "escape_unencodable_output", noisy)
    proc = run_here(["--version"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip()
    assert "UserWarning: a user would see this" in proc.stderr and "nor miss this" in proc.stderr
    assert "and not this" not in proc.stderr


def test_run_here_shows_what_native_code_writes_to_the_descriptors(tmp_path, monkeypatch):
    """A C library's message goes to file descriptor 2 itself, past Python's sys.stderr: a subprocess shows it."""
    import inr_cli.app

    monkeypatch.setattr(inr_cli.app, "escape_unencodable_output", lambda: os.write(2, b"libfoo: a warning\n"))
    proc = run_here(["--version"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "libfoo: a warning\n"
