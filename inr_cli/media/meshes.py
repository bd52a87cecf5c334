"""Reading and writing meshes through trimesh (OBJ, PLY, STL, OFF, GLB, ...), and a shaded preview picture.

Meshes are moved into the cube [-0.9, 0.9]^3 for fitting (centre of the bounding box to the origin, longest
half-side to 0.9); the transform is recorded and undone on export, so extracted meshes sit where the input did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from inr_cli.files import atomic_write_bytes, atomic_write_with, existing_file, first_line
from inr_cli.media.limits import library_warnings_as_notes, refuse_if_over
from inr_core.errors import UserError

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


def _claimed_faces(path: Path) -> int | None:
    """The face count a PLY, OFF or binary STL header states, read before the mesh is; None where the format has
    no such header (OBJ, GLB, ASCII STL) or it cannot be parsed (the loader then says what is wrong)."""
    suffix = path.suffix.lower()
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if suffix == ".stl" and len(head) >= 84 and not head.lstrip().startswith(b"solid"):
        return int.from_bytes(head[80:84], "little")
    words = head.decode("ascii", errors="replace").split()
    if suffix == ".off" and words[:1] == ["OFF"] and len(words) >= 3 and words[1].isdigit() and words[2].isdigit():
        return int(words[2])
    if suffix == ".ply" and words[:1] == ["ply"]:
        counts = {words[i + 1]: words[i + 2] for i in range(len(words) - 2) if words[i] == "element"}
        if counts.get("face", "").isdigit():
            return int(counts["face"])
    return None


def _check_faces(source: str, faces: int, max_faces: int) -> None:
    refuse_if_over(source, faces, max_faces, "--max-faces", f"{faces:,} faces", "simplify (decimate) the mesh first")


def read_mesh(source: str, max_faces: int = DEFAULT_MAX_FACES) -> LoadedMesh:
    """The mesh, normalised into the cube; refused when it has more than ``max_faces`` faces (from the header,
    before loading, where the format has one)."""
    path = existing_file(source, "a mesh")
    notes: list[str] = []
    claimed = _claimed_faces(path)
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
    center = (low + high) / 2
    scale = half / FILL
    if not loaded.is_watertight:
        notes.append("mesh is not watertight: inside/outside from generalised winding numbers")
    return LoadedMesh((vertices - center) / scale, faces, center, scale, notes)


def write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    file_type = path.suffix.lower().lstrip(".")
    if file_type not in MESH_FORMATS:
        raise UserError(f"{path}: meshes are written as {', '.join(MESH_FORMATS)}")
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    data = mesh.export(file_type=file_type)
    atomic_write_bytes(path, data if isinstance(data, bytes) else data.encode())


def _draw(ax, vertices, faces, title, max_faces=20000, seed=0):
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    if len(faces) > max_faces:
        faces = faces[np.random.default_rng(seed).choice(len(faces), max_faces, replace=False)]
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    if len(faces) == 0:
        ax.text2D(0.5, 0.5, "empty", ha="center", transform=ax.transAxes)
        return
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    light = np.clip(normals @ np.array([0.3, 0.4, 0.85]), 0.05, 1.0)
    shade = np.stack([light * 0.55 + 0.2, light * 0.65 + 0.2, light * 0.8 + 0.2, np.ones_like(light)], axis=1)
    ax.add_collection3d(Poly3DCollection(tri, facecolors=np.clip(shade, 0, 1), edgecolor="none"))
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(-1, 1)
    ax.view_init(elev=20, azim=35)


def write_preview(path: Path, target: LoadedMesh, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Target | reconstruction, shaded, from the same viewpoint, in the normalised cube."""
    from inr_cli.figures import new_figure

    fig = new_figure(figsize=(10, 5), dpi=100)
    _draw(fig.add_subplot(1, 2, 1, projection="3d"), target.vertices, target.faces, "target")
    _draw(fig.add_subplot(1, 2, 2, projection="3d"), vertices, faces, "reconstruction")
    fig.tight_layout()
    atomic_write_with(path, lambda buf: fig.savefig(buf, format="png"))
