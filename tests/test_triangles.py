"""training/triangles.py: the component-formula cross products give numpy.cross's values bit for bit, so surface
sampling by area draws the same points as before."""

from __future__ import annotations

import numpy as np

from training.triangles import cross_rows, face_areas, face_cross


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
