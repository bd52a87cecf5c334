"""A shape fit's trained network is written before its mesh and preview are made (minutes at a high
--resolution), and kept when they fail: the error says so in its line, the input counts as failed (no report) and
--resume fits it again. Before, a full disk, a figure's error or a kill there lost the network with the outputs."""

from __future__ import annotations

import errno
import os
import time

import numpy as np
import pytest
import trimesh

from helpers import in_process
from test_write_failures import disk_full, files_in

TINY = ["--steps", "3", "--hidden", "8", "--layers", "1", "--device", "cpu", "--eval-every", "0", "--samples", "2000",
        "--eval-points", "500", "--resolution", "16", "--quiet"]
FULL = os.strerror(errno.ENOSPC)

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds open files through /proc")


@pytest.fixture(autouse=True)
def few_metric_samples(monkeypatch):
    """Chamfer on 2,000 surface samples, not 100,000: a 3-step fit's far-off surface takes seconds to measure."""
    from inr_cli.modalities import shape

    monkeypatch.setattr(shape, "METRIC_SAMPLES", 2000)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("meshes")
    paths = []
    for name, radius in (("a", 0.8), ("b", 0.6)):
        sphere = trimesh.creation.icosphere(subdivisions=2, radius=radius)
        sphere.export(folder / f"{name}.ply")
        paths.append(folder / f"{name}.ply")
    return paths


def kept(out) -> str:
    return f"{out / 'checkpoint.pt'} holds the fitted network, kept: `inr sample` makes its outputs from it"


