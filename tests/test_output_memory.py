"""Outputs and renders at real sizes: each is computed in bounded pieces or refused up front, and gives what the
whole computation gave (tiny chunk sizes forced here through the modules' constants)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inr_core.errors import UserError
from models.registry import build_model


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


def _whole_quantize(pixels: torch.Tensor, bit_depth: int) -> np.ndarray:
    """The rounding quantize did on the whole array at once (float64 of everything), for comparison."""
    top, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    return np.rint(pixels.clamp(0, 1).numpy().astype(np.float64) * top).astype(dtype)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_quantizing_in_bands_gives_the_levels_of_quantizing_the_whole_array(bit_depth, monkeypatch):
    from inr_cli.media import images

    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(13, 7, 3, generator=generator) * 1.2 - 0.1  # out of range too: clamped
    pixels[0, 0] = torch.tensor([0.5 / 255, 127.5 / 255, 0.5 / 65535])  # halfway between levels
    stack = torch.rand(5, 3, 4, 4, generator=generator).permute(0, 2, 3, 1)  # not contiguous, as JIIO's images
    monkeypatch.setattr(images, "QUANTIZE_BAND_VALUES", 7)  # bands of one row (or one image): many bands
    for array in (pixels, stack, pixels[:0]):
        levels = images.quantize(array, bit_depth)
        assert levels.dtype == images.level_dtype(bit_depth)
        np.testing.assert_array_equal(levels, _whole_quantize(array, bit_depth))


def _fitted_network(chunk: int):
    from inr_cli.modalities.base import FittedNetwork

    torch.manual_seed(0)
    model = build_model("siren", 2, 3, hidden=8, layers=1, frequency=30.0)
    return FittedNetwork(model=model, out_features=3, device=torch.device("cpu"), chunk=chunk, info={}, config=None)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_a_render_rounded_band_by_band_is_the_png_of_the_whole_render(bit_depth, tmp_path):
    """`inr sample` held ~24 bytes per value (the float32 render, its [0, 1] copy, the float64 rounding): the
    render is now mapped to [0, 1], and for a PNG rounded to its levels, each band as it is rendered. With bands of
    a row or less, the values, the levels and the file are those of the whole render."""
    from inr_cli.media.images import write_png
    from training.fitting.render import render_grid
    from training.metrics import to_unit_range

    network = _fitted_network(chunk=5)  # a 9-pixel row in two pieces: every band boundary there can be
    whole = to_unit_range(render_grid(network.model, (11, 9), 3, network.device, 5))
    assert torch.equal(network.render((11, 9)), whole)
    levels = network.render_levels((11, 9), bit_depth)
    np.testing.assert_array_equal(levels, _whole_quantize(whole, bit_depth))
    write_png(tmp_path / "whole.png", whole, bit_depth)
    write_png(tmp_path / "levels.png", levels, bit_depth)
    assert (tmp_path / "levels.png").read_bytes() == (tmp_path / "whole.png").read_bytes()
    with pytest.raises(ValueError, match="levels must be"):
        write_png(tmp_path / "wrong.png", levels.astype(np.int32), bit_depth)


def test_a_render_s_levels_are_the_only_whole_image_array_its_rounding_makes():
    """Traced (numpy) memory of rendering 600 x 500 RGB straight to 8-bit levels: the 0.9 MB of levels and a
    band's temporaries, where rounding the whole float render made 7.2 MB of float64 alone."""
    import tracemalloc

    network = _fitted_network(chunk=8192)
    tracemalloc.start()
    try:
        levels = network.render_levels((600, 500), 8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert levels.nbytes == 600 * 500 * 3 and peak < 2 * levels.nbytes


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_an_image_sample_is_written_from_its_levels_as_the_float_render_would_be(bit_depth, tmp_path, monkeypatch):
    """An image sample went through the float render (about 6 bytes per value at its peak); it is now written from
    the levels rendered band by band, byte for byte the same file, and `inr sample` budgets it at 4 bytes."""
    from inr_cli.media.images import write_png
    from inr_cli.modalities.base import FittedNetwork, SampleTarget
    from inr_cli.modalities.image import IMAGE

    network = _fitted_network(chunk=64)
    network = FittedNetwork(model=network.model, out_features=3, device=network.device, chunk=64,
                            info={"bit_depth": bit_depth}, config=None)
    write_png(tmp_path / "float.png", network.render((9, 11)), bit_depth)
    monkeypatch.setattr(FittedNetwork, "render", lambda *_: pytest.fail("the whole float render was made"))
    IMAGE.write_sample(network, SampleTarget((9, 11), "sample.png", (".png",)), tmp_path / "levels.png")
    assert (tmp_path / "levels.png").read_bytes() == (tmp_path / "float.png").read_bytes()
    assert IMAGE.render_bytes_per_value == 4


def test_the_preview_s_distances_use_chamfer_s_tree_and_are_those_of_scipy_s_default_tree(monkeypatch):
    """The shape preview's nearest-surface lookup used scipy's default k-d tree, which for the far-off vertices of
    an early fit of a 1.3 M-face mesh answered in 5.4 ms a query (about an hour for its 711,503 vertices); the tree
    Chamfer uses (0.43 ms) gives the same exact nearest distances."""
    import trimesh
    from scipy.spatial import cKDTree

    from inr_cli.media.meshes import SurfaceDistances
    from training import geometry

    sphere = trimesh.creation.icosphere(subdivisions=2)
    vertices, faces = np.asarray(sphere.vertices) * 0.9, np.asarray(sphere.faces)
    points = np.random.default_rng(1).uniform(-1, 1, (300, 3)) * [1, 1, 0.1] + [0, 0, 3]  # a far-off, flat patch
    built = []

    def tree_noting(centres):
        built.append(len(centres))
        return cKDTree(centres)  # scipy's default tree, to compare with

    expected = SurfaceDistances(vertices, faces, samples=2000)(points)
    monkeypatch.setattr(geometry, "nearest_neighbour_tree", tree_noting)
    default_tree = SurfaceDistances(vertices, faces, samples=2000)(points)
    assert built == [len(vertices) + 2000]  # the preview asked for geometry's tree
    np.testing.assert_array_equal(expected, default_tree)
