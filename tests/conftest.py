"""Shared fixtures: a small camera crop, image writers, and a runner for the `inr` command line.

Everything here is sized for a two-core CPU: images are tens of pixels, networks tens of units wide.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch


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
