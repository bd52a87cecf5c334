"""The shape preview: target above reconstruction, three views each, upright, the reconstruction coloured by
its distance to the target surface, with the colour bar and a caption."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from inr_cli.figures.layout import GAP, PAD, WHITE, ColourScale, centred_text, colour_bar, fitted, font, \
    line_height, text_width, to_uint8, with_caption
from inr_cli.figures.render import Camera, corner_normals, render
from training.triangles import cross_rows

PANEL = 300
# The colour of a surface where it lies on the target: the target's own, so a perfect fit looks like the target.
SURFACE = (0.74, 0.77, 0.83)
# Error colours beyond SURFACE: yellow, orange, red at full scale.
ERROR_STOPS = np.array([0.0, 0.3, 0.65, 1.0])
ERROR_COLOURS = np.array([SURFACE, (0.98, 0.86, 0.36), (0.96, 0.52, 0.16), (0.76, 0.08, 0.10)])
# Distances to the target are shown as a fraction of its bounding-box diagonal (as Chamfer is reported); an
# error of 1% of it is full scale, about a voxel of a 128^3 extraction.
ERROR_FULL_SCALE = 0.01
# The side each up axis's object faces, by convention: +z for y-up (graphics, scanners), -y for z-up (CAD).
FRONT_FOR_UP = {0: (0.0, 0.0, 1.0), 1: (0.0, 0.0, 1.0), 2: (0.0, -1.0, 0.0)}
LABEL_SIZE = 14


@dataclass(frozen=True)
class View:
    name: str
    azimuth: float  # degrees about the up axis from the front
    elevation: float  # degrees above the horizon


# A quarter turn apart, starting a little off the front so the object's depth shows.
VIEWS = (View("front", 25.0, 15.0), View("side", 115.0, 15.0), View("back", 205.0, 15.0))


def error_colours(fraction: np.ndarray) -> np.ndarray:
    """Values in [0, 1] of full scale -> RGB; 0 is the target's surface colour."""
    fraction = np.clip(fraction, 0.0, 1.0)
    return np.stack([np.interp(fraction, ERROR_STOPS, ERROR_COLOURS[:, c]) for c in range(3)], axis=-1)


ERROR_SCALE = ColourScale(error_colours, ERROR_FULL_SCALE, "distance to the target surface (% of its bounding-box "
                          "diagonal)", lambda value: f"{100 * value:g}%")


def cameras(up: str) -> list[Camera]:
    """One camera per view, for an object whose up axis is ``up`` ('+y', '-z', ...)."""
    axis = "xyz".index(up[-1])
    up_vector = np.zeros(3)
    up_vector[axis] = -1.0 if up.startswith("-") else 1.0
    return [Camera.orbit(up_vector, np.array(FRONT_FOR_UP[axis]), v.azimuth, v.elevation) for v in VIEWS]