def test_a_preview_that_cannot_be_written_keeps_the_checkpoint_and_says_so(tmp_path, blobs, capsys, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patched:
        disk_full(patched, out / "preview.png")
        code, stdout, stderr = in_process(["fit", "sdf", blobs[0], *TINY, "--out", out], capsys)
    assert (code, stdout) == (1, "")
    assert stderr == f"inr: error: {out / 'preview.png'}: cannot write: {FULL} ({kept(out)})\n"
    assert files_in(out) == ["checkpoint.pt"]  # the mesh and the plot written before the preview are gone
    code, _, stderr = in_process(["sample", out / "checkpoint.pt", "--resolution", "16", "--out",
                                  tmp_path / "mesh.ply"], capsys)
    assert code == 0, stderr
    assert len(trimesh.load(tmp_path / "mesh.ply", process=False).vertices) > 0


def test_an_overwrite_whose_preview_fails_puts_the_old_run_back_whole(tmp_path, blobs, capsys, monkeypatch):
    """Never the old report beside the new network."""
    out = tmp_path / "run"
    args = ["fit", "sdf", blobs[0], *TINY, "--out", out]
    code, _, stderr = in_process(args, capsys)
    assert code == 0, stderr
    finished = {name: (out / name).read_bytes() for name in files_in(out)}
    with monkeypatch.context() as patched:
        disk_full(patched, out / "preview.png")
        code, _, stderr = in_process([*args, "--overwrite", "--seed", "1"], capsys)
    assert code == 1 and kept(out) in stderr
    assert {name: (out / name).read_bytes() for name in files_in(out)} == finished


def test_an_extraction_out_of_memory_keeps_the_checkpoint_and_a_figure_s_bug_says_so_too(tmp_path, blobs, capsys,
                                                                                         monkeypatch):
    from inr_cli.modalities.shape import ShapeModality

    def out_of_memory(*_):
        raise MemoryError()

    out = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr(ShapeModality, "render_outputs", out_of_memory)
        code, _, stderr = in_process(["fit", "sdf", blobs[0], *TINY, "--out", out], capsys)
    assert code == 1
    assert stderr.startswith(f"inr: error: {blobs[0]}: out of memory: ") and stderr.endswith(f"({kept(out)})\n")
    assert files_in(out) == ["checkpoint.pt"]

    def bug(*_, **__):
        raise ValueError("a figure's bug")

    out = tmp_path / "bug"
    with monkeypatch.context() as patched:
        patched.setattr(ShapeModality, "write_outputs", bug)
        with pytest.raises(ValueError) as raised:
            in_process(["fit", "sdf", blobs[0], *TINY, "--out", out], capsys)
    assert raised.value.__notes__ == [kept(out)]  # shown under the traceback
    assert files_in(out) == ["checkpoint.pt"]


def test_an_input_whose_outputs_failed_is_fitted_again_on_resume_and_a_finished_one_kept(tmp_path, blobs, capsys,
                                                                                          monkeypatch):
    out = tmp_path / "multi"
    args = ["fit", "sdf", *blobs, *TINY, "--out", out]
    with monkeypatch.context() as patched:
        disk_full(patched, out / "a" / "reconstruction.ply")
        code, _, stderr = in_process(args, capsys)
    assert code == 1 and kept(out / "a") in stderr
    assert files_in(out / "a") == ["checkpoint.pt"]
    finished = {name: (out / "b" / name).read_bytes() for name in files_in(out / "b")}
    assert "report.json" in finished
    code, _, stderr = in_process([*args, "--resume"], capsys)
    assert (code, stderr) == (0, "")
    assert (out / "a" / "report.json").is_file() and (out / "a" / "reconstruction.ply").is_file()
    assert {name: (out / "b" / name).read_bytes() for name in files_in(out / "b")} == finished


def test_other_modalities_still_leave_nothing_when_a_picture_cannot_be_written(tmp_path, capsys, monkeypatch,
                                                                                 camera_u8):
    from helpers import save_png

    image = save_png(tmp_path / "cam.png", camera_u8[::32, ::32])
    out = tmp_path / "run"
    disk_full(monkeypatch, out / "index.html")
    code, _, stderr = in_process(["fit", "image", image, "--steps", "3", "--hidden", "8", "--layers", "1", "--device",
                                  "cpu", "--eval-every", "0", "--quiet", "--out", out], capsys)
    assert code == 1 and "holds the fitted network" not in stderr
    assert not out.exists()
    np.testing.assert_equal(camera_u8.ndim, 2)


def test_a_single_input_run_that_kept_only_its_checkpoint_resumes(tmp_path, blobs, capsys, monkeypatch):
    """The kept checkpoint marks the folder as this command's run: --resume fits the input again (not refused as a
    folder of someone else's files), and a new run without --resume or --overwrite is told what the folder holds."""
    out = tmp_path / "run"
    args = ["fit", "sdf", blobs[0], *TINY, "--out", out]
    with monkeypatch.context() as patched:
        disk_full(patched, out / "preview.png")
        code, _, stderr = in_process(args, capsys)
    assert code == 1 and files_in(out) == ["checkpoint.pt"], stderr
    code, _, stderr = in_process(args, capsys)
    assert code != 0 and "not an inr run" not in stderr and "--resume" in stderr, stderr
    code, _, stderr = in_process([*args, "--resume"], capsys)
    assert code == 0, stderr
    assert "report.json" in files_in(out) and "preview.png" in files_in(out)


@pytest.mark.parametrize("number", ["SIGINT", "SIGTERM"])
def test_an_interrupt_while_the_mesh_is_made_says_the_checkpoint_is_kept(tmp_path, blobs, capsys, monkeypatch,
                                                                         number):
    """Ctrl-C (or SIGTERM) during the minutes a high --resolution extraction takes printed only "inr: interrupted":
    the kept network was not mentioned."""
    import signal
    import threading

    from inr_cli.modalities.shape import ShapeModality

    def interrupted(*_, **__):
        # To the main thread, whose run's handler is in place by now (never to the test process as a whole).
        signal.pthread_kill(threading.main_thread().ident, getattr(signal, number))
        for _ in range(600):
            time.sleep(0.1)  # (the handler raises here)
        raise AssertionError("the signal did not stop the run")

    out = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr(ShapeModality, "render_outputs", interrupted)
        code, stdout, stderr = in_process(["fit", "sdf", blobs[0], *TINY, "--out", out], capsys)
    assert (code, stdout) == ({"SIGINT": 130, "SIGTERM": 143}[number], "")
    assert stderr == f"inr: interrupted\ninr: {kept(out)}\n"
    assert files_in(out) == ["checkpoint.pt"]
