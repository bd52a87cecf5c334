"""Plain helper functions shared by the test modules (imported as ``helpers``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

REPO_ROOT = Path(__file__).resolve().parents[1]


def save_png(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 (H, W) / (H, W, C) or uint16 (H, W) array with Pillow."""
    Image.fromarray(array).save(path)
    return path


def cli_env() -> dict:
    # The working tree, not whatever copy of the package is installed, is what the tests exercise.
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONWARNINGS", None)
    return env


def run_cli(args: list[str], cwd: Path, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m inr_cli ARGS`` in ``cwd`` and capture its output as text."""
    return subprocess.run([sys.executable, "-m", "inr_cli", *map(str, args)], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=cli_env())


# The warning filters a Python started without -W or PYTHONWARNINGS has (run_cli's subprocesses: cli_env drops
# PYTHONWARNINGS), last to first as warnings.filterwarnings inserts them.
_INTERPRETER_WARNING_FILTERS = (("ignore", ResourceWarning), ("ignore", ImportWarning),
                                ("ignore", PendingDeprecationWarning), ("ignore", DeprecationWarning))


def run_here(args: list, cwd: Path, stdin: str | None = None, timeout: float | None = None
             ) -> subprocess.CompletedProcess:
    """:func:`run_cli` in this process: the same command line, working folder, stdin and captured text, without
    the 2-3 s an interpreter takes to start and import torch (on 2 cores, most of a small CLI test's time).

    What a subprocess would show and pytest would otherwise take for itself is shown too: warnings (under the
    interpreter's default filters) and log records of level WARNING and above (Python's last-resort handler) on
    stderr, and what native code (a C library) writes to file descriptors 1 and 2, after the command's own text
    on each. For tests of what a command does, not of the process around it: a
    test that signals, kills or races a run, holds a lock another process must see, or checks the interpreter's
    own exit path keeps :func:`run_cli`. An exception the command lets escape propagates here (a subprocess would
    print its traceback). ``timeout`` is run_cli's, taken and ignored: there is no process here to stop."""
    import contextlib
    import io
    import logging
    import warnings

    from inr_cli.app import main

    def text(data: bytes = b"", errors: str = "strict") -> io.TextIOWrapper:
        return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors=errors, newline=None)

    # A subprocess's stdout and stdin are strict, its stderr writes what it cannot encode as escapes.
    out, err, given = text(), text(errors="backslashreplace"), text((stdin or "").encode())
    last_resort = logging.StreamHandler(err)
    last_resort.setLevel(logging.WARNING)
    previous_folder, previous_stdin = os.getcwd(), sys.stdin
    code = 0
    native_out, native_err = _NativeOutput(1), _NativeOutput(2)
    try:
        os.chdir(cwd)
        sys.stdin = given
        logging.getLogger().addHandler(last_resort)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), native_out, native_err, \
                warnings.catch_warnings(record=True) as caught:
            warnings.resetwarnings()
            for action, category in _INTERPRETER_WARNING_FILTERS:
                warnings.filterwarnings(action, category=category)
            warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
            try:
                main([str(a) for a in args])
            except SystemExit as stopped:
                code = stopped.code if isinstance(stopped.code, int) else (0 if stopped.code is None else 1)
                if isinstance(stopped.code, str):  # as the interpreter does: the message on stderr
                    print(stopped.code, file=sys.stderr)
            for warning in caught:
                err.write(warnings.formatwarning(warning.message, warning.category, warning.filename,
                                                 warning.lineno, warning.line))
            out.flush()
            err.flush()
    finally:
        logging.getLogger().removeHandler(last_resort)
        os.chdir(previous_folder)
        sys.stdin = previous_stdin

    def read(stream: io.TextIOWrapper, native: _NativeOutput) -> str:
        return (stream.buffer.getvalue() + native.written).decode("utf-8", errors="surrogateescape")

    return subprocess.CompletedProcess(["inr", *map(str, args)], code, read(out, native_out),
                                      read(err, native_err))


