"""`inr fit sdf`: mesh reading and normalisation, libigl distances, extraction, metrics, the command, bad input."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import trimesh

from helpers import run_here
from inr_cli.media import meshes as mesh_module
from inr_cli.media.meshes import read_mesh
from inr_core.errors import UserError
from training.geometry import DistanceField, chamfer_and_normals, extract_mesh, iou, sample_surface


@pytest.fixture
def meshes(tmp_path):
    torus = trimesh.creation.torus(0.6, 0.25)
    torus.apply_translation([3.0, -2.0, 0.5])  # away from the origin: exports must land back here
    torus.export(tmp_path / "torus.ply")
    trimesh.creation.icosphere(subdivisions=3, radius=0.5).export(tmp_path / "sphere.obj")
    return tmp_path, torus


def test_reader_normalises_into_the_cube_and_records_the_transform(meshes):
    folder, torus = meshes
    mesh = read_mesh(str(folder / "torus.ply"))
    assert np.abs(mesh.vertices).max() == pytest.approx(0.9)
    assert np.allclose(mesh.to_input(mesh.vertices), torus.vertices)
    assert mesh.info()["bbox_diagonal"] == pytest.approx(np.linalg.norm(np.ptp(torus.vertices, axis=0)))


def test_signed_distance_and_surface_samples_on_a_sphere(meshes):
    folder, _ = meshes
    sphere = trimesh.load(folder / "sphere.obj")
    v, f = np.asarray(sphere.vertices, float), np.asarray(sphere.faces, np.int64)
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (2000, 3))
    # The icosphere is inscribed in the true sphere: distances agree to the tessellation's sag (~0.01).
    assert np.abs(DistanceField(v, f).signed(points) - (np.linalg.norm(points, axis=1) - 0.5)).max() < 0.02
    surface, normals = sample_surface(v, f, 1000, rng)
    assert np.abs(np.linalg.norm(surface, axis=1) - 0.5).max() < 0.02
    assert np.mean(np.sum(normals * surface, axis=1) > 0) == 1.0  # outward normals


def test_signed_distances_are_exact_euclidean_distances_with_the_winding_number_sign():
    """Inside an axis-aligned box the distance is known exactly. libigl's own fast-winding-number signed distance
    multiplies it by 1 - 2|w|, a few tenths of a percent off where the winding number is not exactly 1."""
    import igl

    box = trimesh.creation.box(extents=(1.0, 1.2, 1.4))
    v, f = np.asarray(box.vertices, float), np.asarray(box.faces, np.int64)
    rng = np.random.default_rng(1)
    inside = rng.uniform(-0.45, 0.45, (3000, 3)) * [1.0, 1.2, 1.4]
    known = -np.min(np.array([0.5, 0.6, 0.7]) - np.abs(inside), axis=1)
    assert np.abs(DistanceField(v, f).signed(inside) - known).max() < 1e-12
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    v, f = np.asarray(sphere.vertices, float), np.asarray(sphere.faces, np.int64)
    points = rng.uniform(-1, 1, (3000, 3))
    exact = np.sqrt(igl.point_mesh_squared_distance(points, v, f)[0])
    assert np.abs(np.abs(DistanceField(v, f).signed(points)) - exact).max() < 1e-12


def test_the_sign_is_libigls_fast_winding_number_rule_on_an_open_mesh():
    import igl

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    v, f = np.asarray(sphere.vertices, float), np.asarray(sphere.faces, np.int64)[40:]  # a hole: not watertight
    points = np.random.default_rng(2).uniform(-0.8, 0.8, (5000, 3))
    theirs, *_ = igl.signed_distance(points, v, f,
                                     sign_type=igl.SignedDistanceType.SIGNED_DISTANCE_TYPE_FAST_WINDING_NUMBER)
    assert np.array_equal(DistanceField(v, f).inside(points), theirs < 0)


def test_truncated_distances_skip_the_exact_search_only_where_the_band_cannot_reach(monkeypatch):
    """Clipped to the band they equal the exact distances clipped, and the exact search sees only points near the
    surface: a finely tessellated sphere's centre region never reaches it."""
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    v, f = np.asarray(sphere.vertices, float), np.asarray(sphere.faces, np.int64)
    points = np.random.default_rng(3).uniform(-1, 1, (20000, 3))
    field = DistanceField(v, f)
    searched = []
    exact_search = field.distance
    monkeypatch.setattr(field, "distance", lambda p: searched.append(p) or exact_search(p))
    truncated = field.truncated(points, 0.1)
    exact = DistanceField(v, f).signed(points)
    assert np.array_equal(truncated, np.clip(exact, -0.1, 0.1))
    searched = {tuple(p) for p in np.concatenate(searched)}
    assert all(tuple(p) in searched for p in points[np.abs(exact) < 0.1])  # every point in the band was searched
    assert len(searched) < 0.4 * len(points)  # and most of the cube was not
    spacing = field._proxies[1]
    assert np.abs(np.linalg.norm(np.array(list(searched)), axis=1) - 0.5).max() < 0.1 + spacing + 0.02
    coarse = DistanceField(*(np.asarray(a) for a in (trimesh.creation.box().vertices, trimesh.creation.box().faces)))
    assert np.array_equal(coarse.truncated(points, 0.1), np.clip(coarse.signed(points), -0.1, 0.1))