def is_closed_outward(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Whether every edge is shared by exactly two faces that run it in opposite directions, and the faces are
    wound outward (positive volume): then faces turned away from the eye are hidden and need not be drawn."""
    if len(faces) == 0:
        return False
    count = len(vertices)
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).astype(np.int64)
    keys = np.sort(directed[:, 0] * count + directed[:, 1])  # sorting: numpy's hashed unique is slower here
    if np.any(keys[1:] == keys[:-1]):
        return False  # an edge run the same way by two faces: not consistently wound
    if not np.array_equal(keys, np.sort(directed[:, 1] * count + directed[:, 0])):
        return False  # an edge with no face running it back: a border
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return float((a * cross_rows(b, c)).sum()) > 0.0  # six times the enclosed volume


@dataclass(frozen=True)
class Framing:
    """Pixels per unit, each panel's (width, height), and per view the picture point at the panel's centre:
    shared by both meshes, so they line up, and by all views, so they share one scale. Panels take the target's
    shape (a tall statue gets tall panels), within limits that leave room for the titles."""

    scale: float
    size: tuple[int, int]
    centres: list[np.ndarray]

    @classmethod
    def around(cls, vertices: np.ndarray, views: list[Camera], longest: int = PANEL) -> Framing:
        spans, centres = [], []
        for camera in views:
            flat = camera.project(vertices)[:, :2]
            low, high = flat.min(axis=0), flat.max(axis=0)
            spans.append(high - low)
            centres.append((low + high) / 2)
        span = np.maximum(np.max(spans, axis=0), 1e-9)  # (x, y) over the views
        scale = 0.92 * longest / float(span.max())
        width, height = (int(np.clip(np.ceil(s * scale / 0.92), 0.55 * longest, longest)) for s in span)
        return cls(scale, (width, height), centres)


class SeenColours:
    """Vertex colours computed when a view first shows their vertex, each once however many views show it:
    ``colour_of(indices)`` gives the (N, 3) colours of those vertices. Passed to the renderer as ``colours``."""

    def __init__(self, count: int, colour_of: Callable[[np.ndarray], np.ndarray]):
        self.table = np.zeros((count, 3), dtype=np.float32)
        self.known = np.zeros(count, dtype=bool)
        self.colour_of = colour_of

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        missing = indices[~self.known[indices]]
        if len(missing):
            self.table[missing] = self.colour_of(missing)
            self.known[missing] = True
        return self.table


def mesh_views(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray | SeenColours, views: list[Camera],
               framing: Framing) -> list[np.ndarray]:
    """The mesh from each camera, as (height, width, 3) pictures in [0, 1] (blank where it has no faces)."""
    width, height = framing.size
    if len(faces) == 0:
        return [np.ones((height, width, 3)) for _ in views]
    normals = corner_normals(vertices, faces)
    closed = is_closed_outward(vertices, faces)
    if not callable(colours):
        colours = np.asarray(colours, dtype=np.float32)
    return [render(vertices, colours, faces, camera, framing.scale, centre, framing.size, normals=normals,
                   closed=closed) for camera, centre in zip(views, framing.centres)]


def preview_panels(target: tuple[np.ndarray, np.ndarray], reconstruction: tuple[np.ndarray, np.ndarray],
                   error: np.ndarray | Callable[[np.ndarray], np.ndarray], up: str, longest: int = PANEL
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The target's views and the reconstruction's, the latter coloured by ``error`` (per vertex, as a fraction
    of full scale), framed alike. ``error`` may be a function of vertex indices, asked only for the vertices the
    views show (the corners of the faces that own a pixel: at most three per pixel however large the mesh)."""
    views = cameras(up)
    framing = Framing.around(target[0], views, longest)
    plain = np.broadcast_to(np.array(SURFACE), (len(target[0]), 3))
    colours = SeenColours(len(reconstruction[0]), lambda indices: error_colours(error(indices))) if callable(error) \
        else error_colours(error)
    return (mesh_views(*target, plain, views, framing), mesh_views(*reconstruction, colours, views, framing))


def preview_image(target_views: Sequence[np.ndarray], reconstruction_views: Sequence[np.ndarray],
                  caption: Sequence[str], empty: bool = False) -> Image.Image:
    """Views laid out: titles above, 'target' and 'reconstruction' at the left, the colour bar below."""
    face = font(LABEL_SIZE)
    margin = max(text_width(label, face) for label in ("target", "reconstruction")) + 2 * PAD
    height, width = target_views[0].shape[:2]
    title_band = line_height(font(LABEL_SIZE, bold=True)) + GAP
    total = margin + len(target_views) * (width + GAP) - GAP
    bar = colour_bar(ERROR_SCALE, min(total - margin, 520))
    canvas = Image.new("RGB", (total, title_band + 2 * height + 2 * GAP + bar.height), WHITE)
    draw = ImageDraw.Draw(canvas)
    for column, view in enumerate(VIEWS[:len(target_views)]):
        left = margin + column * (width + GAP)
        centred_text(draw, (left, left + width, 0), view.name, LABEL_SIZE, bold=True)
        for row, pictures in enumerate((target_views, reconstruction_views)):
            canvas.paste(Image.fromarray(to_uint8(pictures[column])), (left, title_band + row * (height + GAP)))
    for row, label in enumerate(("target", "reconstruction")):
        text, label_face = fitted(label, margin - PAD, LABEL_SIZE)
        draw.text((PAD // 2, title_band + row * (height + GAP) + (height - line_height(label_face)) // 2), text,
                  font=label_face, fill=(0, 0, 0))
    if empty:
        middle = margin + width + GAP
        centred_text(draw, (middle, middle + width, title_band + height + GAP + height // 2),
                     "no surface extracted", LABEL_SIZE)
    canvas.paste(bar, (margin + (total - margin - bar.width) // 2, title_band + 2 * height + 2 * GAP))
    return with_caption(canvas, caption)
