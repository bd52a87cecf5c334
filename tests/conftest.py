"""Shared fixtures: a small camera crop, image writers, and a runner for the `inr` command line.

Everything here is sized for a two-core CPU: images are tens of pixels, networks tens of units wide.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def subprocess_temporary_folder(tmp_path_factory):
    """The tests' subprocesses keep their temporary files under pytest's own temporary folder, which pytest
    prunes: torchrun leaves a log folder per launch, and Chromium an empty profile folder, which in /tmp would
    pile up with every run of the suite. (This process's own temporary folder was fixed when pytest started.)"""
    folder = tmp_path_factory.mktemp("subprocess-tmp")
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous


@pytest.fixture(scope="session")
def camera_crop() -> torch.Tensor:
    """A 64x64 crop of scikit-image's camera (tripod and coat: edges and texture) as (H, W, 1) floats in [0, 1]."""
    from skimage import data

    return torch.from_numpy(data.camera()[200:264, 200:264] / 255.0).float()[:, :, None]


@pytest.fixture(scope="session")
def camera_u8() -> np.ndarray:
    """The full 512x512 camera photo as uint8, for writing small test inputs."""
    from skimage import data

    return data.camera()


@pytest.fixture(scope="session")
def astronaut_u8() -> np.ndarray:
    from skimage import data

    return data.astronaut()
