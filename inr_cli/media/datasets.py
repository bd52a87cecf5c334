"""Image collections for the JIIO decoder, read without downloads: image files, a folder of images, MNIST-format
IDX files (gzipped or not), or .npz/.npy arrays. Every source comes out the same way: a float tensor (N, C, S, S) in
[-1, 1], each image resized (shorter side to S, by the resize images and video frames use) and centre-cropped to
S x S.

Every image is checked where it is read: a damaged file, an array of Python objects, images without pixels, and
NaN or infinite values are each one line, so nothing downstream (training, restoring, attacking) sees them.
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inr_cli.files import first_line
from inr_cli.media.images import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, SIDE_SWAPPING_ORIENTATIONS, cover_and_crop,
                                  read_image, stated_orientation)
from inr_core.errors import UserError
from training.jiio.channels import match_channels

IDX_UNSIGNED_BYTE = 0x08
# Integer arrays taken as images, scaled by their type's range (as 8- and 16-bit PNGs are); wider integers are
# ambiguous (0..255 or 0..65535?) and are refused.
IMAGE_INTEGER_TYPES = (np.uint8, np.uint16)


def _square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) floats in [0, 1] -> (size, size, C): shorter side resized to ``size``, then centre-cropped (an
    (N, H, W, C) stack of same-sized images: each image so)."""
    return np.clip(cover_and_crop(image, size, size, upscale=True), 0.0, 1.0)


# Images of an array squared at once (one stacked resize): bounds that resize's memory to a few hundred MB.
STACK_CHUNK = 4096


def _to_batch(squares, count: int, size: int, source: str, mix_gray: bool = False) -> torch.Tensor:
    """Gather ``count`` squared images (an iterable, consumed one at a time) into one preallocated (N, C, S, S)
    tensor, so a large collection never exists twice, or at its original resolution, in memory. ``mix_gray``:
    gray images among colour ones are repeated to three channels (folders); otherwise mixing is an error."""
    if count == 0:
        raise UserError(f"{source}: no images")
    batch = None
    for i, square in enumerate(squares):
        square = torch.from_numpy(np.ascontiguousarray(square, dtype=np.float32))
        if batch is None:
            batch = torch.empty((count, size, size, square.shape[2]), dtype=torch.float32)
        if square.shape[2] != batch.shape[3]:
            if not mix_gray:
                raise UserError(f"{source}: images mix {sorted({square.shape[2], batch.shape[3]})} channels; "
                                "use all gray or all RGB")
            # A gray image among colour ones, or the first colour image after gray ones: everything becomes RGB.
            square, batch = match_channels(square, 3, dim=2), match_channels(batch, 3, dim=3)
        batch[i] = square
    return batch.permute(0, 3, 1, 2).contiguous() * 2.0 - 1.0


def pixel_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from an image file's header, as shown (turned upright as its EXIF orientation says, as
    images are read), or None where Pillow cannot read one."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = stated_orientation(image) in SIDE_SWAPPING_ORIENTATIONS
    except (OSError, ValueError):
        return None
    return (height, width) if turned else (width, height)


def _read_image_file(path: Path, side: int) -> np.ndarray:
    """One image file as (H, W, C) in [0, 1], alpha dropped, scaled down no further than still covering a ``side``
    square. A large photo is reduced while it is read, as `inr fit image --resize` reads one (a JPEG decoded at a
    reduced scale, then box-reduced): squaring a 12 MP JPEG to 32 px from full size took 12 s, 10 of them in the
    anti-aliasing filter's Gaussian over 36 M values. Images of up to 4 MP take the one resize they took before.
    The image reader's own size guard would name `inr fit`'s --max-pixels, which no command reading collections
    has: the same limit is checked here first, from the header."""
    size = pixel_size(path)
    if size is not None and size[0] * size[1] > DEFAULT_MAX_PIXELS:
        raise UserError(f"{path}: {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, more than the "
                        f"{DEFAULT_MAX_PIXELS:,} an image in a collection may have; scale it down first")
    return read_image(str(path), alpha="drop", shrink_to=side, cover=(side, side)).pixels.numpy()