def test_a_few_large_faces_keep_the_search_near_the_surface(monkeypatch):
    """A fine sphere standing on a plane of two large triangles (a scan's flat base): grids of proxy points on the
    two large faces keep every surface point near a proxy, so the bound stays tight; with the vertices alone, the
    plane's 2.5-long edges would have sent every point to the exact search."""
    from training.geometry import surface_proxies

    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    plane = np.array([[-0.9, -0.9, -0.6], [0.9, -0.9, -0.6], [0.9, 0.9, -0.6], [-0.9, 0.9, -0.6]])
    v = np.concatenate([sphere.vertices, plane])
    f = np.concatenate([sphere.faces, len(sphere.vertices) + np.array([[0, 1, 2], [0, 2, 3]])])
    proxies, spacing = surface_proxies(v, f, budget=1_000_000)
    assert spacing < 0.05 and len(proxies) > len(v)
    points = np.random.default_rng(4).uniform(-1, 1, (20000, 3))
    field = DistanceField(v, f)
    searched = []
    exact_search = field.distance
    monkeypatch.setattr(field, "distance", lambda p: searched.append(len(p)) or exact_search(p))
    truncated = field.truncated(points, 0.1)
    unsigned = np.abs(field.signed(points))
    assert np.array_equal(np.abs(truncated), np.minimum(unsigned, 0.1))
    assert searched[0] < 0.5 * len(points)
    # Searched: every point within the band, and none beyond the band and the spacing.
    assert np.sum(unsigned < 0.1) <= searched[0] <= np.sum(unsigned <= 0.1 + spacing)
    # Every point of the surface lies within the spacing of a proxy (checked on samples of it).
    surface, _ = sample_surface(v, f, 20000, np.random.default_rng(5))
    assert nearest_distance(proxies, surface).max() <= spacing
    # A tight budget widens the spacing instead of gridding without end.
    wide, wider_spacing = surface_proxies(v, f, budget=100)
    assert wider_spacing > spacing and len(wide) <= len(v) + 100


def nearest_distance(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    return cKDTree(points).query(queries)[0]


def test_extraction_is_outward_and_metrics_are_sane():
    grid = np.linspace(-1, 1, 40)
    x, y, z = np.meshgrid(grid, grid, grid, indexing="ij")
    vertices, faces = extract_mesh(np.sqrt(x ** 2 + y ** 2 + z ** 2) - 0.5)
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all(np.sum(normals * tri.mean(1), axis=1) > 0)
    rng = np.random.default_rng(0)
    same = chamfer_and_normals(vertices, faces, vertices, faces, 5000, rng)
    assert same["chamfer"] < 0.02 and same["normal_consistency"] > 0.95
    shifted = chamfer_and_normals(vertices + 0.1, faces, vertices, faces, 5000, rng)
    assert shifted["chamfer"] > 3 * same["chamfer"]
    assert iou(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)) == pytest.approx(1 / 3)
    assert extract_mesh(np.ones((8, 8, 8)))[1].shape == (0, 3)  # no surface: an empty mesh, not a crash


