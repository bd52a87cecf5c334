"""Pictures: mesh previews stand upright and colour only real error; captions carry the report's numbers; labels
fit; the mel spectrogram's bands; the audio figure's text does not overlap."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from helpers import run_cli, save_png
from inr_cli.figures.captions import caption_text, fit_caption, grid_quality
from inr_cli.figures.grids import image_grid
from inr_cli.figures.layout import fitted, png_caption, printable, save_png as save_captioned_png, text_width, \
    with_caption
from inr_cli.figures.shapes import SURFACE, preview_panels
from inr_cli.figures.spectra import hz_to_mel, mel_filterbank
from inr_cli.media.meshes import SurfaceDistances, detect_up, resolve_up, write_preview
from inr_cli.modalities.shape import SHAPE, ShapeOptions, shape_quality
from inr_cli.reports import db_text, number_text
from inr_core.errors import InvalidSetting

# Rotations taking the tower's own up (+z) to the axis named.
TO_AXIS = {"+z": np.eye(4), "+x": trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]),
           "-y": trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])}


def tower(up: str = "+z") -> trimesh.Trimesh:
    """A tall box on a flat base with a ball sunk into its top, off-centre: it has one way up, and seen from the
    front it is tall, narrower at the top (the ball) than at the base."""
    box = trimesh.creation.box([0.6, 0.6, 2.0])
    ball = trimesh.creation.icosphere(subdivisions=2, radius=0.2)
    ball.apply_translation([0.1, 0.0, 1.0])
    mesh = trimesh.util.concatenate([box, ball])
    mesh.apply_transform(TO_AXIS[up])
    return mesh


def arrays(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


@pytest.mark.parametrize("up", ["+x", "-y"])
def test_up_axis_is_detected_from_the_flat_base(up):
    vertices, faces = arrays(tower(up))
    assert detect_up(vertices, faces, ".ply").axis == up
    assert detect_up(vertices, faces, ".stl").axis == up  # evidence beats the file type's habit


def test_up_axis_without_a_base_follows_the_file_type_and_can_be_given():
    vertices, faces = arrays(trimesh.creation.icosphere(subdivisions=2))
    assert detect_up(vertices, faces, ".ply").axis == "+y"
    assert detect_up(vertices, faces, ".STL").axis == "+z"
    assert resolve_up("-x", vertices, faces, "ball.ply").axis == "-x"
    assert resolve_up("z", vertices, faces, "ball.ply").axis == "+z"
    with pytest.raises(InvalidSetting, match="must be one of"):
        ShapeOptions(up="w").validate()


def silhouette(picture: np.ndarray) -> np.ndarray:
    return (picture < 0.97).any(axis=2)


def test_preview_stands_the_mesh_upright():
    vertices, faces = arrays(tower("+x"))
    up = detect_up(vertices, faces, ".ply").axis
    front = preview_panels((vertices, faces), (vertices, faces), np.zeros(len(vertices)), up)[0][0]
    rows, columns = np.nonzero(silhouette(front))
    assert np.ptp(rows) > 2 * np.ptp(columns)  # standing: much taller than wide
    widths = silhouette(front).sum(axis=1)
    top, bottom = rows.min(), rows.max()
    band = (bottom - top) // 12
    assert widths[top:top + band].mean() < 0.7 * widths[bottom - band:bottom].mean()  # the ball is at the top
    # Drawn with the wrong up axis, the same mesh lies on its side: the check above would fail.
    lying = preview_panels((vertices, faces), (vertices, faces), np.zeros(len(vertices)), "+y")[0][0]
    rows, columns = np.nonzero(silhouette(lying))
    assert np.ptp(rows) < np.ptp(columns)


def test_error_colouring_is_zero_on_the_target_and_shows_a_displacement():
    vertices, faces = arrays(tower())
    assert np.array_equal(SurfaceDistances(vertices, faces)(vertices), np.zeros(len(vertices)))
    target_views, same_views = preview_panels((vertices, faces), (vertices, faces), np.zeros(len(vertices)), "+z")
    assert all(np.array_equal(a, b) for a, b in zip(target_views, same_views))
    # Points 0.05 off the middle of a side read 0.05 (the discs cover the surface; its faces are large).
    off_side = np.array([[0.35, 0.0, z] for z in np.linspace(-0.5, 0.5, 9)])
    assert np.allclose(SurfaceDistances(vertices, faces)(off_side), 0.05, atol=2e-3)
    # A reconstruction pushed off the target is coloured: pixels leave the target's grey for yellow and red.
    moved = vertices + [0.0, 0.0, 0.05]
    error = SurfaceDistances(vertices, faces)(moved) / np.linalg.norm(np.ptp(vertices, axis=0)) / 0.01
    coloured = preview_panels((vertices, faces), (moved, faces), error, "+z")[1][0]
    seen = silhouette(coloured)
    red_over_blue = coloured[..., 0] - coloured[..., 2]
    assert SURFACE[0] - SURFACE[2] < 0 and np.mean(red_over_blue[seen] > 0.1) > 0.2


def test_image_comparison_caption_holds_the_reports_numbers(tmp_path, camera_u8):
    save_png(tmp_path / "cam.png", camera_u8[200:232, 200:232])
    proc = run_cli(["fit", "image", "cam.png", "--hidden", "16", "--layers", "1", "--steps", "20", "--out", "run",
                    "--quiet", "--json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    fit = report["config"]["fit"]
    expected = fit_caption(report["input"], report["model"], fit["layers"], fit["hidden"], report["steps"],
                           grid_quality(report))
    caption = png_caption(tmp_path / "run" / "comparison.png")
    assert caption == caption_text(expected)
    assert f"PSNR {db_text(report['psnr'])}" in caption and f"SSIM {number_text(report['ssim'])}" in caption
    assert caption.startswith("cam.png · siren 1L-16D · 20 steps · ")


def test_shape_load_records_the_up_axis_and_the_preview_keeps_its_caption(tmp_path):
    # In-process, without a fit: a few training steps make no surface worth measuring, and a full fit is slow.
    tower("+x").export(tmp_path / "tower.ply")
    loaded = SHAPE.load(str(tmp_path / "tower.ply"), ShapeOptions(samples=2000, eval_points=500), seed=0)
    assert loaded.info["up"] == "+x" and loaded.info["up_chosen_by"].startswith("detected")
    metrics = {"iou_surface": 0.91234, "iou_uniform": 0.95, "chamfer": 0.00123, "normal_consistency": 0.97}
    caption = fit_caption("tower.ply", "siren", 3, 256, 2000, shape_quality(metrics))
    mesh = loaded.mesh
    write_preview(tmp_path / "preview.png", mesh, mesh.vertices, mesh.faces, loaded.info["up"], caption)
    stored = png_caption(tmp_path / "preview.png")
    assert stored == caption_text(caption)
    assert "IoU near-surface 0.9123" in stored and "Chamfer 0.0012 of the bbox diagonal" in stored


def test_labels_fit_their_boxes_and_grids_show_psnr_rows():
    text, face = fitted("a label far too long for the narrow margin it is given", 80, 13)
    assert text.endswith("…") and text_width(text, face) <= 80
    assert fitted("short", 80, 13)[0] == "short"
    rows = [torch.zeros(3, 1, 8, 8), torch.ones(3, 1, 8, 8)]
    plain = image_grid(rows, columns=3, labels=["restored", "original"])
    scored = image_grid(rows, columns=3, labels=["restored", "original"], psnrs=[[20.0, 21.0, 22.0], None])
    assert scored.height > plain.height and scored.width == plain.width  # a line of numbers, same columns


# A file name's carriage return, line feed, next-line and paragraph separator (the text shaper fails on each) and
# its bytes that are not UTF-8 (Python hands them over as the surrogates U+DCFF, U+DCFE).
AWKWARD_NAME = "cr\rlf\nnel\x85par\u2029" + b"\xff\xfe".decode("utf-8", "surrogateescape") + ".png"
AWKWARD_SHOWN = "cr\\rlf\\nnel\\x85par\\u2029\\xff\\xfe.png"


def test_names_with_control_characters_or_undecodable_bytes_are_drawn_and_stored_as_escapes(tmp_path):
    assert printable(AWKWARD_NAME) == AWKWARD_SHOWN
    assert printable("naïve · 写真 ≥ 3 dB") == "naïve · 写真 ≥ 3 dB"  # other text stays as it is
    text, face = fitted(AWKWARD_NAME, 400, 13)
    assert text == AWKWARD_SHOWN and text_width(AWKWARD_NAME, face) == text_width(AWKWARD_SHOWN, face)
    captioned = with_caption(Image.new("RGB", (120, 20)), fit_caption(AWKWARD_NAME, "siren", 1, 8, 3, []))
    save_captioned_png(tmp_path / "figure.png", captioned, caption_text([AWKWARD_NAME, "siren 1L-8D"]))
    assert png_caption(tmp_path / "figure.png") == f"{AWKWARD_SHOWN} · siren 1L-8D"


def test_mel_filterbank_has_no_empty_band_and_the_scale_is_anchored():
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.5)
    for rate, n_fft in ((8000, 256), (44100, 2048)):
        filters, edges = mel_filterbank(rate, n_fft, 64)
        assert filters.shape == (64, n_fft // 2 + 1) and (filters.sum(axis=1) > 0).all()
        assert edges[-1] == pytest.approx(rate / 2)


def drawn_texts(fig):
    """The figure's texts that are drawn: its own, the axes' titles and labels, and the tick labels in view."""
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
        for labels, limits, coordinate in ((ax.get_xticklabels(), ax.get_xlim(), 0),
                                           (ax.get_yticklabels(), ax.get_ylim(), 1)):
            low, high = sorted(limits)
            texts += [t for t in labels if low <= t.get_position()[coordinate] <= high]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def test_audio_figure_text_does_not_overlap():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from inr_cli.media.audio import audio_comparison_figure

    rate = 8000
    time = np.arange(rate) / rate
    target = (0.5 * np.sin(2 * np.pi * 440 * time) + 0.2 * np.sin(2 * np.pi * 3000 * time))[:, None]
    fig = audio_comparison_figure(target, 0.9 * target, rate, ["clip.wav", "siren 3L-256D", "2,000 steps",
                                                                "PSNR 30.00 dB", "SNR 20.00 dB"])
    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    fig.draw(renderer)
    boxes = [t.get_window_extent(renderer) for t in drawn_texts(fig)]
    assert len(boxes) > 30
    overlapping = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    assert not overlapping
    width, height = canvas.get_width_height()
    assert all(b.x0 >= 0 and b.y0 >= 0 and b.x1 <= width and b.y1 <= height for b in boxes)
