"""Image collections for JIIO: a folder, IDX (plain and gzipped) and npz give the same tensors; bad files fail clearly
in one line (damaged, holding objects, without pixels, NaN), and so do bad labelled collections."""

import gzip
import io
import re
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from inr_cli.media.datasets import load_images
from inr_cli.media.images import resize_pixels
from inr_cli.media.labelled import load_labelled
from training.jiio.channels import match_channels
from inr_core.errors import UserError
from training.jiio.robust.config import MAX_CLASSES


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


def test_a_large_photo_in_a_folder_is_reduced_while_it_is_read(tmp_path, monkeypatch):
    """A 6 MP JPEG squared to 32 px is decoded at a reduced scale and box-reduced before the anti-aliased resize
    (squaring a 12 MP one from full size took 12 s); the square is the full-size path's picture. A small image
    takes the one resize it took before."""
    from inr_cli.media import images as images_module

    photo = Image.fromarray(data.astronaut()).resize((3000, 2000), Image.BICUBIC)
    photo.save(tmp_path / "large.jpg", quality=95)
    Image.fromarray(data.astronaut()[::8, ::8]).save(tmp_path / "small.png")
    resized = []
    resize = images_module.resize_pixels
    monkeypatch.setattr(images_module, "resize_pixels", lambda p, shape: resized.append(p.shape) or resize(p, shape))
    batch = load_images(str(tmp_path / "large.jpg"), 32)
    assert len(resized) == 1 and resized[0][0] * resized[0][1] < 200_000  # never the 6 M pixels
    full = resize(np.asarray(photo, dtype=np.float32) / 255, (32, 48))[:, 8:40]  # cover 32x32, centre crop
    error = torch.mean((batch[0].permute(1, 2, 0) - (torch.from_numpy(full) * 2 - 1)) ** 2).item()
    assert 10 * np.log10(4 / error) > 35  # PSNR on [-1, 1]
    resized.clear()
    small = load_images(str(tmp_path / "small.png"), 32)
    assert resized == [(64, 64, 3)]
    assert torch.allclose(small[0].permute(1, 2, 0), torch.from_numpy(resize(
        np.asarray(data.astronaut()[::8, ::8], dtype=np.float32) / 255, (32, 32))) * 2 - 1, atol=1e-6)