def read_idx(path: Path, dims_expected: int = 3) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST and Fashion-MNIST images, or with ``dims_expected`` 1 their labels),
    gzipped or not, as (N, H, W) (or (N,)) uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            header = handle.read(4)
            if len(header) != 4 or header[:2] != b"\x00\x00":
                raise UserError(f"{path}: not an IDX file (bad magic number)")
            if header[2] != IDX_UNSIGNED_BYTE:
                raise UserError(f"{path}: IDX data type 0x{header[2]:02x} is not unsigned bytes")
            dims = header[3]
            shape = struct.unpack(f">{dims}I", handle.read(4 * dims))
            data = handle.read()
    except (OSError, EOFError, struct.error) as error:
        raise UserError(f"{path}: unreadable IDX file ({first_line(error)})") from None
    promised = math.prod(shape)  # Python integers: a damaged header's sizes can multiply past 64 bits
    if len(data) != promised:
        raise UserError(f"{path}: IDX file holds {len(data)} bytes, its header promises {promised}")
    if dims != dims_expected:
        needed = "images need 3 (count, height, width)" if dims_expected == 3 else "labels need 1 (count)"
        raise UserError(f"{path}: IDX file has {dims} dimensions; {needed}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


ACCEPTED_LAYOUTS = "(N, H, W) gray, (N, H, W, C) or (N, C, H, W) with C 1 or 3"


def _array_images(array: np.ndarray, source: str) -> np.ndarray:
    """Check an image array and bring it to (N, H, W, C); integer values are scaled to [0, 1] later by their type's
    maximum (255, 65535), floats taken as they are. A 3-D array whose last axis is 1, 3 or 4 is refused: one image
    (H, W, C) or N gray images that many pixels wide, it cannot be told which."""
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        raise UserError(f"{source}: shape {array.shape} is ambiguous (one {array.shape[0]}x{array.shape[1]} image "
                        f"with {array.shape[2]} channels, or {array.shape[0]} gray images {array.shape[2]} px wide); "
                        f"save images as {ACCEPTED_LAYOUTS} (one image: a[None])")
    if array.ndim == 3:
        array = array[..., None]
    elif array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[3] not in (1, 3):
        array = array.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    if array.ndim != 4 or array.shape[3] not in (1, 3):
        raise UserError(f"{source}: expected images shaped {ACCEPTED_LAYOUTS}, got {array.shape}")
    if 0 in array.shape[1:3]:
        raise UserError(f"{source}: images are {array.shape[1]}x{array.shape[2]} pixels; they need at least 1x1")
    if np.issubdtype(array.dtype, np.floating):
        _refuse_non_finite(array, source)
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise UserError(f"{source}: floating-point images must lie in [0, 1]")
    elif array.dtype not in IMAGE_INTEGER_TYPES:
        raise UserError(f"{source}: unsupported array type {array.dtype}; use uint8, uint16 or floats in [0, 1]")
    elif array.dtype == np.uint16 and array.size and array.max() <= 255:
        # uint16 is scaled by 65,535: 8-bit values kept in a wider type would train and score as near-black images.
        raise UserError(f"{source}: uint16 images whose values all lie in 0-255 would read as near-black (uint16 is "
                        "scaled by 65535); save 8-bit images as uint8, or any images as floats in [0, 1]")
    return array


def _refuse_non_finite(array: np.ndarray, source: str) -> None:
    """NaN or infinite values would make training diverge, restorations black and attacks meaningless."""
    bad = ~np.isfinite(array).all(axis=tuple(range(1, array.ndim)))
    if bad.any():
        count = int(bad.sum())
        raise UserError(f"{source}: {count} of {len(array)} images {'holds' if count == 1 else 'hold'} NaN or "
                        f"infinite values (the first is image {int(bad.argmax())}); replace or drop them")


def _squared_array(array: np.ndarray, size: int):
    """Each image of a same-sized (N, H, W, C) array as float32 in [0, 1], squared as :func:`_square` squares it
    alone, a chunk at a time: the whole collection is never converted at once, and each chunk is resized by one
    stacked resize (60,000 Fashion-MNIST images to 64 px: about a second, against minutes image by image)."""
    scale = 1.0 / np.iinfo(array.dtype).max if np.issubdtype(array.dtype, np.integer) else 1.0
    for start in range(0, len(array), STACK_CHUNK):
        yield from _square(array[start:start + STACK_CHUNK].astype(np.float32) * scale, size)


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz by name (every one read now, so that a damaged member fails here), or an .npy's one
    array under the name "". Nothing is unpickled: that could run code from the file."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return {"": loaded}
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as error:
        raise UserError(f"{path}: unreadable array file ({_array_file_problem(error)})") from None


def _array_file_problem(error: Exception) -> str:
    """What numpy found wrong, in our words where its own would advise loading with allow_pickle (running code)."""
    text = first_line(error)
    if "Object arrays" in text:
        return "it holds arrays of Python objects, which are never unpickled; save plain numeric arrays"
    if "pickle" in text:  # numpy takes what is neither .npy nor .npz data for a pickle
        return "not .npy or .npz data"
    return text


def read_npz(path: Path) -> np.ndarray:
    """The image array of an .npy, or of an .npz (named 'images', or its only array), as stored."""
    arrays = read_arrays(path)
    key = "images" if "images" in arrays else (next(iter(arrays)) if len(arrays) == 1 else None)
    if key is None:
        raise UserError(f"{path}: .npz holds {list(arrays)}; name the image array 'images'")
    return arrays[key]


def array_batch(array: np.ndarray, size: int, source: str, limit: int | None = None) -> torch.Tensor:
    """An image array, checked whole, as the batch :func:`load_images` gives of its first ``limit`` images."""
    images = _array_images(array, source)[:limit]
    return _to_batch(_squared_array(images, size), len(images), size, source)


# Collections that ship inside scikit-image (no download): name -> (loader attribute, how many to keep).
SKIMAGE_COLLECTIONS = {"lfw_subset": ("lfw_subset", None), "lfw_faces": ("lfw_subset", 100)}


def _skimage_collection(name: str, source: str) -> np.ndarray:
    if name not in SKIMAGE_COLLECTIONS:
        raise UserError(f"{source}: unknown image collection; scikit-image ships {', '.join(SKIMAGE_COLLECTIONS)} "
                        "(lfw_faces: the 100 face crops of lfw_subset, 25 x 25)")
    from skimage import data

    attribute, keep = SKIMAGE_COLLECTIONS[name]
    return getattr(data, attribute)()[:keep]


def load_images(source: str, size: int, limit: int | None = None) -> torch.Tensor:
    """Images from an image file, a folder, an IDX file, an .npz/.npy file or skimage:lfw_subset / skimage:lfw_faces as
    (N, C, size, size) in [-1, 1]."""
    if source.startswith("skimage:"):
        return array_batch(_skimage_collection(source.split(":", 1)[1], source)[:limit], size, source)
    path = Path(source)
    if not path.exists():
        raise UserError(f"{source}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:  # a folder of images, or one image file
        files = _image_files(path, limit)
        return _to_batch((_square(_read_image_file(p, size), size) for p in files), len(files), size, source,
                         mix_gray=True)
    return array_batch(_stored_array(path, source), size, source, limit)


def _image_files(path: Path, limit: int | None) -> list[Path]:
    """A folder's image files in name order (its first ``limit``), or the image file itself."""
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]


def _stored_array(path: Path, source: str) -> np.ndarray:
    """The image array of an .npz/.npy or IDX file, as stored."""
    if path.suffix.lower() in (".npz", ".npy"):
        return read_npz(path)
    if path.name.endswith("-ubyte") or path.name.endswith("-ubyte.gz") or ".idx" in path.name:
        return read_idx(path)
    raise UserError(f"{source}: give an image file, a folder of images, an IDX file (*-ubyte[.gz]) or an "
                    ".npz/.npy array")


def image_sizes(source: str, limit: int | None = None) -> list[tuple[str, tuple[int, int] | None]]:
    """(name, (width, height)) of each image :func:`load_images` reads from ``source`` (its first ``limit``), as
    stored, before any resize: from the headers of image files (a folder's too), or an array's shape (name:
    "image K of SOURCE"); the size is None where a header cannot be read (reading the image will say why)."""
    if source.startswith("skimage:"):
        array = _array_images(_skimage_collection(source.split(":", 1)[1], source), source)[:limit]
    else:
        path = Path(source)
        if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
            return [(str(p), pixel_size(p)) for p in _image_files(path, limit)]
        array = _array_images(_stored_array(path, source), source)[:limit]
    return [(f"image {k} of {source}", (int(array.shape[2]), int(array.shape[1]))) for k in range(len(array))]