class _NativeOutput:
    """While entered, what is written to file descriptor ``fd`` goes to a temporary file (then ``written``), not
    wherever the descriptor pointed (pytest's own capture); Python's streams are redirected apart."""

    def __init__(self, fd: int):
        self.fd, self.written = fd, b""

    def __enter__(self) -> _NativeOutput:
        import tempfile

        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(self.fd)
        os.dup2(self._file.fileno(), self.fd)
        return self

    def __exit__(self, *exc_info) -> bool:
        os.dup2(self._saved, self.fd)
        os.close(self._saved)
        self._file.seek(0)
        self.written = self._file.read()
        self._file.close()
        return False


def camera_crops_npz(path: Path, count: int) -> Path:
    """``count`` gray 16x16 crops of scikit-image's camera photo, stepping down a diagonal, as an .npz (uint8)."""
    from skimage import data

    camera = data.camera()
    np.savez(path, images=np.stack([camera[12 * i:12 * i + 16, 40 + 9 * i:56 + 9 * i] for i in range(count)]))
    return path


def in_process(args: list, capsys, *, strip: bool = False) -> tuple[int, str, str]:
    """Run the command line in this process, with no interpreter start-up: (exit code, stdout, stderr); ``strip``
    drops the whitespace around stderr (a one-line error then compares without its newline)."""
    import pytest

    from inr_cli.app import main

    with pytest.raises(SystemExit) as stopped:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return stopped.value.code, captured.out, captured.err.strip() if strip else captured.err


def psnr_np(prediction: np.ndarray, target: np.ndarray) -> float:
    """Reference PSNR for values in [0, 1], computed independently of training.metrics."""
    mse = np.mean((np.clip(prediction.astype(np.float64), 0.0, 1.0) - target.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(-10.0 * np.log10(mse))


class CallCounter(TorchDispatchMode):
    """``with CallCounter(torch.ops.aten.X.default) as counter:`` counts the calls of that operator inside
    (``counter.calls``), however deep: autograd's backward and library code included; ``counter.shapes`` holds
    each call's tensor arguments' shapes."""

    def __init__(self, operator):
        super().__init__()
        self.operator, self.calls, self.shapes = operator, 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is self.operator:
            self.calls += 1
            self.shapes.append(tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else a for a in args))
        return func(*args, **(kwargs or {}))


def untrained_decoder_checkpoint(path: Path) -> Path:
    """A decoder.pt as JIIO training writes it, of an untrained 16 px decoder (for runs that only restore, and for
    refusals that need a decoder where another checkpoint belongs)."""
    from models.mdeq import MDEQDecoder
    from training.fitting.checkpoint import serialize
    from training.jiio.decoder_checkpoint import decoder_payload
    from training.jiio.decoder_training import DecoderConfig, DecoderTrainingState

    config = DecoderConfig(image_size=16, latent_dim=8)
    decoder = MDEQDecoder(config.decoder_preset())
    state = DecoderTrainingState(decoder, torch.optim.Adam(decoder.parameters()), torch.zeros(4, 8))
    path.write_bytes(serialize(decoder_payload(state, config, {"source": "test"})))
    return path


def full_disk_at_write(module, write_number: int, monkeypatch) -> None:
    """Make ``module``'s ``atomic_write_bytes`` fail as a full disk does (its one-line error) on its
    ``write_number``-th call; the other calls write."""
    from inr_core.errors import UserError

    real_write, calls = module.atomic_write_bytes, []

    def write(path, data):
        calls.append(path)
        if len(calls) == write_number:
            raise UserError(f"{path}: cannot write: No space left on device")
        real_write(path, data)

    monkeypatch.setattr(module, "atomic_write_bytes", write)


def same_h264_stream(one: bytes, other: bytes) -> bool:
    """Two MP4 files hold the same video as far as a lossy encoding can say: as many frames of the same size, within
    30 dB PSNR of each other (a wrong frame or order is about 10 dB). Not bytes, nor the decoded pixels exactly:
    x264 did not reproduce its stream across processes here. In full runs of the suite two encodings of the same
    8-bit levels came out a few bytes apart in size, and once decoded to frames more than half a level apart on
    average; the MKV tests compare the levels themselves, losslessly."""
    import imageio.v3 as iio

    decoded, expected = (iio.imread(video_bytes, extension=".mp4").astype(np.float64) for video_bytes in (one, other))
    if decoded.shape != expected.shape:
        return False
    error = float(np.mean((decoded - expected) ** 2))
    return error == 0.0 or 10.0 * np.log10(255.0 ** 2 / error) >= 30.0
