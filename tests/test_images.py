"""Reading and writing images: exact round trips for every depth and layout we write, other formats, bad files."""

from __future__ import annotations

import errno
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
import torch
from PIL import Image, ImageOps

from inr_cli.files import expand_inputs
from inr_cli.media.datasets import pixel_size
from inr_cli.media.images import (IMAGE_SUFFIXES, LoadedImage, crop_to, quantize, read_image, resize_longest_side,
                                  shrink_to_longest_side, write_png)
from inr_core.errors import UserError

RNG = np.random.default_rng(1234)


def random_image(height: int, width: int, channels: int, bit_depth: int, opaque: bool = False) -> np.ndarray:
    top = 255 if bit_depth == 8 else 65535
    array = RNG.integers(0, top + 1, (height, width, channels))
    if channels in (2, 4):
        array[..., -1] = top if opaque else RNG.integers(0, top, (height, width))  # alpha below full somewhere
    return array.astype(np.uint8 if bit_depth == 8 else np.uint16)


def as_ints(pixels: torch.Tensor, bit_depth: int) -> np.ndarray:
    top = 255 if bit_depth == 8 else 65535
    return np.rint(pixels.numpy().astype(np.float64) * top).astype(np.int64)


def png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) straight from the IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return data[24], data[25]


# ------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("channels,names,colour_type", [(1, "L", 0), (2, "LA", 4), (3, "RGB", 2), (4, "RGBA", 6)])
def test_write_png_read_image_round_trip(tmp_path, bit_depth, channels, names, colour_type):
    array = random_image(9, 11, channels, bit_depth)
    top = 255 if bit_depth == 8 else 65535
    path = tmp_path / "x.png"
    write_png(path, torch.from_numpy(array.astype(np.float64) / top).float(), bit_depth)
    assert png_header(path) == (bit_depth, colour_type)
    image = read_image(str(path))
    assert image.bit_depth == bit_depth
    assert image.channel_names == names
    assert image.pixels.shape == (9, 11, channels)
    assert image.pixels.dtype == torch.float32
    np.testing.assert_array_equal(as_ints(image.pixels, bit_depth), array)
    if channels in (2, 4):
        assert any("alpha" in note and "fitted" in note for note in image.notes)


def test_gray8_values_exact(tmp_path):
    array = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(array).save(tmp_path / "g.png")
    image = read_image(str(tmp_path / "g.png"))
    assert image.pixels.shape == (16, 16, 1) and image.bit_depth == 8
    np.testing.assert_array_equal(image.pixels[:, :, 0].numpy(), array.astype(np.float32) / 255.0)


def test_gray16_via_pillow(tmp_path):
    array = random_image(10, 12, 1, 16)[:, :, 0]
    Image.fromarray(array).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    image = read_image(str(tmp_path / "g16.png"))
    assert image.bit_depth == 16 and image.channel_names == "L"
    np.testing.assert_array_equal(as_ints(image.pixels, 16)[:, :, 0], array)
    # Write it back at 16 bits: Pillow reads the same samples.
    write_png(tmp_path / "back.png", image.pixels, 16)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "back.png")), array)


def test_rgb16_keeps_every_bit(tmp_path):
    array = random_image(7, 9, 3, 16)
    with open(tmp_path / "rgb16.png", "wb") as handle:
        png.Writer(9, 7, greyscale=False, bitdepth=16).write(handle, array.reshape(7, 27))
    image = read_image(str(tmp_path / "rgb16.png"))
    assert image.bit_depth == 16 and image.channel_names == "RGB"
    np.testing.assert_array_equal(as_ints(image.pixels, 16), array)
    # And write_png keeps all 16 bits of a colour image (Pillow alone would narrow them).
    write_png(tmp_path / "back.png", image.pixels, 16)
    width, height, rows, info = png.Reader(filename=str(tmp_path / "back.png")).asDirect()
    assert info["bitdepth"] == 16 and info["planes"] == 3
    np.testing.assert_array_equal(np.vstack([np.asarray(r) for r in rows]).reshape(7, 9, 3), array)


