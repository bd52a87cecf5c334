"""The shape preview's cost: the reconstruction's distances to the target are measured only for the vertices the
views show, and only up to the colour scale's full scale (past it, one colour), giving the same picture as every
vertex measured in full. Measuring every vertex of a --resolution 512 mesh (711,503) took about 5 minutes."""

from __future__ import annotations

import numpy as np
import trimesh

from inr_cli.figures import layout, shapes
from inr_cli.figures.shapes import ERROR_FULL_SCALE, preview_panels
from inr_cli.media.meshes import LoadedMesh, SurfaceDistances, write_preview


def _sphere(subdivisions: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(sphere.vertices) * radius, np.asarray(sphere.faces)


def _reconstruction() -> tuple[np.ndarray, np.ndarray, int]:
    """A bumpy outer surface (near the target in places, far in others) around a small sphere it hides, as an early
    fit's stray inner blob is; and how many vertices the outer part has."""
    outer, outer_faces = _sphere(3, 0.9)
    outer = outer * (1 + 0.04 * np.sin(7 * outer[:, :1]))
    inner, inner_faces = _sphere(2, 0.2)
    return (np.concatenate([outer, inner]), np.concatenate([outer_faces, inner_faces + len(outer)]), len(outer))


def test_distances_up_to_a_bound_are_the_full_ones_and_inf_past_it():
    vertices, faces = _sphere(3, 0.9)
    points = np.random.default_rng(0).uniform(-1, 1, (2000, 3))
    full = SurfaceDistances(vertices, faces, samples=5000)(points)
    bounded = SurfaceDistances(vertices, faces, samples=5000)(points, up_to=0.05)
    near = full <= 0.05
    assert 0 < near.sum() < len(points)
    np.testing.assert_array_equal(bounded[near], full[near])
    assert np.isinf(bounded[~near]).all()


def test_the_preview_measures_only_the_vertices_it_shows_and_looks_as_if_it_measured_all(monkeypatch, tmp_path):
    target = LoadedMesh(*_sphere(3, 0.9), center=np.zeros(3), scale=1.0)
    vertices, faces, outer = _reconstruction()
    measured = []
    original = SurfaceDistances.__call__

    def noting(self, points, up_to=np.inf):
        measured.append(len(points))
        return original(self, points, up_to)

    monkeypatch.setattr(SurfaceDistances, "__call__", noting)
    drawn = {}
    monkeypatch.setattr(shapes, "preview_image", lambda target_views, views, *_, **__: drawn.setdefault("v", views))
    monkeypatch.setattr(layout, "save_png", lambda *_: None)
    write_preview(tmp_path / "preview.png", target, vertices, faces, "+y")
    # The hidden sphere's vertices and the outer ones no view shows are never measured, each shown one once.
    assert 0 < sum(measured) < outer
    # Every vertex measured in full, coloured as before: the same pictures.
    diagonal = float(np.linalg.norm(np.ptp(target.vertices, axis=0)))
    error = SurfaceDistances(target.vertices, target.faces)(vertices) / diagonal / ERROR_FULL_SCALE
    assert (error > 1).any() and (error < 0.5).any()  # both ends of the scale are shown
    expected = preview_panels((target.vertices, target.faces), (vertices, faces), error, "+y")[1]
    assert all(np.array_equal(a, b) for a, b in zip(drawn["v"], expected))
