"""Reading and writing meshes through trimesh (OBJ, PLY, STL, OFF, GLB, ...), their up axis, and the preview.

Meshes are moved into the cube [-0.9, 0.9]^3 for fitting (centre of the bounding box to the origin, longest
half-side to 0.9); the transform is recorded and undone on export, so extracted meshes sit where the input did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from inr_cli.files import atomic_write_bytes, existing_file, first_line
from inr_cli.media.limits import library_warnings_as_notes, refuse_if_over
from inr_core.errors import UserError
from training.triangles import cross_rows, every_edge_in_two_faces, face_areas, row_norms

FILL = 0.9  # the normalised mesh spans [-FILL, FILL] along its longest side
MESH_FORMATS = ("ply", "obj", "glb")
# Faces read: sampling points near the surface and their signed distances scale with the face count.
DEFAULT_MAX_FACES = 5_000_000


@dataclass
class LoadedMesh:
    vertices: np.ndarray  # (V, 3) float64, normalised
    faces: np.ndarray  # (F, 3) int64
    center: np.ndarray  # input = normalised * scale + center
    scale: float
    notes: list[str] = field(default_factory=list)

    def to_input(self, vertices: np.ndarray) -> np.ndarray:
        return to_input_coordinates(vertices, self.scale, self.center)

    def info(self) -> dict:
        return {"kind": "shape", "vertices": len(self.vertices), "faces": len(self.faces),
                "center": self.center.tolist(), "scale": self.scale,
                "bbox_diagonal": float(np.linalg.norm(np.ptp(self.to_input(self.vertices), axis=0)))}


def to_input_coordinates(vertices: np.ndarray, scale: float, center) -> np.ndarray:
    """Vertices from the normalised cube back into the input mesh's coordinates (the inverse of reading)."""
    return vertices * scale + np.asarray(center)


def _binary_stl_faces(path: Path, source: str, head: bytes) -> int | None:
    """The face count of a binary STL, whose size is exactly its 84-byte header (80 free bytes, then the count)
    plus 50 bytes per face: trimesh reads a file as binary only where the two agree. None for ASCII STL (text
    starting "solid"; binary files may start so too, but hold NUL bytes). Anything else is refused here: trimesh
    would read it as ASCII and find no faces, or its random count would be refused as too many."""
    size = path.stat().st_size
    claimed = int.from_bytes(head[80:84], "little") if len(head) >= 84 else None
    if claimed is not None and size == 84 + 50 * claimed:
        return claimed
    if head.lstrip().startswith(b"solid") and b"\0" not in head:
        return None
    if claimed is None:
        raise UserError(f"{source}: truncated or corrupt STL: {size} bytes, neither ASCII (text starting \"solid\") "
                        "nor binary (an 84-byte header, then 50 bytes per face)")
    raise UserError(f"{source}: truncated or corrupt binary STL: its header claims {claimed:,} faces, the file has "
                    f"room for {(size - 84) // 50:,} ({size:,} bytes; a binary STL is 84 + 50 bytes per face)")


def _claimed_faces(path: Path, source: str) -> int | None:
    """The face count a PLY, OFF or binary STL header states, read before the mesh is; None where the format has
    no such header (OBJ, GLB, ASCII STL) or it cannot be parsed (the loader then says what is wrong). A binary STL
    whose size disagrees with its count is refused (:func:`_binary_stl_faces`)."""
    suffix = path.suffix.lower()
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if suffix == ".stl":
        return _binary_stl_faces(path, source, head)
    words = head.decode("ascii", errors="replace").split()
    if suffix == ".off" and words[:1] == ["OFF"] and len(words) >= 3 and words[1].isdigit() and words[2].isdigit():
        return int(words[2])
    if suffix == ".ply" and words[:1] == ["ply"]:
        counts = {words[i + 1]: words[i + 2] for i in range(len(words) - 2) if words[i] == "element"}
        if counts.get("face", "").isdigit():
            return int(counts["face"])
    return None


def surface_area(vertices: np.ndarray, faces: np.ndarray) -> float:
    return float(face_areas(vertices, faces).sum())