def test_rgba_alpha_kept_dropped_or_opaque(tmp_path):
    translucent = random_image(6, 8, 4, 8)
    Image.fromarray(translucent).save(tmp_path / "t.png")
    kept = read_image(str(tmp_path / "t.png"))
    assert kept.pixels.shape[2] == 4 and kept.channel_names == "RGBA"
    np.testing.assert_array_equal(as_ints(kept.pixels, 8), translucent)

    dropped = read_image(str(tmp_path / "t.png"), alpha="drop")
    assert dropped.pixels.shape[2] == 3 and dropped.channel_names == "RGB"
    np.testing.assert_array_equal(as_ints(dropped.pixels, 8), translucent[:, :, :3])
    assert any("--alpha drop" in note for note in dropped.notes)

    opaque = random_image(6, 8, 4, 8, opaque=True)
    Image.fromarray(opaque).save(tmp_path / "o.png")
    image = read_image(str(tmp_path / "o.png"))
    assert image.pixels.shape[2] == 3 and image.channel_names == "RGB"
    np.testing.assert_array_equal(as_ints(image.pixels, 8), opaque[:, :, :3])
    assert any("opaque" in note for note in image.notes)


def test_gray_alpha_opaque_dropped(tmp_path):
    la = random_image(5, 5, 2, 8, opaque=True)
    Image.fromarray(la).save(tmp_path / "la.png")
    image = read_image(str(tmp_path / "la.png"))
    assert image.channel_names == "L" and image.pixels.shape[2] == 1


def test_palette_png_expanded(tmp_path):
    rgb = random_image(8, 10, 3, 8)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    image = read_image(str(tmp_path / "p.png"))
    assert image.channel_names == "RGB" and image.bit_depth == 8
    np.testing.assert_array_equal(as_ints(image.pixels, 8), np.asarray(palette.convert("RGB")))
    assert any("palette" in note for note in image.notes)


def test_palette_png_with_transparency_becomes_rgba(tmp_path):
    rgb = random_image(8, 10, 3, 8)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.save(tmp_path / "pt.png", transparency=0)
    image = read_image(str(tmp_path / "pt.png"))
    assert image.channel_names == "RGBA"
    np.testing.assert_array_equal(as_ints(image.pixels, 8), np.asarray(Image.open(tmp_path / "pt.png").convert("RGBA")))


@pytest.mark.parametrize("channels", [1, 3])
def test_tiff16_via_tifffile(tmp_path, channels):
    array = random_image(6, 7, channels, 16)
    tifffile.imwrite(tmp_path / "x.tif", array[:, :, 0] if channels == 1 else array)
    image = read_image(str(tmp_path / "x.tif"))
    assert image.bit_depth == 16 and image.pixels.shape == (6, 7, channels)
    np.testing.assert_array_equal(as_ints(image.pixels, 16), array)


def test_float_tiff(tmp_path):
    array = RNG.random((4, 5)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", array)
    image = read_image(str(tmp_path / "f.tif"))
    assert image.bit_depth == 16
    np.testing.assert_array_equal(image.pixels[:, :, 0].numpy(), array)
    tifffile.imwrite(tmp_path / "bad.tif", array * 3)
    with pytest.raises(UserError):
        read_image(str(tmp_path / "bad.tif"))


@pytest.mark.parametrize("mode", ["CMYK", "P", "LAB", "YCbCr"])
def test_tiff_colour_spaces_are_converted_to_rgb(tmp_path, mode):
    # tifffile hands back these samples unconverted (CMYK as RGBA, palette indices as gray, ...): Pillow converts.
    Image.fromarray(random_image(4, 5, 3, 8)).convert(mode).save(tmp_path / "x.tif")
    image = read_image(str(tmp_path / "x.tif"))
    assert image.channel_names == "RGB" and image.bit_depth == 8
    np.testing.assert_array_equal(as_ints(image.pixels, 8), np.asarray(Image.open(tmp_path / "x.tif").convert("RGB")))


def test_tiff_gray_with_white_as_zero_is_inverted(tmp_path):
    array = random_image(4, 5, 1, 8)[:, :, 0]
    tifffile.imwrite(tmp_path / "w.tif", array, photometric="miniswhite")
    image = read_image(str(tmp_path / "w.tif"))
    np.testing.assert_array_equal(as_ints(image.pixels, 8)[:, :, 0], 255 - array)


def test_tiff_planes_stored_apart_become_channels(tmp_path):
    array = random_image(4, 5, 3, 16)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(array, 2, 0), photometric="rgb", planarconfig="separate")
    image = read_image(str(tmp_path / "planar.tif"))
    assert image.channel_names == "RGB"
    np.testing.assert_array_equal(as_ints(image.pixels, 16), array)


