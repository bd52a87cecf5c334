"""A small software renderer for mesh previews: orthographic, z-buffered, smooth-shaded.

Each pixel takes the normal and colour interpolated from the vertices of the triangle nearest the camera
(Phong shading), lit by a key and a fill light fixed to the camera. Written in numpy: no OpenGL context, no
display, the same picture on every machine, and a dense scan (a million faces) renders in well under a second
because most of its triangles cover a pixel or two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.triangles import cross_rows

BACKGROUND = np.array([1.0, 1.0, 1.0])
# Fragments are handled this many at a time, to bound memory on a coarse mesh seen close up.
FRAGMENT_CHUNK = 4_000_000
CREASE_DEGREES = 40.0


@dataclass(frozen=True)
class Camera:
    """Where the eye is: ``toward`` points from the object to the eye; ``right`` and ``up`` span the picture."""

    toward: np.ndarray
    right: np.ndarray
    up: np.ndarray

    @classmethod
    def orbit(cls, up: np.ndarray, front: np.ndarray, azimuth: float, elevation: float) -> Camera:
        """The eye at ``azimuth`` degrees about ``up`` from ``front`` (the side the object faces), raised by
        ``elevation`` degrees."""
        side = np.cross(up, front)
        a, e = np.radians(azimuth), np.radians(elevation)
        toward = np.cos(e) * (np.cos(a) * front + np.sin(a) * side) + np.sin(e) * up
        right = np.cross(up, toward)
        right /= np.linalg.norm(right)
        return cls(toward, right, np.cross(toward, right))

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3): picture x (right), picture y (up), and depth (larger is nearer the eye)."""
        # Written out rather than a matrix product: on a busy machine BLAS threads make a (N, 3) @ (3, 3) slow.
        return np.stack([points[:, 0] * axis[0] + points[:, 1] * axis[1] + points[:, 2] * axis[2]
                         for axis in (self.right, self.up, self.toward)], axis=1)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of (..., 3) arrays, written out: numpy reduces a length-3 axis slowly."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.sqrt(_dot(vectors, vectors)), 1e-12)[..., None]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals at the vertices: the mean of the faces' normals around each, weighted by the face's angle at
    the vertex (so a cube's corner points along its diagonal however its faces are split); zero where none."""
    tri = vertices[faces]
    face_normals = _unit(cross_rows(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    angles = np.stack([_corner_angle(tri[:, k], tri[:, (k + 1) % 3], tri[:, (k + 2) % 3]) for k in range(3)],
                      axis=1)  # (F, 3)
    normals = np.stack([np.bincount(faces.ravel(), weights=(angles * face_normals[:, None, c]).ravel(),
                                    minlength=len(vertices)) for c in range(3)], axis=1)
    return _unit(normals)


def _corner_angle(at: np.ndarray, one: np.ndarray, other: np.ndarray) -> np.ndarray:
    first, second = _unit(one - at), _unit(other - at)
    return np.arccos(np.clip(_dot(first, second), -1.0, 1.0))


def corner_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3, 3): the normal each face uses at each of its corners: the vertex normal, except across a crease
    (the vertex normal more than CREASE_DEGREES off the face's own), where the face's normal keeps it flat. A
    dense scan shades smoothly; a box keeps its edges sharp instead of looking inflated."""
    tri = vertices[faces]
    face_normals = _unit(cross_rows(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    at_vertices = vertex_normals(vertices, faces)[faces]
    smooth = _dot(at_vertices, face_normals[:, None, :]) >= np.cos(np.radians(CREASE_DEGREES))
    return np.where(smooth[:, :, None], at_vertices, face_normals[:, None, :]).astype(np.float32)


def _rasterize(xy: np.ndarray, depth: np.ndarray, faces: np.ndarray, width: int, height: int, cull: bool
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel (row by row, flat), the nearest triangle (-1: none) and the barycentric weights (float32) of the
    pixel's centre in it.

    ``xy`` is in pixels with y pointing down. Every triangle is expanded into the pixels of its bounding box
    (a cumulative-sum trick, no Python loop); a depth maximum per pixel then picks the visible fragment. With
    ``cull``, triangles facing away from the eye are dropped first (right only for a closed, outward mesh)."""
    corner = [xy[faces[:, k]].astype(np.float32) for k in range(3)]
    e1, e2 = corner[1] - corner[0], corner[2] - corner[0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    # Pixel centres sit at integer + 0.5: the first and last covered column and row of each box. (Element-wise
    # minima rather than a reduction over the corners' axis, which numpy does slowly.)
    low = np.ceil(np.minimum(np.minimum(corner[0], corner[1]), corner[2]) - 0.5)
    high = np.floor(np.maximum(np.maximum(corner[0], corner[1]), corner[2]) - 0.5)
    low = np.maximum(low, 0).astype(np.int32)
    high = np.minimum(high, [width - 1, height - 1]).astype(np.int32)
    # With y pointing down, a triangle wound counter-clockwise as seen (facing the eye) has a negative area.
    facing = area < -1e-9 if cull else np.abs(area) > 1e-9
    keep = np.flatnonzero(facing & (high[:, 0] >= low[:, 0]) & (high[:, 1] >= low[:, 1]))
    # Per kept triangle, flat arrays: what each of its fragments gathers.
    inverse_area = 1.0 / area[keep]
    left, top = low[keep, 0], low[keep, 1]
    x0, y0 = corner[0][keep, 0] - left - 0.5, corner[0][keep, 1] - top - 0.5  # the first corner from the box's corner
    b1_x, b1_y = e2[keep, 1] * inverse_area, -e2[keep, 0] * inverse_area  # d(weight)/d(pixel) of corners 1, 2
    b2_x, b2_y = -e1[keep, 1] * inverse_area, e1[keep, 0] * inverse_area
    z0 = depth[faces[keep, 0]].astype(np.float32)
    z1, z2 = depth[faces[keep, 1]] - z0, depth[faces[keep, 2]] - z0
    box_width = high[keep, 0] - left + 1
    counts = box_width * (high[keep, 1] - top + 1)
    zbuffer = np.full(width * height, -np.inf)  # float64 like the fragments' depths: compared for equality
    owner = np.full(width * height, -1, dtype=np.int64)
    weights = np.zeros((width * height, 2), dtype=np.float32)
    ends = np.cumsum(counts, dtype=np.int64)
    start = 0
    while start < len(keep):
        # A run of triangles with at most FRAGMENT_CHUNK fragments between them (at least one triangle).
        stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + FRAGMENT_CHUNK)))
        local_counts = counts[start:stop]
        which = np.repeat(np.arange(start, stop, dtype=np.int32), local_counts)
        offset = np.arange(len(which), dtype=np.int32) - np.repeat(
            (np.cumsum(local_counts) - local_counts).astype(np.int32), local_counts)
        row, column = np.divmod(offset, box_width[which])
        dx, dy = column - x0[which], row - y0[which]
        b1 = dx * b1_x[which] + dy * b1_y[which]
        b2 = dx * b2_x[which] + dy * b2_y[which]
        inside = (b1 >= -1e-6) & (b2 >= -1e-6) & (b1 + b2 <= 1 + 1e-6)  # on a shared edge: covered
        which, b1, b2 = which[inside], b1[inside], b2[inside]
        pixel = (top[which] + row[inside]) * width + left[which] + column[inside]
        z = (z0[which] + b1 * z1[which] + b2 * z2[which]).astype(np.float64)
        np.maximum.at(zbuffer, pixel, z)
        front = z >= zbuffer[pixel]
        owner[pixel[front]] = keep[which[front]]
        weights[pixel[front], 0], weights[pixel[front], 1] = b1[front], b2[front]
        start = stop
    return owner, np.concatenate([1.0 - weights[:, :1] - weights[:, 1:], weights], axis=1)


def _lights(camera: Camera) -> list[tuple[np.ndarray, float]]:
    """A key light above and left of the eye, and a weaker fill from the right and below, as (direction, strength)."""
    def direction(right, up, toward):
        d = right * camera.right + up * camera.up + toward * camera.toward
        return d / np.linalg.norm(d)

    return [(direction(-0.55, 0.65, 0.75), 0.70), (direction(0.75, -0.15, 0.55), 0.28)]


AMBIENT = 0.22
SPECULAR = 0.12
SHININESS = 24.0


def render(vertices: np.ndarray, colours: np.ndarray, faces: np.ndarray, camera: Camera, scale: float,
           centre: np.ndarray, size: tuple[int, int], normals: np.ndarray | None = None, supersample: int = 2,
           closed: bool = False) -> np.ndarray:
    """The mesh seen by ``camera``, as a (height, width, 3) float picture in [0, 1] on white, ``size`` being
    (width, height).

    ``colours`` (V, 3) are the vertices' base colours, or a function that, given the (sorted) indices of the
    vertices the picture shows, returns a (V, 3) array right at least at those; ``normals`` (F, 3, 3) the faces'
    normals at their corners (by default :func:`corner_normals`); ``scale`` is pixels per unit and ``centre`` the
    picture coordinates (x, y) at the middle of the picture. Rendered ``supersample`` times larger and averaged
    down, so silhouettes are anti-aliased. ``closed``: the mesh is closed and its faces wound outward, so faces turned
    away from the eye can be skipped (half the work)."""
    if normals is None:
        normals = corner_normals(vertices, faces)
    width, height = size[0] * supersample, size[1] * supersample
    projected = camera.project(vertices)
    xy = np.empty((len(vertices), 2))
    xy[:, 0] = (projected[:, 0] - centre[0]) * scale * supersample + width / 2
    xy[:, 1] = height / 2 - (projected[:, 1] - centre[1]) * scale * supersample
    owner, weights = _rasterize(xy, projected[:, 2], faces, width, height, closed)
    hit = np.flatnonzero(owner >= 0)
    seen, w = owner[hit], weights[hit]
    normal = _unit(sum(normals[seen, k] * w[:, k:k + 1] for k in range(3)))
    toward = camera.toward.astype(np.float32)
    # Two-sided: a face seen from behind (an open mesh, or one wound the other way) is lit as its front.
    normal *= np.where(_dot(normal, toward) < 0, np.float32(-1), np.float32(1))[:, None]
    corners = faces[seen]
    if callable(colours):  # colours worth computing only where they are seen (the shape preview's distances)
        colours = colours(np.unique(corners))
    base = sum(colours[corners[:, k]] * w[:, k:k + 1] for k in range(3))
    diffuse = np.full(len(normal), AMBIENT, dtype=np.float32)
    shine = np.zeros(len(normal), dtype=np.float32)
    for light, strength in _lights(camera):
        diffuse += strength * np.maximum(_dot(normal, light.astype(np.float32)), 0.0)
        halfway = _unit(light + camera.toward).astype(np.float32)
        shine += SPECULAR * strength * np.maximum(_dot(normal, halfway), 0.0) ** SHININESS
    picture = np.broadcast_to(BACKGROUND.astype(np.float32), (height * width, 3)).copy()
    picture[hit] = np.clip(base * diffuse[:, None] + shine[:, None], 0.0, 1.0)
    picture = picture.reshape(height, width, 3)
    if supersample > 1:
        blocks = picture.reshape(size[1], supersample, size[0], supersample, 3)
        picture = sum(blocks[:, i, :, j] for i in range(supersample) for j in range(supersample)) / supersample ** 2
    return picture
