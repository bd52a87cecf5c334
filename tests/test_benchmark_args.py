"""The benchmark scripts' arguments: a bad one is one line on stderr and exit status 2 before any work, and small
--steps values run. Scripts that do work run in a subprocess, at sizes that take seconds; refusals run in this
process (as ``python SCRIPT ARGS`` would run them: ``runpy`` with ``sys.argv`` set), which saves a torch import per
case. A script that failed to refuse would go on to work here and fail the test on its exit status."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY_FIT = ["--size", "16", "--hidden", "16"]


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=BENCHMARKS.parent)


def run_here(script: str, *args: str, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` run in this process; its exit status, stdout and stderr. Any exception other than
    ``SystemExit`` propagates (a traceback, in a subprocess) and fails the test."""
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / script), *args])
    monkeypatch.setattr(sys, "path", list(sys.path))  # scripts put their own folder first; undone after the test
    try:
        runpy.run_path(str(BENCHMARKS / script), run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([script, *args], code, out, err)


def assert_refused(result: subprocess.CompletedProcess, message: str) -> None:
    """Exit 2, nothing on stdout, no traceback, and the error is stderr's one line after argparse's usage."""
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert ": error: " in last and message in last, result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--modes", "fp64"], "--modes: unknown precision 'fp64'; choose from fp32, tf32, bf16"),
    (["--modes", "fp32,bf-16"], "--modes: unknown precision 'bf-16'"),
    (["--models", "sirn"], "--models: unknown model 'sirn'; choose from siren, "),
])
def test_speed_modes_refuses_unknown_list_entries(args, message, monkeypatch, capsys):
    result = run_here("speed_modes.py", *TINY_FIT, "--steps", "2", "--compile", "off", "--models", "siren",
                      "--modes", "fp32", *args, monkeypatch=monkeypatch, capsys=capsys)
    assert_refused(result, message)


@pytest.mark.parametrize(("script", "args"), [
    ("fit_image.py", ["--models", "siren"]),
    ("speed_modes.py", ["--models", "siren", "--modes", "fp32", "--compile", "off"]),
    ("implicit_vs_explicit.py", ["--models", "isiren", "--sizes", "1"]),
])
def test_one_step_evaluates_at_step_one(script, args):
    result = run_script(script, *TINY_FIT, "--steps", "1", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.split("\n\n")[0]
    assert "@1" in table and "@0" not in table, table
    assert "nan" not in table, table


@pytest.mark.parametrize("script", ["fit_image.py", "speed_modes.py", "implicit_vs_explicit.py"])
def test_no_steps_is_refused(script, monkeypatch, capsys):
    result = run_here(script, *TINY_FIT, "--steps", "0", monkeypatch=monkeypatch, capsys=capsys)
    assert_refused(result, "--steps must be at least 1; got 0")


@pytest.mark.parametrize(("script", "args", "message"), [
    ("fit_image.py", ["--models", "siren,sirn"], "--models: unknown model 'sirn'; choose from siren, "),
    ("fit_image.py", ["--repeats", "0"], "--repeats must be at least 1; got 0"),
    ("modalities.py", ["--explicit", "foo"], "--explicit: unknown model 'foo'; choose from siren, fourier-mfn, "),
    ("modalities.py", ["--implicit", "siren"], "--implicit: unknown model 'siren'; choose from isiren, "),
    ("cpu_pieces.py", ["--models", "sirn"], "--models: unknown model 'sirn'; choose from siren, "),
    ("cpu_pieces.py", ["--pieces", "8192,0"], "--pieces: each entry must be at least 1; got 0"),
    ("recipe_sweep.py", ["--schedules", "cosin"],
     "--schedules: unknown schedule 'cosin'; choose from constant, cosine"),
    ("recipe_sweep.py", ["--lrs", "1e-3,x"], "--lrs: 'x' is not a number"),
    ("recipe_sweep.py", ["--lrs", "0"], "lr must be a positive, finite number, got 0.0"),
    ("implicit_vs_explicit.py", ["--sizes", "1,four"], "--sizes: 'four' is not an integer"),
    ("jiio_vs_adam.py", ["--decoder", "/nonexistent.pt"], "--decoder: /nonexistent.pt: no such file"),
    ("jiio_vs_adam.py", ["--task", "inpant"], "--task: unknown task 'inpant'; choose from reconstruct, inpaint, "),
    ("jiio_adversarial.py", ["--preset", "foo", "--train", "64", "--test", "32", "--epochs", "1"],
     "--preset: unknown preset 'foo'; choose from tiny, small, large"),
    ("host_allocator.py", ["--repeats", "0"], "--repeats must be at least 1; got 0"),
    ("host_allocator.py", ["--cases", "camera,fidd"], "--cases: unknown case 'fidd'; choose from fid, camera, sdf, "),
])
def test_bad_arguments_are_one_line_and_exit_2(script, args, message, monkeypatch, capsys):
    assert_refused(run_here(script, *args, monkeypatch=monkeypatch, capsys=capsys), message)
