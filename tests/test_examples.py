"""The shell recipes in examples/ run as their comments say (a recipe that fails teaches nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO_ROOT, cli_env, save_png

EXAMPLES = REPO_ROOT / "examples"


@pytest.mark.parametrize("script", sorted(path.name for path in EXAMPLES.glob("*.sh")))
def test_every_example_is_valid_bash(script):
    proc = subprocess.run(["bash", "-n", str(EXAMPLES / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_batch_fit_prints_a_row_per_image_and_the_failures(tmp_path):
    """Its table program was a SyntaxError (a backslash inside an f-string's braces), so the script failed after
    every fit had run; a failed input's JSON line (no "psnr") would have broken it too."""
    shots = tmp_path / "shots"
    shots.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        save_png(shots / name, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (shots / "broken.png").write_bytes(b"not a png")
    # `inr` as the script finds it: the console script beside this interpreter.
    env = {**cli_env(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", str(EXAMPLES / "batch_fit.sh"), "shots", "siren", "--steps", "3", "--hidden", "8",
                           "--layers", "1", "--device", "cpu"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stderr  # inr's exit code for a failed input, handed on by pipefail
    assert lines[0].startswith("shots/a.png ") and " dB  SSIM " in lines[0], proc.stdout
    assert lines[1].startswith("shots/b.png ") and lines[2].startswith("shots/broken.png ") and "failed: " in lines[2]
    assert lines[3].startswith("2 of 3 images fitted, mean PSNR ") and "-> runs/batch-siren-" in lines[3]
