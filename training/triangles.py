"""Per-face arithmetic of triangle meshes in NumPy: cross products of rows, each face's doubled-area normal, face
areas. Reading a mesh, sampling its surface, detecting its base and shading its preview all need these.

``numpy.cross`` on (F, 3) rows moves its axes and takes strided views for a general case; the component formula
on whole columns gives the same values ten times faster (5 M rows on 2 cores: 1.04 s against 0.11 s). A fit of a
5.2 M-face mesh takes the faces' cross products fifteen times (reading, sampling, up-detection, preview) and ran
about 4 s faster with it (77 s in all); gathering the corners is most of what remains.
"""

from __future__ import annotations

import numpy as np


def cross_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``a x b`` of two (N, 3) arrays; the values of ``numpy.cross``."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.result_type(a, b))
    for k in range(3):
        i, j = (k + 1) % 3, (k + 2) % 3
        np.multiply(a[..., i], b[..., j], out=out[..., k])
        out[..., k] -= a[..., j] * b[..., i]
    return out


def face_cross(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3): each face's ``(v1 - v0) x (v2 - v0)``, along its normal (by the winding) with twice its area as
    length. The corners are gathered a column at a time, never as one (F, 3, 3) array."""
    first = vertices[faces[:, 0]]
    return cross_rows(vertices[faces[:, 1]] - first, vertices[faces[:, 2]] - first)


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,): each face's area."""
    return row_norms(face_cross(vertices, faces)) / 2


def row_norms(rows: np.ndarray) -> np.ndarray:
    """Euclidean length of each row of an (N, 3) array (``numpy.linalg.norm``'s values, which sampling by area
    depends on bit for bit)."""
    return np.linalg.norm(rows, axis=1)


def every_edge_in_two_faces(faces: np.ndarray, vertex_count: int) -> bool:
    """Whether each edge (an unordered pair of vertex indices) belongs to exactly two faces: a closed surface, as
    trimesh's ``is_watertight`` tells it, by one sort of the edges' keys (5.2 M faces: 1.9 s against trimesh's
    8.8 s, which groups rows of a hashed array)."""
    if len(faces) == 0:
        return False
    ends = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).astype(np.int64)
    keys = np.sort(ends.min(axis=1) * vertex_count + ends.max(axis=1))
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return bool(np.all(np.diff(np.r_[starts, len(keys)]) == 2))
