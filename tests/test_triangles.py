"""training/triangles.py: the component-formula cross products give numpy.cross's values bit for bit, so surface
sampling by area draws the same points as before."""

from __future__ import annotations

import numpy as np

import trimesh

from training.triangles import cross_rows, every_edge_in_two_faces, face_areas, face_cross


def test_cross_rows_are_numpys_cross_products_bit_for_bit():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2000, 3)), rng.standard_normal((2000, 3)) * 1e3
    assert np.array_equal(cross_rows(a, b), np.cross(a, b))
    assert np.array_equal(cross_rows(a[0], b), np.cross(a[0], b))  # one row against many
    assert np.array_equal(cross_rows(np.eye(3), np.roll(np.eye(3), -1, axis=0)), np.roll(np.eye(3), 1, axis=0) * 1.0)


def test_face_cross_and_areas():
    rng = np.random.default_rng(1)
    vertices, faces = rng.standard_normal((50, 3)), rng.integers(0, 50, (400, 3))
    corners = vertices[faces]
    assert np.array_equal(face_cross(vertices, faces), np.cross(corners[:, 1] - corners[:, 0],
                                                                corners[:, 2] - corners[:, 0]))
    square = np.array([[0.0, 0, 0], [2, 0, 0], [2, 3, 0], [0, 3, 0]])
    assert np.allclose(face_areas(square, np.array([[0, 1, 2], [0, 2, 3], [0, 0, 1]])), [3.0, 3.0, 0.0])
    assert np.allclose(face_cross(square, np.array([[0, 1, 2]])), [[0, 0, 6.0]])  # along +z for this winding


def test_a_closed_surface_is_one_whose_every_edge_lies_in_two_faces_as_trimesh_says():
    for mesh in (trimesh.creation.icosphere(subdivisions=2), trimesh.creation.box(), trimesh.creation.torus(1, 0.3)):
        faces = np.asarray(mesh.faces)
        assert every_edge_in_two_faces(faces, len(mesh.vertices)) and mesh.is_watertight
        opened = faces[1:]  # a hole
        assert not every_edge_in_two_faces(opened, len(mesh.vertices))
        assert not trimesh.Trimesh(mesh.vertices, opened, process=False).is_watertight
        doubled = np.concatenate([faces, faces[:1]])  # an edge in three faces
        assert not every_edge_in_two_faces(doubled, len(mesh.vertices))
    assert not every_edge_in_two_faces(np.zeros((0, 3), np.int64), 0)