@pytest.mark.parametrize("size", [12, 40])  # down and up
def test_an_array_is_resized_as_a_stack_each_image_as_it_would_be_alone(tmp_path, monkeypatch, size):
    """Arrays are squared a chunk at a time by two matrix products (resize_stack); each image comes out as the
    one-image resize makes it, clipping to its own value range included, across chunk boundaries."""
    import inr_cli.media.datasets as datasets
    from inr_cli.media.images import cover_and_crop

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 20, 15, 3), dtype=np.uint8)
    images[2] = images[2] // 4 + 100  # a narrow range: the resize's overshoot is clipped to it
    images[4] = 37  # constant
    np.save(tmp_path / "set.npy", images)
    monkeypatch.setattr(datasets, "STACK_CHUNK", 3)
    batch = load_images(str(tmp_path / "set.npy"), size)
    for image, got in zip(images, batch):
        alone = np.clip(cover_and_crop(image.astype(np.float32) / 255, size, size, upscale=True), 0, 1)
        assert torch.allclose(got, torch.from_numpy(alone).permute(2, 0, 1) * 2 - 1, atol=2e-6)
    assert batch[2].min() >= 100 / 255 * 2 - 1 - 1e-6 and torch.all(batch[4] == batch[4][0, 0, 0])


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


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _damaged(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    return tmp_path / name


DAMAGED = {
    # name: (how the file is made, what the one line says)
    "crc.npz": (lambda d: d[:-200] + bytes([d[-200] ^ 0xFF]) + d[-199:], "unreadable array file (Bad CRC-32"),
    "truncated.npz": (lambda d: d[:len(d) // 2], "unreadable array file (File is not a zip file)"),
    "deflate.npz": (lambda d: d[:120] + bytes(b ^ 0x55 for b in d[120:140]) + d[140:],
                    "unreadable array file (Error -3 while decompressing data"),
    "random.npz": (lambda d: np.random.default_rng(1).bytes(300), "unreadable array file (not .npy or .npz data)"),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_array_file_fails_in_one_line(tmp_path, name):
    make, message = DAMAGED[name]
    path = _damaged(tmp_path, name, make(_npz_bytes(images=np.arange(64 * 256, dtype=np.float64).reshape(64, 16, 16))))
    with pytest.raises(UserError) as info:
        load_images(str(path), 16)
    assert str(info.value).startswith(f"{path}: {message}") and "\n" not in str(info.value)
    assert "allow_pickle" not in str(info.value) and "pickle.load" not in str(info.value)


def test_object_arrays_are_refused_without_advice_to_unpickle_them(tmp_path):
    np.savez(tmp_path / "objects.npz", images=np.array([1, None], dtype=object))
    with pytest.raises(UserError) as info:
        load_images(str(tmp_path / "objects.npz"), 16)
    assert str(info.value) == f"{tmp_path / 'objects.npz'}: unreadable array file (it holds arrays of Python " \
        "objects, which are never unpickled; save plain numeric arrays)"


@pytest.mark.parametrize("shape", [(5, 0, 0), (3, 0, 28)])
def test_images_without_pixels_are_refused(tmp_path, shape):
    """The reported rows: a ZeroDivisionError from the resize."""
    empty = np.zeros(shape, np.uint8)
    np.save(tmp_path / "empty.npy", empty)
    for path in (write_idx(tmp_path / "empty-images-idx3-ubyte", empty), tmp_path / "empty.npy"):
        with pytest.raises(UserError, match=rf"images are {shape[1]}x{shape[2]} pixels; they need at least 1x1"):
            load_images(str(path), 16)


def test_an_idx_header_whose_sizes_overflow_is_refused_with_the_right_count(tmp_path):
    # 2^31 x 2^31 x 4 wraps to 0 in 64 bits, which matched the 0 bytes that follow and failed the reshape.
    path = tmp_path / "wrap-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 2**31, 2**31, 4))
    with pytest.raises(UserError) as info:
        load_images(str(path), 16)
    assert str(info.value) == f"{path}: IDX file holds 0 bytes, its header promises {2**64}"


def test_non_finite_images_are_refused_where_they_are_read(tmp_path):
    images = np.full((4, 8, 8), 0.5, np.float32)
    images[1, 2, 3], images[3, 0, 0] = np.nan, np.inf
    np.savez(tmp_path / "bad.npz", images=images)
    with pytest.raises(UserError) as info:
        load_images(str(tmp_path / "bad.npz"), 8)
    assert str(info.value) == f"{tmp_path / 'bad.npz'}: 2 of 4 images hold NaN or infinite values (the first is " \
        "image 1); replace or drop them"


def test_uint16_arrays_and_gif_files_are_read(tmp_path, faces):
    np.save(tmp_path / "faces16.npy", faces.astype(np.uint16) * 257)  # 8-bit values widened: 255 -> 65535
    assert torch.allclose(load_images(str(tmp_path / "faces16.npy"), 28), load_images_of(tmp_path, faces), atol=1e-6)
    frames = [Image.fromarray(faces[0]), Image.fromarray(faces[1])]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    gif = load_images(str(tmp_path / "anim.gif"), 28)
    assert gif.shape[0] == 1 and torch.allclose(gif, load_images_of(tmp_path, faces[:1]), atol=1e-6)  # frame 1
    folder = tmp_path / "folder"
    folder.mkdir()
    (tmp_path / "anim.gif").rename(folder / "anim.gif")
    assert load_images(str(folder), 28).shape[0] == 1



def test_8_bit_values_stored_as_uint16_are_refused_rather_than_read_near_black(tmp_path, faces):
    np.save(tmp_path / "faces16.npy", faces.astype(np.uint16))  # 0-255 in a type scaled by 65535
    with pytest.raises(UserError) as info:
        load_images(str(tmp_path / "faces16.npy"), 28)
    assert str(info.value) == f"{tmp_path / 'faces16.npy'}: uint16 images whose values all lie in 0-255 would read " \
        "as near-black (uint16 is scaled by 65535); save 8-bit images as uint8, or any images as floats in [0, 1]"
    dark = faces.astype(np.uint16)
    dark[0, 0, 0] = 256  # one value past 8 bits: a genuine (dark) 16-bit collection is read as it is
    np.save(tmp_path / "dark16.npy", dark)
    assert float(load_images(str(tmp_path / "dark16.npy"), 28).max()) < -0.98

def load_images_of(tmp_path, images):
    np.save(tmp_path / "reference.npy", images)
    return load_images(str(tmp_path / "reference.npy"), 28)


def test_an_oversized_image_names_no_option_the_collection_commands_lack(tmp_path, monkeypatch):
    monkeypatch.setattr("inr_cli.media.datasets.DEFAULT_MAX_PIXELS", 100)
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(path)
    with pytest.raises(UserError) as info:
        load_images(str(path), 8)
    assert str(info.value) == f"{path}: 10x12 = 120 pixels, more than the 100 an image in a collection may have; " \
        "scale it down first"


# ------------------------------------------------------------------------------------------ labelled collections

def test_a_label_beyond_any_class_count_is_refused_before_naming_the_classes(tmp_path):
    """The reported row: labels[0] = 10**9 built 10**9 class names (MAX_CLASSES here, so that a run without the
    check stays small)."""
    labels = np.zeros(4, np.int64)
    labels[0] = MAX_CLASSES
    np.savez(tmp_path / "labelled.npz", images=np.zeros((4, 8, 8), np.uint8), labels=labels)
    with pytest.raises(UserError) as info:
        load_labelled(str(tmp_path / "labelled.npz"), 8)
    assert str(info.value) == f"{tmp_path / 'labelled.npz'} labels: label {MAX_CLASSES} is beyond the 100,000 " \
        "classes a classifier can have; labels number the classes from 0"


@pytest.mark.parametrize("arrays, message", [
    (dict(labels=np.array([0, None], dtype=object)), "unreadable array file (it holds arrays of Python objects"),
    (dict(labels=np.array([0, 1]), classes=np.array(["a", None], dtype=object)),
     "unreadable array file (it holds arrays of Python objects"),
    (dict(labels=np.array([0, 1]), classes=np.array("ab")), "'classes' must list one name per class"),
])
def test_labelled_npz_with_objects_or_bad_class_names_fails_in_one_line(tmp_path, arrays, message):
    np.savez(tmp_path / "labelled.npz", images=np.zeros((2, 8, 8), np.uint8), **arrays, allow_pickle=True)
    with pytest.raises(UserError, match=re.escape(message)):
        load_labelled(str(tmp_path / "labelled.npz"), 8)


def test_an_empty_fashion_idx_says_it_has_no_images(tmp_path):
    """The reported row: values.max() of no labels (the Fashion-MNIST class names are looked up for paths with
    "fashion" in them)."""
    images = write_idx(tmp_path / "fashion-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    (tmp_path / "fashion-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 0))
    with pytest.raises(UserError) as info:
        load_labelled(str(images), 28)
    assert str(info.value) == f"{images}: no images"


def test_an_ambiguous_three_axis_array_is_refused_in_one_line(tmp_path):
    """One RGB image saved as (H, W, 3) was read as H gray images 3 px wide, each stretched to a square."""
    path = tmp_path / "rgb.npy"
    np.save(path, np.zeros((28, 28, 3), np.uint8))
    with pytest.raises(UserError) as refused:
        load_images(str(path), 16)
    assert str(refused.value) == (f"{path}: shape (28, 28, 3) is ambiguous (one 28x28 image with 3 channels, or 28 "
                                  "gray images 3 px wide); save images as (N, H, W) gray, (N, H, W, C) or "
                                  "(N, C, H, W) with C 1 or 3 (one image: a[None])")
    np.save(path, np.zeros((1, 28, 28, 3), np.uint8))
    assert load_images(str(path), 16).shape == (1, 3, 16, 16)
