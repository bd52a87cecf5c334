"""Outputs and renders at real sizes: each is computed in bounded pieces or refused up front, and gives what the
whole computation gave (tiny chunk sizes forced here through the modules' constants)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inr_core.errors import UserError


class BumpySphere(torch.nn.Module):
    """A field with a surface in the cube, whose values are not round numbers (as a network's are not)."""

    def forward_with_stats(self, coords: torch.Tensor):
        return coords.norm(dim=-1, keepdim=True) - 0.6 + 0.05 * torch.sin(7.3 * coords).sum(-1, keepdim=True), None


@pytest.mark.parametrize("target", ["sdf", "occupancy"])
def test_a_surface_is_extracted_from_the_float32_field_with_the_vertices_of_the_float64_copy(target, monkeypatch):
    """A 1024^3 fit was killed at 6.3 GB copying its float32 field to float64 for marching cubes, which works in
    float32 anyway: the field now goes in as rendered (occupancy negated in place), and the mesh is the same."""
    from training.fitting import shapes
    from training.fitting.render import render_grid
    from training.geometry import extract_mesh

    model, device = BumpySphere(), torch.device("cpu")
    field = render_grid(model, (24,) * 3, 1, device, 1000)[..., 0].numpy().astype(np.float64)
    expected = extract_mesh(-field if target == "occupancy" else field)
    assert len(expected[1]) > 0
    seen = []

    def extract_noting_dtype(values, *args):
        seen.append(values.dtype)
        return extract_mesh(values, *args)

    monkeypatch.setattr(shapes, "extract_mesh", extract_noting_dtype)
    vertices, faces = shapes.extract_surface(model, 24, device, 1000, target)
    assert seen == [np.float32]
    np.testing.assert_array_equal(vertices, expected[0])
    np.testing.assert_array_equal(faces, expected[1])


def test_the_largest_extraction_that_fits_is_a_multiple_of_8_within_the_budget():
    from training.fitting.shapes import extraction_bytes, largest_extraction

    for available in (extraction_bytes(8), extraction_bytes(517), 21.2e9, 5e9):
        fits = largest_extraction(int(available))
        assert fits % 8 == 0 and extraction_bytes(fits) <= available < extraction_bytes(fits + 8)
    assert largest_extraction(extraction_bytes(8) - 1) is None


def test_a_resolution_whose_extraction_cannot_fit_is_refused_before_the_mesh_is_read(monkeypatch, tmp_path):
    """`inr fit sdf --resolution 1024` trained for minutes and then died extracting: the extraction's memory is
    budgeted when the input is loaded, before any training, and a refusal names a resolution that fits."""
    from inr_cli.modalities import shape as shape_module
    from training.fitting.shapes import extraction_bytes

    available = extraction_bytes(512) + shape_module.NETWORK_ALLOWANCE
    monkeypatch.setattr(shape_module, "available_host_bytes", lambda: available)
    missing = str(tmp_path / "not-read.ply")  # never read: the refusal comes first
    with pytest.raises(UserError) as info:
        shape_module.SHAPE.load(missing, shape_module.ShapeOptions(resolution=1024), seed=0)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{missing}: extracting the mesh at --resolution 1024")
    assert message.endswith("; --resolution 512 fits")
    with pytest.raises(UserError, match="no such file|not-read"):  # 512 itself passes the check and reads the file
        shape_module.SHAPE.load(missing, shape_module.ShapeOptions(resolution=512), seed=0)
    assert shape_module.SHAPE.render_bytes_per_value == 5  # what `inr sample` budgets a shape's render with
