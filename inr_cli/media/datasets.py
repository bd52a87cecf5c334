"""Image collections for the JIIO decoder, read without downloads: image files, a folder of images, MNIST-format
IDX files (gzipped or not), or .npz/.npy arrays. Every source comes out the same way: a float tensor (N, C, S, S) in
[-1, 1], each image resized (shorter side to S, by the resize images and video frames use) and centre-cropped to
S x S.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from inr_cli.files import first_line
from inr_cli.media.images import IMAGE_SUFFIXES, cover_and_crop, read_image
from inr_core.errors import UserError
from training.jiio.channels import match_channels

IDX_UNSIGNED_BYTE = 0x08


def _square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) floats in [0, 1] -> (size, size, C): shorter side resized to ``size``, then centre-cropped."""
    return np.clip(cover_and_crop(image, size, size, upscale=True), 0.0, 1.0)


def _to_batch(images, count: int, size: int, source: str, mix_gray: bool = False) -> torch.Tensor:
    """Square ``count`` images (an iterable, consumed one at a time) into one preallocated (N, C, S, S) tensor, so
    a large collection never exists twice, or at its original resolution, in memory. ``mix_gray``: gray images
    among colour ones are repeated to three channels (folders); otherwise mixing is an error."""
    if count == 0:
        raise UserError(f"{source}: no images")
    batch = None
    for i, image in enumerate(images):
        square = torch.from_numpy(np.ascontiguousarray(_square(image, size), dtype=np.float32))
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
    if len(data) != int(np.prod(shape)):
        raise UserError(f"{path}: IDX file holds {len(data)} bytes, its header promises {int(np.prod(shape))}")
    if dims != dims_expected:
        needed = "images need 3 (count, height, width)" if dims_expected == 3 else "labels need 1 (count)"
        raise UserError(f"{path}: IDX file has {dims} dimensions; {needed}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _array_images(array: np.ndarray, source: str) -> np.ndarray:
    """Check an image array and bring it to (N, H, W, C); values are scaled to [0, 1] image by image later."""
    if array.ndim == 3:
        array = array[..., None]
    elif array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[3] not in (1, 3):
        array = array.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    if array.ndim != 4 or array.shape[3] not in (1, 3):
        raise UserError(f"{source}: expected images shaped (N, H, W), (N, H, W, C) or (N, C, H, W), got {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise UserError(f"{source}: floating-point images must lie in [0, 1]")
    elif array.dtype != np.uint8:
        raise UserError(f"{source}: unsupported array type {array.dtype}; use uint8 or floats in [0, 1]")
    return array


def _as_unit_floats(array: np.ndarray):
    """One image at a time as float32 in [0, 1]: the whole collection is never converted at once."""
    scale = 1.0 / 255.0 if array.dtype == np.uint8 else 1.0
    return (image.astype(np.float32) * scale for image in array)


def read_npz(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: unreadable array file ({first_line(error)})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        keys = list(loaded.keys())
        key = "images" if "images" in keys else (keys[0] if len(keys) == 1 else None)
        if key is None:
            raise UserError(f"{path}: .npz holds {keys}; name the image array 'images'")
        loaded = loaded[key]
    return _array_images(loaded, str(path))


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
        images = _array_images(_skimage_collection(source.split(":", 1)[1], source)[:limit], source)
        return _to_batch(_as_unit_floats(images), len(images), size, source)
    path = Path(source)
    if not path.exists():
        raise UserError(f"{source}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:  # a folder of images, or one image file
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit] if path.is_dir() \
            else [path]
        images = (read_image(str(p), alpha="drop").pixels.numpy() for p in files)
        return _to_batch(images, len(files), size, source, mix_gray=True)
    if path.suffix.lower() in (".npz", ".npy"):
        images = read_npz(path)[:limit]
    elif path.name.endswith("-ubyte") or path.name.endswith("-ubyte.gz") or ".idx" in path.name:
        images = _array_images(read_idx(path)[:limit], source)
    else:
        raise UserError(f"{source}: give an image file, a folder of images, an IDX file (*-ubyte[.gz]) or an "
                        ".npz/.npy array")
    return _to_batch(_as_unit_floats(images), len(images), size, source)
