"""Image collections for JIIO: a folder, IDX (plain and gzipped) and npz give the same tensors; bad files fail clearly."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from inr_cli.media.datasets import load_images
from inr_cli.media.images import resize_pixels
from training.jiio.channels import match_channels
from inr_core.errors import UserError


@pytest.fixture
def faces():
    """Twelve 28x28 gray crops of scikit-image's camera as uint8."""
    camera = data.camera()
    return np.stack([camera[40 * i:40 * i + 28, 100 + 20 * i:128 + 20 * i] for i in range(12)])


def write_idx(path, images, compress=False):
    payload = b"\x00\x00\x08\x03" + struct.pack(">3I", *images.shape) + images.tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)
    return path


def test_folder_idx_and_npz_agree(tmp_path, faces):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, image in enumerate(faces):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    np.savez(tmp_path / "faces.npz", images=faces)
    np.save(tmp_path / "faces.npy", faces)
    sources = [folder, write_idx(tmp_path / "train-images-idx3-ubyte", faces),
               write_idx(tmp_path / "train-images-idx3-ubyte.gz", faces, compress=True),
               tmp_path / "faces.npz", tmp_path / "faces.npy"]
    batches = [load_images(str(s), 28) for s in sources]
    expected = torch.from_numpy(faces).float()[:, None] / 255 * 2 - 1
    for batch in batches:
        assert batch.shape == (12, 1, 28, 28)
        assert torch.allclose(batch, expected, atol=1e-6)


def test_resize_and_centre_crop(tmp_path):
    stripes = np.zeros((20, 40, 3), dtype=np.uint8)  # wide: red | green (the middle half) | blue
    stripes[:, :10, 0], stripes[:, 10:30, 1], stripes[:, 30:, 2] = 255, 255, 255
    np.save(tmp_path / "one.npy", stripes[None])
    batch = load_images(str(tmp_path / "one.npy"), 10)
    # Shorter side 20 -> 10, then the centre 10 x 10 of the 10 x 20 result: exactly the green half.
    green = torch.tensor([-1.0, 1.0, -1.0])[:, None, None].expand(3, 10, 10)
    assert batch.shape == (1, 3, 10, 10) and torch.allclose(batch[0], green, atol=1e-6)


def test_collections_resize_as_images_and_video_frames_do(tmp_path):
    photo = data.astronaut()[100:164, 200:264]
    np.save(tmp_path / "one.npy", photo[None])
    expected = resize_pixels(photo.astype(np.float32) / 255, (16, 16))  # the resize behind --resize too
    batch = load_images(str(tmp_path / "one.npy"), 16)
    assert torch.allclose(batch[0], torch.from_numpy(expected).permute(2, 0, 1) * 2 - 1, atol=1e-6)


def test_channel_matching_repeats_gray_and_averages_colour():
    gray = torch.rand(2, 1, 4, 4)
    colour = match_channels(gray, 3)
    assert colour.shape == (2, 3, 4, 4) and all(torch.equal(colour[:, [c]], gray) for c in range(3))
    assert torch.allclose(match_channels(colour, 1), gray)
    rgb = torch.rand(2, 4, 4, 3)  # channels last
    assert torch.allclose(match_channels(rgb, 1, dim=3), rgb.mean(dim=3, keepdim=True))
    assert match_channels(rgb, 3, dim=3) is rgb
    with pytest.raises(ValueError):
        match_channels(rgb, 4, dim=3)


def test_bad_collections_fail_in_one_line(tmp_path, faces):
    (tmp_path / "notes-ubyte").write_bytes(b"hello world, not idx")
    write_idx(tmp_path / "short-ubyte", faces)
    (tmp_path / "short-ubyte").write_bytes((tmp_path / "short-ubyte").read_bytes()[:-10])
    np.savez(tmp_path / "two.npz", a=faces, b=faces)
    np.save(tmp_path / "floats.npy", faces.astype(np.float32))  # 0..255 floats: outside [0, 1]
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for name in ("notes-ubyte", "short-ubyte", "two.npz", "floats.npy", "empty", "file.txt", "missing.npz"):
        with pytest.raises(UserError) as info:
            load_images(str(tmp_path / name), 28)
        assert "\n" not in str(info.value)


def test_face_crops_shipped_with_scikit_image():
    faces = load_images("skimage:lfw_faces", 28)
    assert faces.shape == (100, 1, 28, 28) and faces.min() >= -1 and faces.max() <= 1 and faces.std() > 0.1
    assert load_images("skimage:lfw_subset", 25, limit=7).shape == (7, 1, 25, 25)
    with pytest.raises(UserError, match="unknown image collection"):
        load_images("skimage:camera", 28)


def test_a_folder_mixing_gray_and_colour_comes_out_in_colour(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    gray = np.full((20, 20), 200, dtype=np.uint8)
    colour = np.zeros((20, 20, 3), dtype=np.uint8)
    colour[..., 0] = 255
    Image.fromarray(gray).save(folder / "a_gray.png")  # read first: the colour image upgrades the batch later
    Image.fromarray(colour).save(folder / "b_colour.png")
    Image.fromarray(gray).save(folder / "c_gray.png")
    images = load_images(str(folder), 16)
    assert images.shape == (3, 3, 16, 16)
    expected_gray = 200 / 255 * 2 - 1
    assert torch.allclose(images[0], torch.full((3, 16, 16), expected_gray), atol=1e-5)
    assert torch.allclose(images[2], images[0])
    assert torch.allclose(images[1, 0], torch.ones(16, 16)) and torch.allclose(images[1, 1], -torch.ones(16, 16))