def test_chamfer_of_a_small_patch_far_from_the_surface_is_the_exact_nearest_distance():
    """A barely trained network's surface can be a few tiny faces far from the true one: from there every true
    sample is about equally far from all of the patch's samples, which scipy's default k-d tree could not prune
    (a minute per fit). The tree used instead still finds the exact nearest samples: checked by brute force."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    patch_vertices = np.array([[2.0, 2.0, 2.0], [2.01, 2.0, 2.0], [2.0, 2.01, 2.0], [2.0, 2.0, 2.01]])
    patch_faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1]])
    measured = chamfer_and_normals(patch_vertices, patch_faces, sphere.vertices, sphere.faces, 1500,
                                   np.random.default_rng(3))
    rng = np.random.default_rng(3)  # the same samples again, measured by brute force
    patch_points, _ = sample_surface(patch_vertices, patch_faces, 1500, rng)
    sphere_points, _ = sample_surface(sphere.vertices, sphere.faces, 1500, rng)
    distances = np.linalg.norm(patch_points[:, None] - sphere_points[None], axis=-1)
    assert measured["chamfer_pred_to_true"] == pytest.approx(distances.min(axis=1).mean(), rel=1e-12)
    assert measured["chamfer_true_to_pred"] == pytest.approx(distances.min(axis=0).mean(), rel=1e-12)


def test_cli_fit_sdf_outputs_metrics_and_input_coordinates(meshes):
    folder, torus = meshes
    proc = run_here(["fit", "sdf", "torus.ply", "--hidden", "64", "--steps", "200", "--samples", "30000",
                    "--eval-points", "10000", "--resolution", "48", "--out", "run", "--json", "--quiet"], cwd=folder)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    run = folder / "run"
    for name in ("reconstruction.ply", "preview.png", "training.png", "report.json", "checkpoint.pt"):
        assert (run / name).is_file(), name
    # Measured with this recipe: IoU 0.99 uniform / 0.92 near-surface, Chamfer 0.002 of the diagonal.
    assert report["iou_uniform"] > 0.95 and report["iou_surface"] > 0.8
    assert report["chamfer"] < 0.01 and report["normal_consistency"] > 0.9
    assert report["psnr"] is None
    extracted = trimesh.load(run / "reconstruction.ply")
    assert np.allclose(extracted.bounds, torus.bounds, atol=0.05)  # back in the input's coordinates
    sampled = run_here(["sample", "run/checkpoint.pt", "--resolution", "32", "--out", "small.obj"], cwd=folder)
    assert sampled.returncode == 0, sampled.stderr
    assert np.allclose(trimesh.load(folder / "small.obj").bounds, torus.bounds, atol=0.1)


def test_occupancy_target_trains_with_bce(meshes):
    folder, _ = meshes
    proc = run_here(["fit", "sdf", "sphere.obj", "--target", "occupancy", "--hidden", "32", "--steps", "100",
                    "--samples", "20000", "--eval-points", "10000", "--resolution", "32", "--out", "occ", "--json",
                    "--quiet"], cwd=folder)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    # Measured: IoU 0.89 on uniform points after 100 steps of this tiny network.
    assert report["config"]["options"]["target"] == "occupancy" and report["iou_uniform"] > 0.8


def test_bad_meshes_are_one_line_each_and_write_nothing(meshes):
    folder, _ = meshes
    trimesh.PointCloud(np.random.default_rng(0).random((50, 3))).export(folder / "cloud.ply")
    (folder / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n")
    (folder / "notes.ply").write_text("not a mesh\n")
    (folder / "faceless.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    (folder / "folder.ply").mkdir()
    (folder / "line.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")  # collinear: no area to sample
    names = ["cloud.ply", "nan.obj", "notes.ply", "faceless.obj", "folder.ply", "line.obj", "missing.stl"]
    for name in names[:-1]:
        with pytest.raises(UserError):
            read_mesh(str(folder / name))
    proc = run_here(["fit", "sdf", *names, "--steps", "5", "--out", "runs", "--quiet"], cwd=folder)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(names) and all(line.startswith("inr: error:") for line in lines), proc.stderr
    assert "Traceback" not in proc.stderr and not (folder / "runs").exists()


@pytest.mark.parametrize("target", ["sdf", "occupancy"])
def test_an_open_sheet_encloses_nothing_and_is_refused_before_training(tmp_path, target):
    """A flat sheet has no inside, so its target is 'outside' everywhere: the fit ran, found no surface, and
    advised fitting longer or raising --resolution, which could never help."""
    from inr_cli.modalities.shape import SHAPE, ShapeOptions

    trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]]).export(tmp_path / "sheet.obj")
    options = ShapeOptions(target=target, samples=2000, eval_points=500)
    with pytest.raises(UserError, match=r"sheet.obj: the surface encloses no volume \(none of its 2,000 training "
                                        r"points is inside it: an open sheet\?\); a shape fit needs a solid"):
        SHAPE.load(str(tmp_path / "sheet.obj"), options, 0)


def test_degenerate_mesh_is_refused_before_training(tmp_path):
    (tmp_path / "line.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    with pytest.raises(UserError, match="line.obj: the mesh has no surface area"):
        read_mesh(str(tmp_path / "line.obj"))


def test_an_unreadable_mesh_is_one_line_naming_it(tmp_path, monkeypatch):
    # Simulated: chmod 000 does not stop root, whom the tests may run as.
    trimesh.creation.box().export(tmp_path / "box.ply")

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(mesh_module, "open", refuse, raising=False)  # the reader's open(), not everyone's
    with pytest.raises(UserError) as info:
        read_mesh(str(tmp_path / "box.ply"))
    assert str(info.value) == f"{tmp_path / 'box.ply'}: unreadable mesh (Permission denied)"


def test_watertightness_is_judged_with_coincident_vertices_merged(tmp_path):
    box = trimesh.creation.box()
    box.export(tmp_path / "box.stl")  # STL repeats each corner for every triangle that has it
    mesh = read_mesh(str(tmp_path / "box.stl"))
    assert len(mesh.vertices) == 3 * len(box.faces)  # what is fitted stays as the file has it
    assert not any("watertight" in note for note in mesh.notes)
    trimesh.Trimesh(box.vertices, box.faces[1:]).export(tmp_path / "open.stl")
    assert any("not watertight" in note for note in read_mesh(str(tmp_path / "open.stl")).notes)


def test_a_shape_s_surface_is_extracted_in_the_fitting_thread_when_files_are_written_in_the_background(
        meshes, monkeypatch, capsys):
    """On a GPU a run's files are written by a background thread while the next input trains; the surface is
    extracted before that, in the thread that fitted it, where the process-wide TF32 switch is the fit's own and
    off between fits (in the writer it was the next fit's: TF32 or not by chance). The mesh written is that
    surface."""
    import threading

    from inr_cli.fitting import OutputOptions, run_fit_command
    from inr_cli.modalities import shape as shape_module
    from inr_cli.modalities.base import FitCommandConfig
    from training.fitting.config import FitConfig

    folder, _torus = meshes
    threads = []
    extract = shape_module.extract_surface

    def extract_and_note(*args, **kwargs):
        threads.append(threading.current_thread())
        return extract(*args, **kwargs)

    monkeypatch.setattr(shape_module, "extract_surface", extract_and_note)
    monkeypatch.setattr(shape_module, "METRIC_SAMPLES", 2000)  # Chamfer's nearest neighbours: quick
    fit_config = FitConfig(model="siren", hidden=16, layers=1, steps=5, device="cpu", eval_every=0)
    options = shape_module.ShapeOptions(samples=2000, eval_points=500, resolution=16)
    code = run_fit_command(FitCommandConfig("shape", fit_config, options),
                           [str(folder / "torus.ply"), str(folder / "sphere.obj")],
                           OutputOptions(out=folder / "runs", as_json=True, show_progress=False,
                                         write_in_background=True))
    assert code == 0
    assert threads == [threading.main_thread()] * 2
    for report in map(json.loads, capsys.readouterr().out.splitlines()):
        mesh = trimesh.load(folder / "runs" / report["output_dir"].split("/")[-1] / "reconstruction.ply")
        assert len(mesh.faces) == report["mesh_faces"] > 0


def test_a_mesh_resolution_past_what_inr_sample_takes_is_refused_before_training():
    """`inr fit sdf --resolution 2000` trained, then ran out of memory extracting a 2000^3 grid and blamed
    --hidden; `inr sample` refuses it up front, and so does the fit now."""
    from inr_cli.modalities.shape import ShapeOptions
    from inr_core.errors import InvalidSetting

    ShapeOptions(resolution=1024).validate()
    with pytest.raises(InvalidSetting, match="must be between 8 and 1024, got 2000"):
        ShapeOptions(resolution=2000).validate()


def test_a_binary_stl_whose_size_disagrees_with_its_face_count_is_refused_saying_so(tmp_path):
    """A binary STL is exactly 84 + 50 bytes per face: a truncated or random file was refused as holding
    billions of faces (over --max-faces) or none, and ASCII STL, or binary with a header starting "solid", still
    reads."""
    box = trimesh.creation.box()
    binary = box.export(file_type="stl")
    (tmp_path / "ascii.stl").write_text(box.export(file_type="stl_ascii"))
    (tmp_path / "solid.stl").write_bytes(b"solid made by a CAD tool".ljust(80, b"\0") + binary[80:])
    for name in ("ascii.stl", "solid.stl"):
        assert len(read_mesh(str(tmp_path / name)).faces) == 12
    (tmp_path / "cut.stl").write_bytes(binary[:-30])
    (tmp_path / "cut_solid.stl").write_bytes((tmp_path / "solid.stl").read_bytes()[:-30])
    noise = np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes()
    (tmp_path / "random.stl").write_bytes(noise)
    (tmp_path / "short.stl").write_text("garbage\n")
    expected = {"cut.stl": f"header claims 12 faces, the file has room for 11 ({len(binary) - 30:,} bytes",
                "cut_solid.stl": "header claims 12 faces, the file has room for 11",
                "random.stl": f"header claims {int.from_bytes(noise[80:84], 'little'):,} faces, the file has room "
                              "for 58 (3,000 bytes",
                "short.stl": "truncated or corrupt STL: 8 bytes, neither ASCII"}
    for name, words in expected.items():
        with pytest.raises(UserError) as info:
            read_mesh(str(tmp_path / name))
        assert str(info.value).startswith(f"{tmp_path / name}: truncated or corrupt") and words in str(info.value)


def test_an_empty_extracted_surface_is_noted_beside_its_null_metrics(meshes, monkeypatch, capsys):
    """A field that keeps one sign over the whole extraction grid (a fit of a step) gives an empty mesh, zero faces
    and null Chamfer and normal consistency: the report said nothing of why."""
    from inr_cli.fitting import OutputOptions, run_fit_command
    from inr_cli.modalities import shape as shape_module
    from inr_cli.modalities.base import FitCommandConfig
    from training.fitting.config import FitConfig

    folder, _torus = meshes
    monkeypatch.setattr(shape_module, "extract_surface",
                        lambda *args: (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)))
    fit_config = FitConfig(model="siren", hidden=8, layers=1, steps=1, device="cpu", eval_every=0)
    options = shape_module.ShapeOptions(samples=500, eval_points=100, resolution=12)
    code = run_fit_command(FitCommandConfig("shape", fit_config, options), [str(folder / "sphere.obj")],
                           OutputOptions(out=folder / "run", as_json=True, show_progress=False))
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mesh_faces"] == 0 and report["chamfer"] is None and report["normal_consistency"] is None
    assert report["notes"][-1] == (
        "no surface extracted: the network's zero level set does not cross the 12^3 grid (its signed distance has "
        "one sign at every grid point), so reconstruction.ply is empty and chamfer and normal_consistency are null; "
        "fit longer or raise --resolution")