def _is_watertight(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Whether every edge is shared by exactly two faces once coincident vertices are merged: STL stores each
    triangle's corners apart, so as loaded (unmerged, to fit exactly what the file holds) no STL would be."""
    merged = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    merged.merge_vertices()
    return every_edge_in_two_faces(np.asarray(merged.faces), len(merged.vertices))


def _check_faces(source: str, faces: int, max_faces: int) -> None:
    refuse_if_over(source, faces, max_faces, "--max-faces", f"{faces:,} faces", "simplify (decimate) the mesh first")


def read_mesh(source: str, max_faces: int = DEFAULT_MAX_FACES) -> LoadedMesh:
    """The mesh, normalised into the cube; refused when it has more than ``max_faces`` faces (from the header,
    before loading, where the format has one)."""
    path = existing_file(source, "a mesh")
    notes: list[str] = []
    try:
        claimed = _claimed_faces(path, source)
    except OSError as error:  # unreadable (permission denied) or gone since it was found
        raise UserError(f"{source}: unreadable mesh ({error.strerror or first_line(error)})") from None
    if claimed is not None:
        _check_faces(source, claimed, max_faces)
    try:
        with library_warnings_as_notes(notes):
            loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as error:  # noqa: BLE001 - trimesh's loaders raise many types on bad files
        raise UserError(f"{source}: unreadable mesh ({first_line(error)})") from None
    if isinstance(loaded, trimesh.PointCloud) or not isinstance(loaded, trimesh.Trimesh):
        raise UserError(f"{source}: holds a point cloud or no geometry; a mesh with faces is needed")
    vertices = np.asarray(loaded.vertices, dtype=np.float64)
    faces = np.asarray(loaded.faces, dtype=np.int64)
    _check_faces(source, len(faces), max_faces)
    if len(faces) == 0 or len(vertices) < 3:
        raise UserError(f"{source}: the mesh has no faces (a point cloud?); a surface is needed")
    if not np.isfinite(vertices).all():
        raise UserError(f"{source}: the mesh has NaN or infinite vertex coordinates")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise UserError(f"{source}: faces refer to vertices that do not exist")
    low, high = vertices.min(0), vertices.max(0)
    half = float((high - low).max()) / 2
    if half <= 0:
        raise UserError(f"{source}: the mesh is a single point")
    if not surface_area(vertices, faces) > 0:
        raise UserError(f"{source}: the mesh has no surface area (every face is a line or a point); a surface is "
                        "needed")
    center = (low + high) / 2
    scale = half / FILL
    if not _is_watertight(vertices, faces):
        notes.append("mesh is not watertight: inside/outside from generalised winding numbers")
    return LoadedMesh((vertices - center) / scale, faces, center, scale, notes)


def write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    file_type = path.suffix.lower().lstrip(".")
    if file_type not in MESH_FORMATS:
        raise UserError(f"{path}: meshes are written as {', '.join(MESH_FORMATS)}")
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    data = mesh.export(file_type=file_type)
    atomic_write_bytes(path, data if isinstance(data, bytes) else data.encode())


# --------------------------------------------------------------------------------------------- the up axis

UP_CHOICES = ("auto", "x", "y", "z", "-x", "-y", "-z")
# Where a mesh shows no base to stand on, its file type's habit decides: STL and 3MF come from CAD and 3D
# printing (z up); scans and graphics formats (PLY, OBJ, OFF) are y up as a rule, and glTF is y up by its spec.
Z_UP_SUFFIXES = (".stl", ".3mf")
BASE_SLAB = 0.01  # a base lies within this fraction of the mesh's longest side of its lowest point
BASE_FLATNESS = np.cos(np.radians(10.0))  # ... and its faces are within 10 degrees of level
FLAT_BASE = 0.5  # a base covering at least this fraction of the footprint is one the object stands on
TIE = 0.05


@dataclass(frozen=True)
class UpAxis:
    axis: str  # "+y", "-z", ...
    reason: str  # how it was chosen, for the report and the preview

    def describe(self) -> str:
        return f"{self.axis} up ({self.reason})"


def base_scores(vertices: np.ndarray, faces: np.ndarray) -> dict[str, float]:
    """For each signed axis as up, how much of the mesh's footprint its base fills: the area of level faces at
    the very bottom over the bounding box's cross-section (1: a flat bottom, 0: no flat contact at all)."""
    corners = vertices[faces]
    cross = cross_rows(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    doubled_area = row_norms(cross)
    level = np.abs(cross) >= BASE_FLATNESS * doubled_area[:, None]  # (F, 3): level across each axis
    extent = np.ptp(corners.reshape(-1, 3), axis=0)  # of the vertices in use
    slab = BASE_SLAB * float(extent.max())
    scores = {}
    for axis in range(3):
        footprint = float(np.prod(np.delete(extent, axis)))
        coordinate = corners[:, :, axis]
        # With +axis up the bottom is the lowest coordinate; with -axis up, the highest.
        for name, above_bottom in ((f"+{'xyz'[axis]}", coordinate - coordinate.min()),
                                   (f"-{'xyz'[axis]}", coordinate.max() - coordinate)):
            touching = level[:, axis] & (above_bottom <= slab).all(axis=1)
            scores[name] = float(doubled_area[touching].sum()) / 2 / max(footprint, 1e-12)
    return scores


def detect_up(vertices: np.ndarray, faces: np.ndarray, suffix: str) -> UpAxis:
    """The mesh's up axis: the one it stands on a flat base along, where it has one (among near ties, the file
    type's convention, then the tallest way up); otherwise its file type's convention."""
    convention = "+z" if suffix.lower() in Z_UP_SUFFIXES else "+y"
    scores = base_scores(vertices, faces)
    best = max(scores.values())
    if best < FLAT_BASE:
        return UpAxis(convention, f"the {suffix.lower() or 'file'} convention: no flat base found")
    tied = [axis for axis, score in scores.items() if score >= best - TIE]
    extent = np.ptp(vertices, axis=0)
    chosen = convention if convention in tied else max(tied, key=lambda axis: extent["xyz".index(axis[-1])])
    return UpAxis(chosen, "detected: it stands on a flat base")


def resolve_up(choice: str, vertices: np.ndarray, faces: np.ndarray, source: str) -> UpAxis:
    """``--up``: an axis as given (x means +x), or ``auto``: :func:`detect_up`."""
    if choice != "auto":
        return UpAxis(choice if choice.startswith("-") else f"+{choice}", "given with --up")
    return detect_up(vertices, faces, Path(source).suffix)


# ------------------------------------------------------------------------------------------------ the preview

class SurfaceDistances:
    """Distances from points to a mesh's surface, nearly exact and fast on dense meshes: the surface is covered
    with small discs (around its vertices and ``samples`` points, each in its face's plane), and a point's
    distance is to the nearest disc's centre's disc. Exactly zero for points on the mesh's vertices; points on the
    surface read zero, and points just past an open border may read up to a disc's radius too little. Built once,
    asked many times (the preview asks per view, for the vertices that view shows)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, samples: int = 100_000, seed: int = 0):
        from inr_cli.figures.render import vertex_normals
        from training.geometry import nearest_neighbour_tree, sample_surface

        surface, normals = sample_surface(vertices, faces, samples, np.random.default_rng(seed))
        self.centres = np.concatenate([vertices, surface])
        self.normals = np.concatenate([vertex_normals(vertices, faces), normals])
        # Random centres leave gaps: a disc three times the radius of the area each centre stands for covers all
        # but one point in ten thousand, so a point on the surface reads (nearly) zero wherever it lies.
        self.radius = 3 * np.sqrt(surface_area(vertices, faces) / (np.pi * len(self.centres)))
        # Chamfer's tree: scipy's default one pruned almost nothing for the far-off vertices of an early fit.
        self.tree = nearest_neighbour_tree(self.centres)

    def __call__(self, points: np.ndarray, up_to: float = np.inf) -> np.ndarray:
        """The distance of each point; ``inf`` for those farther than ``up_to``. A bound lets the tree stop
        looking: with none, each vertex of an early fit (far inside a 1.3 M-face target, nearly as far from all of
        its surface) took 0.34 ms, with the preview's 1% of the diagonal about none."""
        if len(points) == 0:
            return np.zeros(0)
        # A disc's points lie within its radius of its centre: a point whose nearest centre is farther than
        # up_to + radius is farther than up_to from every disc.
        distance, nearest = self.tree.query(points, workers=-1, distance_upper_bound=up_to + self.radius)
        result = np.full(len(points), np.inf)
        found = np.flatnonzero(np.isfinite(distance))
        distance, nearest = distance[found], nearest[found]
        offset = points[found] - self.centres[nearest]
        across = np.abs((offset * self.normals[nearest]).sum(axis=1))
        along = np.sqrt(np.maximum(distance ** 2 - across ** 2, 0.0))
        measured = np.sqrt(across ** 2 + np.maximum(along - self.radius, 0.0) ** 2)
        result[found] = np.where(measured <= up_to, measured, np.inf)
        return result


def write_preview(path: Path, target: LoadedMesh, vertices: np.ndarray, faces: np.ndarray, up: str = "+y",
                  caption: list[str] | tuple[str, ...] = ()) -> None:
    """Target above reconstruction (both in the normalised cube, ``up`` at the top), three views each, smooth-
    shaded; the reconstruction coloured by its distance to the target's surface.

    Only the vertices a view shows are measured (at most three per pixel), and only up to the colour scale's full
    scale (past it every distance has the same colour, and the tree stops looking): the picture is the one every
    vertex measured in full gives. For a --resolution 512 mesh of an early fit of a 1.3 M-face target, measuring
    all 711,503 vertices in full took most of the preview's 36 s; the 509,854 shown, bounded, take 0.5 s."""
    from inr_cli.figures.captions import caption_text
    from inr_cli.figures.layout import save_png
    from inr_cli.figures.shapes import ERROR_FULL_SCALE, preview_image, preview_panels

    diagonal = float(np.linalg.norm(np.ptp(target.vertices, axis=0)))
    distances = SurfaceDistances(target.vertices, target.faces) if len(faces) else None

    def error(indices: np.ndarray) -> np.ndarray:  # of the vertices a view shows, as fractions of full scale
        return distances(vertices[indices], up_to=diagonal * ERROR_FULL_SCALE) / diagonal / ERROR_FULL_SCALE

    target_views, reconstruction_views = preview_panels((target.vertices, target.faces), (vertices, faces), error, up)
    image = preview_image(target_views, reconstruction_views, caption, empty=len(faces) == 0)
    save_png(path, image, caption_text(caption))