def test_tiff_compressions_tifffile_cannot_decode_are_read_by_pillow(tmp_path):
    rgb = random_image(8, 8, 3, 8)
    Image.fromarray(rgb).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(as_ints(read_image(str(tmp_path / "lzw.tif")).pixels, 8), rgb)
    Image.fromarray(rgb).save(tmp_path / "jpeg.tif", compression="jpeg", quality=95)
    image = read_image(str(tmp_path / "jpeg.tif"))
    assert image.pixels.shape == (8, 8, 3) and image.bit_depth == 8


def tiff_with_tag(path: Path, array: np.ndarray, tag: str, value: int, **options) -> Path:
    """A TIFF of ``array`` whose ``tag`` then claims ``value``: a compression or colour space without the data
    for it, which is as far as the reader looks before refusing."""
    tifffile.imwrite(path, array, **options)
    with tifffile.TiffFile(path, mode="r+") as tiff:
        tiff.pages[0].tags[tag].overwrite(value)
    return path


@pytest.mark.parametrize("make,words", [
    # 16-bit colour in a compression only Pillow decodes: Pillow would narrow it to 8 bits.
    (lambda folder: tiff_with_tag(folder / "lzw16.tif", random_image(4, 5, 3, 16), "Compression", 5),
     ["LZW compression", "16-bit"]),
    (lambda folder: tifffile.imwrite(folder / "cmyk16.tif", random_image(4, 5, 4, 16), photometric="separated")
     or folder / "cmyk16.tif", ["SEPARATED", "16-bit"]),
    # ICC L*a*b*: neither library converts it.
    (lambda folder: tiff_with_tag(folder / "icclab.tif", random_image(4, 5, 3, 8), "PhotometricInterpretation", 9),
     ["ICCLAB", "Pillow cannot read it"]),
])
def test_tiffs_neither_library_reads_faithfully_are_refused_in_one_line(tmp_path, make, words):
    path = make(tmp_path)
    with pytest.raises(UserError) as info:
        read_image(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert all(word in message for word in words), message


@pytest.mark.filterwarnings("error")  # and say nothing else: an all-NaN image must not warn on the way
@pytest.mark.parametrize("array", [np.full((3, 3), 2.0, np.float32), np.full((3, 3), np.nan, np.float32),
                                   np.zeros((3, 3), np.int16)])
def test_sample_errors_name_the_file(tmp_path, array):
    tifffile.imwrite(tmp_path / "odd.tif", array)
    with pytest.raises(UserError, match=f"^{tmp_path / 'odd.tif'}: "):
        read_image(str(tmp_path / "odd.tif"))


@pytest.mark.parametrize("suffix,options", [(".bmp", {}), (".webp", {"lossless": True})])
def test_lossless_formats_exact(tmp_path, suffix, options):
    rgb = random_image(8, 9, 3, 8)
    Image.fromarray(rgb).save(tmp_path / f"x{suffix}", **options)
    image = read_image(str(tmp_path / f"x{suffix}"))
    assert image.channel_names == "RGB" and image.bit_depth == 8
    np.testing.assert_array_equal(as_ints(image.pixels, 8), rgb)


def test_jpeg_readable(tmp_path):
    y, x = np.mgrid[0:32, 0:40]
    smooth = np.stack([x * 6, y * 7, (x + y) * 3], axis=-1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "x.jpg", quality=95)
    image = read_image(str(tmp_path / "x.jpg"))
    assert image.pixels.shape == (32, 40, 3) and image.bit_depth == 8
    assert np.abs(image.pixels.numpy() - smooth / 255.0).mean() < 0.02


def save_with_orientation(path: Path, array: np.ndarray, orientation: int) -> None:
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_photos_are_turned_upright_as_their_exif_orientation_says(tmp_path, orientation):
    """A camera stores the sensor's pixels and an orientation tag; we read the picture a viewer shows, the one
    Pillow's own exif_transpose gives, and the report says so."""
    stored = random_image(5, 8, 3, 8)
    save_with_orientation(tmp_path / "photo.png", stored, orientation)
    with Image.open(tmp_path / "photo.png") as image:
        shown = np.asarray(ImageOps.exif_transpose(image))
    image = read_image(str(tmp_path / "photo.png"))
    np.testing.assert_array_equal(as_ints(image.pixels, 8), shown)
    assert image.pixels.shape[:2] == ((8, 5) if orientation >= 5 else (5, 8))
    assert any("EXIF orientation" in note for note in image.notes) == (orientation != 1)
    assert pixel_size(tmp_path / "photo.png") == shown.shape[1::-1]  # (width, height) as shown


def test_a_large_turned_photo_reads_as_the_same_picture_stored_upright(tmp_path):
    """A large photo is box-reduced while it is decoded, no further than still covers --crop, whose sides belong
    to the upright picture, not to the stored one: the result equals that of the upright picture saved without
    an orientation tag (here 1005x4000 stored, 4000x1005 upright; both sides whole multiples of the box, whose
    ragged edge would otherwise fall on opposite sides)."""
    stored = RNG.integers(0, 256, (1005, 4000), dtype=np.uint8)
    save_with_orientation(tmp_path / "turned.png", stored, 6)
    Image.fromarray(np.rot90(stored, -1)).save(tmp_path / "upright.png")
    turned, upright = (read_image(str(tmp_path / f"{name}.png"), shrink_to=10, cover=(8, 100))
                       for name in ("turned", "upright"))
    assert turned.pixels.shape == upright.pixels.shape and turned.height > turned.width >= 100
    torch.testing.assert_close(turned.pixels, upright.pixels, rtol=0, atol=1e-6)


def test_box_reduction_means_each_block_and_the_ragged_edges_over_what_they_hold():
    from inr_cli.media.images import _box_reduce

    pixels = np.random.default_rng(7).random((7, 10, 2)).astype(np.float32)
    reduced = _box_reduce(pixels, 3)
    assert reduced.shape == (3, 4, 2) and reduced.dtype == np.float32
    for row, top in enumerate(range(0, 7, 3)):
        for col, left in enumerate(range(0, 10, 3)):
            block = pixels[top:top + 3, left:left + 3]  # the last row of blocks is 1 high, the last column 1 wide
            np.testing.assert_allclose(reduced[row, col], block.mean(axis=(0, 1)), rtol=1e-6)


def test_a_crop_of_a_large_photo_is_box_reduced_before_its_resize(monkeypatch):
    """--crop alone scales a large photo down to cover the crop as --resize scales one, box-reduced first (a
    direct resize of 12 MP to cover 256x256 took 3.1 s in its anti-aliasing filter), so the resize sees a few
    times the crop's pixels, not the photo's. A small photo takes the direct resize as before."""
    from inr_cli.media import images as images_module

    from skimage import data as samples

    photo = np.asarray(Image.fromarray(samples.astronaut()).resize((2400, 1800), Image.BICUBIC), np.float32) / 255
    resized = []
    resize = images_module.resize_pixels
    monkeypatch.setattr(images_module, "resize_pixels", lambda p, shape: resized.append(p.shape) or resize(p, shape))
    large = LoadedImage(torch.from_numpy(photo), 8, "RGB")
    cropped = crop_to(large, 64, 64).pixels.numpy()
    assert resized[0][0] * resized[0][1] < 200_000  # 1800x2400 reduced by 9 in each direction
    np.testing.assert_array_equal(cropped, shrink_to_longest_side(photo, 85)[:, 10:74])  # --resize's scaling
    resized.clear()
    small = LoadedImage(torch.from_numpy(photo[::10, ::10].copy()), 8, "RGB")
    np.testing.assert_array_equal(crop_to(small, 64, 64).pixels.numpy(), resize(photo[::10, ::10], (64, 85))[:, 10:74])
    assert resized == [(180, 240, 3)]


def test_skimage_sample():
    image = read_image("skimage:camera")
    assert image.pixels.shape == (512, 512, 1) and image.bit_depth == 8
    with pytest.raises(UserError, match="camera"):
        read_image("skimage:no-such-sample")


def test_resize_longest_side_never_upscales():
    image = read_image("skimage:astronaut")
    small = resize_longest_side(image, 48)
    assert small.pixels.shape == (48, 48, 3)
    assert any("resized" in note for note in small.notes)
    assert float(small.pixels.min()) >= 0 and float(small.pixels.max()) <= 1
    assert resize_longest_side(small, 100) is small


def test_quantize_rounds_to_nearest():
    pixels = torch.tensor([0.0, 0.4 / 255, 0.6 / 255, 0.5, 1.0, 1.5, -0.2])[:, None, None]
    assert quantize(pixels, 8).ravel().tolist() == [0, 0, 1, 128, 255, 255, 0]
    assert quantize(pixels, 16).ravel().tolist() == [0, 103, 154, 32768, 65535, 65535, 0]


# ------------------------------------------------------------------------------------------ bad files


def truncated_png(tmp_path: Path) -> Path:
    path = tmp_path / "truncated.png"
    Image.fromarray(random_image(32, 32, 3, 8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_png16(tmp_path: Path) -> Path:
    path = tmp_path / "truncated16.png"
    array = random_image(16, 16, 3, 16)
    with open(path, "wb") as handle:
        png.Writer(16, 16, greyscale=False, bitdepth=16).write(handle, array.reshape(16, 48))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def damaged_png16(tmp_path: Path) -> Path:
    """A 16-bit colour PNG whose pixel data changed after its chunk's checksum was taken: still a valid zlib
    stream of the right length, so only the checksum tells (a decoder that skips it shows the changed picture)."""
    path = tmp_path / "damaged16.png"
    array = random_image(16, 16, 3, 16)
    with open(path, "wb") as handle:
        png.Writer(16, 16, greyscale=False, bitdepth=16).write(handle, array.reshape(16, 48))
    data = path.read_bytes()
    start = data.index(b"IDAT") - 4  # the chunk's length field
    length = int.from_bytes(data[start:start + 4], "big")
    rows = bytearray(zlib.decompress(data[start + 8:start + 8 + length]))
    rows[1 + 5] ^= 0x01  # a sample byte of the first row (its byte 0 is the row's filter type)
    body = zlib.compress(bytes(rows))
    old_crc = data[start + 8 + length:start + 12 + length]
    path.write_bytes(data[:start] + len(body).to_bytes(4, "big") + b"IDAT" + body + old_crc
                     + data[start + 12 + length:])
    return path


def truncated_tiff(tmp_path: Path) -> Path:
    path = tmp_path / "truncated.tif"
    tifffile.imwrite(path, random_image(16, 16, 1, 16)[:, :, 0])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def text_png(tmp_path: Path) -> Path:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")
    return path


def empty_png(tmp_path: Path) -> Path:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    return path


def a_directory(tmp_path: Path) -> Path:
    path = tmp_path / "folder.png"
    path.mkdir()
    return path


def missing(tmp_path: Path) -> Path:
    return tmp_path / "missing.png"


@pytest.mark.parametrize("make", [truncated_png, truncated_png16, damaged_png16, truncated_tiff, text_png, empty_png,
                                  a_directory, missing])
def test_bad_files_raise_one_line_user_error(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(UserError) as info:
        read_image(str(path))
    message = str(info.value)
    assert message and "\n" not in message
    assert str(path) in message


def test_unknown_alpha_mode(tmp_path):
    Image.fromarray(random_image(4, 4, 4, 8)).save(tmp_path / "a.png")
    with pytest.raises(UserError, match="alpha"):
        read_image(str(tmp_path / "a.png"), alpha="sometimes")


def test_a_folder_that_cannot_be_listed_is_one_line_naming_it(tmp_path, monkeypatch):
    # Simulated: chmod 000 does not stop root, whom the tests may run as.
    folder = tmp_path / "locked"
    folder.mkdir()

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(UserError) as info:
        expand_inputs([str(folder)], None, tuple(IMAGE_SUFFIXES))
    assert str(info.value) == f"{folder}: unreadable folder (Permission denied)"


def test_a_folder_of_images_takes_its_gifs_as_a_gif_named_alone_is_read(tmp_path):
    """`inr fit image FOLDER` (and `inr compare`) fit the folder's GIFs, which a GIF named directly is (its first
    frame): a folder left them out, and one of GIFs alone was refused as holding nothing to fit."""
    from inr_cli.modalities.image import IMAGE

    frames = [Image.fromarray(random_image(5, 6, 1, 8)[:, :, 0]) for _ in range(2)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "still.png")
    (tmp_path / "notes.txt").write_text("not an image")
    assert expand_inputs([str(tmp_path)], None, IMAGE.folder_suffixes) == [str(tmp_path / "anim.gif"),
                                                                           str(tmp_path / "still.png")]
    assert "file has 2 frames; using the first" in read_image(str(tmp_path / "anim.gif")).notes
