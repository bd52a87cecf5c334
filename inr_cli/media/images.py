"""Reading and writing images: Pillow for the common formats; FFmpeg, pypng and tifffile where Pillow drops bits.

Pillow reads 16-bit grayscale natively but narrows 16-bit colour PNGs to 8 bits, so those are read by
:mod:`inr_cli.media.png16` (FFmpeg, pypng where FFmpeg refuses) and written by pypng;
gray and RGB TIFFs go through tifffile (shipped with scikit-image), which keeps every sample format, and the
TIFFs it cannot read as they are meant to be seen (other colour spaces, compressions it has no codec for) through
Pillow, where Pillow reads them without loss.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image, UnidentifiedImageError

from inr_cli.files import atomic_write_with, existing_file, first_line
from inr_cli.media.limits import library_warnings_as_notes, refuse_if_over
from inr_cli.media.png16 import read_png16
from inr_core.errors import InvalidSetting, UserError

# Pillow's own decompression-bomb guard warns (raw, on stderr) or fails at a fixed size; every image read here is
# checked against --max-pixels from its header instead, before anything is decoded.
Image.MAX_IMAGE_PIXELS = None

# Photos that ship inside scikit-image, addressable as "skimage:NAME" (no download needed).
SKIMAGE_SAMPLES = ("camera", "astronaut", "coffee", "chelsea", "text", "moon", "coins", "page", "rocket",
                   "brick", "grass", "gravel", "logo", "retina", "hubble_deep_field", "immunohistochemistry",
                   "microaneurysms", "clock", "cat")
DEFAULT_IMAGE = "skimage:camera"
ALPHA_MODES = ("keep", "drop")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The file types read as images wherever a folder of them is given (fits, collections): as named one by one, an
# animated GIF gives its first frame (a video's frame folders leave GIFs out: FRAME_SUFFIXES in media/video.py).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
DEFAULT_MAX_PIXELS = 40_000_000  # decoded: 160 MB as 8-bit RGBA, 480 MB as the float RGB that is fitted
# Images above this many pixels that --resize shrinks by 2x or more are first reduced by whole-pixel box averages
# (in Pillow, on the decoded integers), so the anti-aliased resize only ever sees about twice the final size.
BOX_REDUCE_ABOVE = 4_000_000
# The photometric interpretations whose samples tifffile returns as they are meant to be seen: gray with 0 as black,
# and RGB. The others (palette indices, CMYK, YCbCr, CIELAB, gray with 0 as white, ...) need converting, which
# Pillow does.
TIFFFILE_PHOTOMETRICS = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)
# Cameras store a photo as the sensor read it and say in the EXIF orientation tag how to turn it for viewing;
# viewers (and Pillow's ImageOps.exif_transpose) honour it, so the picture a user means is the turned one.
EXIF_ORIENTATION_TAG = 0x0112
SIDE_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


@dataclass
class LoadedImage:
    pixels: torch.Tensor  # (H, W, C) float32 in [0, 1]
    bit_depth: int  # 8 or 16: the precision written back out
    channel_names: str  # "L", "LA", "RGB" or "RGBA"
    notes: list[str] = field(default_factory=list)  # what we did to the file's contents, for the report

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    def info(self) -> dict:
        return {"kind": "image", "height": self.height, "width": self.width, "channels": self.pixels.shape[2],
                "channel_names": self.channel_names, "bit_depth": self.bit_depth}


def _channel_names(channels: int) -> str:
    return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]


def _from_array(array: np.ndarray, source: str, notes: list[str]) -> tuple[np.ndarray, int]:
    """Integer or boolean array -> float in [0, 1] and its bit depth."""
    if array.dtype == bool:
        return array.astype(np.float32), 8
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0, 8
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0, 16
    if array.dtype in (np.int32, np.int64, np.uint32) and array.size and 0 <= array.min() and array.max() <= 65535:
        return array.astype(np.float32) / 65535.0, 16
    if np.issubdtype(array.dtype, np.floating):
        # NaN first: min and max of an all-NaN image would warn on the terminal before the error.
        if array.size and (np.isnan(array).any() or array.min() < 0.0 or array.max() > 1.0):
            raise UserError(f"{source}: floating-point image with values outside [0, 1] or NaN; save it as 8- or "
                            "16-bit")
        # No depth is promised here: what is written back is the caller's (a 16-bit PNG; a video's 8-bit frames).
        notes.append("floating-point samples read as [0, 1]")
        return array.astype(np.float32), 16
    raise UserError(f"{source}: unsupported sample type {array.dtype}; save the image as 8- or 16-bit PNG")


def _png_header(path: Path) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk, which follows the signature; None for
    anything else."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    if header[:8] != PNG_SIGNATURE or len(header) < 26:
        return None
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big"), header[24], header[25]


def _is_16bit_colour(png_header: tuple[int, int, int, int] | None) -> bool:
    # Colour types 2 = RGB, 4 = LA, 6 = RGBA: the ones Pillow would narrow to 8 bits.
    return png_header is not None and png_header[2] == 16 and png_header[3] in (2, 4, 6)


def _check_pixels(source: str, width: int, height: int, max_pixels: int) -> None:
    refuse_if_over(source, width * height, max_pixels, "--max-pixels", f"{width}x{height} = {width * height:,} pixels",
                   "scale the image down first")


def box_factor(height: int, width: int, longest: int | None) -> int:
    """The whole-pixel reduction a large image takes before being resized to ``longest``: as much as keeps at
    least twice the final size; 1 (none) for images of ordinary size, which the anti-aliased resize takes whole."""
    if longest is None or height * width <= BOX_REDUCE_ABOVE:
        return 1
    return max(1, max(height, width) // (2 * longest))


def covering_longest_side(full_size: tuple[int, int], longest: int | None,
                          cover: tuple[int, int] | None) -> int | None:
    """The longest side an image of ``full_size`` (height, width) is shrunk to: ``longest`` (``--resize``), but
    never so far that it stops covering ``cover`` (height, width; ``--crop``), which is cut from it afterwards.
    Without this, ``--resize 48 --crop 48`` would bring a 384x303 photo to 48x38 and then fail the 48x48 crop."""
    if longest is None or cover is None:
        return longest
    height, width = full_size
    needed = max(cover[0] / height, cover[1] / width) * max(height, width)
    return max(longest, math.ceil(needed - 1e-9))


def _scaled_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    scale = longest / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _read_with_pillow(path: Path, source: str, notes: list[str], max_pixels: int, shrink_to: int | None,
                      cover: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    """The file's pixels and its full (height, width). With ``shrink_to`` a large file comes back box-reduced (a
    JPEG is decoded at a reduced scale to begin with), never below twice ``shrink_to`` on its longest side (as
    :func:`covering_longest_side` raises it for ``cover``)."""
    with Image.open(path) as image:  # lazily: only the header is read until load()
        full_size = (image.height, image.width)
        shrink_to = covering_longest_side(full_size, shrink_to, cover)
        if getattr(image, "n_frames", 1) > 1:
            notes.append(f"file has {image.n_frames} frames; using the first")
        if image.format == "JPEG" and box_factor(image.height, image.width, shrink_to) > 1:
            image.draft(image.mode, _scaled_size(image.size, 2 * shrink_to))  # libjpeg's DCT scaling, 1/2 to 1/8
        _check_pixels(source, image.width, image.height, max_pixels)
        image.load()
        mode = image.mode
        if mode == "1":
            image = image.convert("L")
        elif mode == "P" or mode == "PA":
            has_alpha = mode == "PA" or "transparency" in image.info
            image = image.convert("RGBA" if has_alpha else "RGB")
            notes.append(f"palette image expanded to {image.mode}")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            image = image.convert("RGB")
            notes.append(f"{mode} converted to RGB")
        elif mode.startswith("I;16"):
            return np.asarray(image).astype(np.uint16), full_size
        elif mode == "La":
            image = image.convert("LA")
        elif mode == "RGBa":
            image = image.convert("RGBA")
        factor = box_factor(image.height, image.width, shrink_to)
        if factor > 1 and image.mode in ("L", "LA", "RGB", "RGBA"):
            image = image.reduce(factor)
        return np.asarray(image), full_size


def _tiff_name(value) -> str:
    return getattr(value, "name", str(value))  # one of tifffile's enums, or a number it has no name for


def _undecodable_by_tifffile(page: tifffile.TiffPage) -> str | None:
    """What keeps tifffile from decoding ``page`` (its LZW, JPEG, ... codecs come with the imagecodecs package,
    which is not installed), or None."""
    if page.compression not in tifffile.TIFF.DECOMPRESSORS:
        return f"{_tiff_name(page.compression)} compression"
    if page.predictor not in tifffile.TIFF.UNPREDICTORS:
        return f"{_tiff_name(page.predictor)} predictor"
    return None


def _pillow_reads_faithfully(page: tifffile.TiffPage) -> bool:
    """Pillow narrows samples above 8 bits to 8 (and leaves 16-bit gray with 0 as white uninverted); only a
    single channel of gray with 0 as black keeps its depth (as its modes I;16, I and F)."""
    return page.bitspersample <= 8 or (page.photometric == tifffile.PHOTOMETRIC.MINISBLACK
                                       and page.samplesperpixel == 1)


def _read_tiff(path: Path, source: str, notes: list[str], max_pixels: int, shrink_to: int | None,
               cover: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    """The first page's pixels and its full (height, width): through tifffile where it returns them as they are
    meant to be seen, at any depth; otherwise through Pillow, which converts other colour spaces to RGB (see
    :func:`_read_with_pillow`), where it reads them faithfully; otherwise refused."""
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        _check_pixels(source, page.imagewidth, page.imagelength, max_pixels)
        undecodable = _undecodable_by_tifffile(page)
        if page.photometric in TIFFFILE_PHOTOMETRICS and undecodable is None:
            array = tiff.asarray(key=0)
            if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and array.ndim == 3:
                array = np.moveaxis(array, 0, -1)  # stored one plane per sample: (samples, height, width)
            return array, array.shape[:2]
        why = (f"tifffile cannot decode its {undecodable} without the imagecodecs package" if undecodable else
               f"tifffile does not convert its photometric interpretation {_tiff_name(page.photometric)}")
        if not _pillow_reads_faithfully(page):
            raise UserError(f"{source}: {why}, and Pillow would not read its {page.bitspersample}-bit samples "
                            "faithfully; save it as uncompressed RGB or gray, or as a 16-bit PNG")
    try:
        return _read_with_pillow(path, source, notes, max_pixels, shrink_to, cover)
    except UnidentifiedImageError:
        raise UserError(f"{source}: {why}, and Pillow cannot read it; save it as RGB or gray") from None


def _read_skimage_sample(name: str) -> np.ndarray:
    if name not in SKIMAGE_SAMPLES:
        raise UserError(f"unknown scikit-image sample {name!r}; choose one of: {', '.join(SKIMAGE_SAMPLES)}")
    from skimage import data

    return getattr(data, name)()


def stated_orientation(image: Image.Image) -> int:
    """The EXIF orientation an opened image's header states (1 = stored upright; 2-8 = flipped and/or turned, see
    :func:`turn_upright`); 1 where it states none or its EXIF block cannot be read."""
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except (OSError, ValueError, SyntaxError):
        return 1
    return orientation if orientation in range(1, 9) else 1


def exif_orientation(path: str | Path) -> int:
    """:func:`stated_orientation` of a file, from its header; 1 where Pillow cannot read one."""
    try:
        with Image.open(path) as image:  # lazily: the header only
            return stated_orientation(image)
    except (OSError, ValueError, SyntaxError):
        return 1


def turn_upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` (height, width, ...) as shown by a viewer that honours EXIF ``orientation``: the transform Pillow's
    ``ImageOps.exif_transpose`` applies, on an array of any depth. Orientations 5-8 swap height and width."""
    flipped = {1: pixels, 2: pixels[:, ::-1], 3: pixels[::-1, ::-1], 4: pixels[::-1],
               5: pixels.swapaxes(0, 1), 6: np.rot90(pixels, -1), 7: pixels[::-1, ::-1].swapaxes(0, 1),
               8: np.rot90(pixels, 1)}
    return np.ascontiguousarray(flipped[orientation])


def _swapped(size: tuple[int, int] | None) -> tuple[int, int] | None:
    return None if size is None else (size[1], size[0])


def _read_file(source: str, notes: list[str], max_pixels: int, shrink_to: int | None,
               cover: tuple[int, int] | None) -> tuple[np.ndarray, tuple]:
    """The file's pixels, upright as its EXIF orientation says (possibly reduced already, see
    :func:`_read_with_pillow`) and its full (height, width) as shown."""
    path = existing_file(source, "an image")
    orientation = exif_orientation(path)
    if orientation in SIDE_SWAPPING_ORIENTATIONS:
        cover = _swapped(cover)  # the crop is asked of the upright picture; the reader sees it as stored
    array, full_size = _read_stored(path, source, notes, max_pixels, shrink_to, cover)
    if orientation == 1:
        return array, full_size
    notes.append(f"turned upright as its EXIF orientation ({orientation}) says")
    turned = turn_upright(array, orientation)
    return turned, _swapped(full_size) if orientation in SIDE_SWAPPING_ORIENTATIONS else full_size


def _read_stored(path: Path, source: str, notes: list[str], max_pixels: int, shrink_to: int | None,
                 cover: tuple[int, int] | None) -> tuple[np.ndarray, tuple]:
    """The file's pixels as stored (possibly reduced already, see :func:`_read_with_pillow`) and its full
    (height, width)."""
    try:
        with library_warnings_as_notes(notes):
            if path.suffix.lower() in (".tif", ".tiff"):
                return _read_tiff(path, source, notes, max_pixels, shrink_to, cover)
            png_header = _png_header(path)
            if _is_16bit_colour(png_header):
                _check_pixels(source, png_header[0], png_header[1], max_pixels)
                array = read_png16(path)
                return array, array.shape[:2]
            return _read_with_pillow(path, source, notes, max_pixels, shrink_to, cover)
    except UnidentifiedImageError:
        raise UserError(f"{source}: not an image Pillow can read (PNG, JPEG, TIFF, BMP, WebP, ...)") from None
    except (OSError, ValueError, SyntaxError, tifffile.TiffFileError) as error:  # (pypng's errors: ValueError)
        raise UserError(f"{source}: unreadable or corrupt image ({first_line(error)})") from None


def read_image(source: str, alpha: str = "keep", max_pixels: int = DEFAULT_MAX_PIXELS,
               shrink_to: int | None = None, cover: tuple[int, int] | None = None,
               why_alpha_dropped: str = "--alpha drop") -> LoadedImage:
    """Read ``source`` (a file path, or ``skimage:NAME``) as float pixels in [0, 1], channels last.

    A file over ``max_pixels`` (from its header, before decoding) is refused. With ``shrink_to`` the image is
    scaled down so its longest side is that many pixels (as :func:`resize_longest_side` does), and a large one is
    reduced while it is decoded, so it never enters memory as floats at full size. ``cover`` (height, width), the
    crop to be cut next, limits the shrinking to what still covers it (:func:`covering_longest_side`).
    ``why_alpha_dropped`` is the reason the notes give for ``alpha="drop"`` (a video's frames have no option)."""
    notes: list[str] = []
    if source.startswith("skimage:"):
        array = _read_skimage_sample(source.split(":", 1)[1])
        full_size = array.shape[:2]
    else:
        array, full_size = _read_file(source, notes, max_pixels, shrink_to, cover)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise UserError(f"{source}: unsupported image layout {array.shape}; expected gray, RGB or RGBA")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise UserError(f"{source}: image has no pixels")
    pixels, bit_depth = _from_array(array, source, notes)
    pixels = _handle_alpha(pixels, alpha, notes, why_alpha_dropped)
    if shrink_to is not None:
        longest = covering_longest_side(full_size, shrink_to, cover)
        pixels = shrink_to_longest_side(pixels, longest, full_size)
        if pixels.shape[:2] != tuple(full_size):
            notes.append(_resize_note(full_size, pixels.shape, shrink_to)
                         + ("" if longest == shrink_to else f", kept at {longest} to cover the "
                            f"{cover[1]}x{cover[0]} crop"))
    channels = _channel_names(pixels.shape[2])
    return LoadedImage(torch.from_numpy(np.ascontiguousarray(pixels)), bit_depth, channels, notes)


def drop_alpha(pixels: np.ndarray, notes: list[str], why: str) -> np.ndarray:
    """``(H, W, C)`` pixels without their alpha channel, where they have one, with a note of it: a fully opaque
    one loses nothing; any other is dropped for ``why`` (a video's frames as well as ``--alpha drop``)."""
    if pixels.shape[2] not in (2, 4):
        return pixels
    notes.append("alpha channel is fully opaque: dropped" if np.all(pixels[:, :, -1] == 1.0) else
                 f"alpha channel dropped ({why})")
    return pixels[:, :, :-1]


def _handle_alpha(pixels: np.ndarray, alpha: str, notes: list[str], why_dropped: str) -> np.ndarray:
    if pixels.shape[2] not in (2, 4):
        return pixels
    if alpha not in ALPHA_MODES:
        raise UserError(f"unknown --alpha {alpha!r}; choose one of: {', '.join(ALPHA_MODES)}")
    if alpha == "drop" or np.all(pixels[:, :, -1] == 1.0):
        return drop_alpha(pixels, notes, why_dropped)
    notes.append("alpha channel fitted as one more channel")
    return pixels


def resize_pixels(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W, C)`` values in [0, 1] resampled to ``shape`` (height, width): bicubic, anti-aliased when shrinking,
    clipped to [0, 1], float32. The one resize behind images, video frames and image collections."""
    from skimage.transform import resize

    return resize(pixels, shape, order=3, anti_aliasing=True, preserve_range=True).clip(0, 1).astype(np.float32)


@functools.lru_cache(maxsize=16)
def resampling_matrix(source: int, target: int) -> np.ndarray:
    """The ``(target, source)`` matrix of :func:`resize_pixels` along one axis of ``source`` samples.

    That resize (a Gaussian anti-aliasing filter, then cubic-spline interpolation) is linear in the pixels and
    separable, so before its final clipping it is ``A X B^T`` for an image ``X``: ``A`` the height's matrix, ``B``
    the width's. Each column is the same resize applied to one unit sample (the identity's columns, resized as the
    channels of one ``source x 1`` image, with clipping off)."""
    from skimage.transform import resize

    identity = np.eye(source, dtype=np.float64)[:, None, :]  # (source, 1, source): channel k is unit sample k
    return resize(identity, (target, 1), order=3, anti_aliasing=True, preserve_range=True, clip=False)[:, 0, :]


def resize_stack(stack: np.ndarray, shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> np.ndarray:
    """:func:`resize_pixels` of every ``(H, W, C)`` image of an ``(N, H, W, C)`` stack, as two matrix products
    (:func:`resampling_matrix`): a collection of 60,000 small images resizes in about a second instead of minutes.
    Each result is clipped as the resize clips it alone: to its input's value range, then to [0, 1]. Computed (and
    returned) in ``dtype``: float64 keeps a video frame within one float32 rounding of scikit-image's own resize."""
    numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    rows = torch.from_numpy(resampling_matrix(stack.shape[1], shape[0]).astype(numpy_dtype))
    cols = torch.from_numpy(resampling_matrix(stack.shape[2], shape[1]).astype(numpy_dtype))
    pixels = torch.from_numpy(np.ascontiguousarray(stack, dtype=numpy_dtype))
    resized = torch.einsum("hH,nHWc,wW->nhwc", rows, pixels, cols)
    low, high = pixels.amin(dim=(1, 2, 3), keepdim=True), pixels.amax(dim=(1, 2, 3), keepdim=True)
    return torch.maximum(torch.minimum(resized, high), low).clamp(0.0, 1.0).numpy()


def _box_reduce(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Means over ``factor x factor`` blocks of ``(H, W, C)`` pixels; the last row and column of blocks may be
    partial (ragged edges are averaged over what they hold, as Pillow's ``reduce`` does).

    Torch's average pooling over the pixels as they lie (channels last), on all cores: 2-3x faster than NumPy's
    ``add.reduceat`` along each axis (a 4K frame by 7: 58 against 123 ms; 37.5 MP by 9: 0.23 against 0.62 s),
    the same means within float32 rounding."""
    image = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)[None]
    reduced = torch.nn.functional.avg_pool2d(image, factor, ceil_mode=True, count_include_pad=False)
    return np.ascontiguousarray(reduced[0].permute(1, 2, 0).numpy())


def shrink_to_longest_side(pixels: np.ndarray, longest: int, full_size: tuple[int, int] | None = None) -> np.ndarray:
    """``(H, W, C)`` pixels scaled down so the longest side is ``longest``; returned as they are when no longer.
    ``full_size`` (height, width) is the image's size when ``pixels`` were already reduced while being read: the
    result has the size shrinking the full image gives. Large inputs are box-reduced first (see :func:`box_factor`)."""
    height, width = full_size or pixels.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1.0:
        return pixels
    return reduce_and_resize(pixels, (max(1, round(height * scale)), max(1, round(width * scale))))


def reduce_and_resize(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """:func:`resize_pixels` to ``shape``, a large image box-reduced first (:func:`box_factor`): the anti-aliasing
    filter of a direct resize runs a wide Gaussian over every pixel (a 12 MP photo covered by 256x256: 3.1 s,
    against 0.3 s reduced first)."""
    factor = box_factor(pixels.shape[0], pixels.shape[1], max(shape))
    return resize_pixels(_box_reduce(pixels, factor) if factor > 1 else pixels, shape)


def _resize_note(full_size: tuple[int, int], shape: tuple[int, ...], longest: int) -> str:
    return f"resized from {full_size[1]}x{full_size[0]} to {shape[1]}x{shape[0]} (--resize {longest})"


def resize_longest_side(image: LoadedImage, longest: int) -> LoadedImage:
    """Downscale (anti-aliased) so the longest side is ``longest``; never upscales."""
    resized = shrink_to_longest_side(image.pixels.numpy(), longest)
    if resized.shape == image.pixels.shape:
        return image
    note = _resize_note((image.height, image.width), resized.shape, longest)
    return LoadedImage(torch.from_numpy(resized), image.bit_depth, image.channel_names, image.notes + [note])


def parse_crop(text: str) -> tuple[int, int]:
    """``WxH`` or ``N`` (N x N) -> (height, width); raises InvalidSetting("crop") otherwise."""
    parts = text.lower().split("x")
    try:
        sides = [int(part) for part in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise InvalidSetting("crop", f"must be WIDTHxHEIGHT or SIZE in pixels (e.g. 256x192 or 256), got {text!r}")
    width, height = sides if len(sides) == 2 else sides * 2
    return height, width


def cover_and_crop(pixels: np.ndarray, height: int, width: int, upscale: bool = False) -> np.ndarray:
    """``(H, W, C)`` pixels scaled (down, or also up with ``upscale``) just enough to cover ``height x width``,
    then centre-cropped to it: the shape dataset loaders bring mixed photos to. Without ``upscale`` a side
    shorter than the crop raises :class:`ValueError`. An ``(N, H, W, C)`` stack of same-sized images is brought
    there at once (:func:`resize_stack`), each image as it would be alone."""
    stacked = pixels.ndim == 4
    source_height, source_width = pixels.shape[stacked:stacked + 2]
    scale = max(height / source_height, width / source_width)
    if scale > 1.0 and not upscale:
        raise ValueError(f"{source_width}x{source_height} is smaller than the {width}x{height} crop")
    if scale != 1.0:
        covering = (max(height, round(source_height * scale)), max(width, round(source_width * scale)))
        pixels = resize_stack(pixels, covering) if stacked else reduce_and_resize(pixels, covering)
    top, left = (pixels.shape[stacked] - height) // 2, (pixels.shape[stacked + 1] - width) // 2
    return np.ascontiguousarray(pixels[..., top:top + height, left:left + width, :])


def crop_to(image: LoadedImage, height: int, width: int) -> LoadedImage:
    """The centre ``width x height`` of ``image``, scaled down first as little as covering it needs."""
    if (image.height, image.width) == (height, width):
        return image
    try:
        cropped = cover_and_crop(image.pixels.numpy(), height, width)
    except ValueError as error:
        raise UserError(f"{error} (--crop {width}x{height}); choose a smaller crop") from None
    note = f"cropped from {image.width}x{image.height} to {width}x{height} (--crop, scaled to cover, centred)"
    return LoadedImage(torch.from_numpy(cropped), image.bit_depth, image.channel_names, image.notes + [note])


# Values rounded at a time by quantize: its float64 temporaries stay at 8 MiB however large the image (the whole
# image's were 8 bytes per value beside the clamped copy: 2.3 GB more for an 8000x6000 RGB render).
QUANTIZE_BAND_VALUES = 1 << 20


def level_dtype(bit_depth: int) -> type:
    """The integers a PNG of ``bit_depth`` stores."""
    return np.uint16 if bit_depth == 16 else np.uint8


def quantize(pixels: torch.Tensor, bit_depth: int) -> np.ndarray:
    """[0, 1] floats -> the integers a PNG of ``bit_depth`` stores, rounding to nearest; in bands along the first
    axis (:data:`QUANTIZE_BAND_VALUES`), each element rounded as the whole array would round it."""
    top = 65535 if bit_depth == 16 else 255
    pixels = torch.as_tensor(pixels)
    levels = np.empty(tuple(pixels.shape), level_dtype(bit_depth))
    if pixels.ndim == 0 or pixels.numel() == 0:
        levels[...] = np.rint(pixels.clamp(0, 1).numpy().astype(np.float64) * top)
        return levels
    rows = max(1, QUANTIZE_BAND_VALUES // max(1, pixels[0].numel()))
    for start in range(0, len(pixels), rows):
        band = pixels[start:start + rows].clamp(0, 1).numpy().astype(np.float64)
        levels[start:start + rows] = np.rint(band * top)
    return levels


def write_png(path: Path, pixels: torch.Tensor | np.ndarray, bit_depth: int) -> None:
    """Write ``(H, W, C)`` pixels in [0, 1] as a lossless PNG of ``bit_depth`` (8 or 16), atomically; or the
    PNG's levels themselves, an integer array of :func:`level_dtype` (a render quantized as it was made)."""
    if isinstance(pixels, np.ndarray) and pixels.dtype.kind in "ui":
        if pixels.dtype != level_dtype(bit_depth):
            raise ValueError(f"{bit_depth}-bit PNG levels must be {np.dtype(level_dtype(bit_depth))}, "
                             f"got {pixels.dtype}")
        array = pixels
    else:
        array = quantize(pixels, bit_depth)
    height, width, channels = array.shape
    if bit_depth == 16 and channels > 1:
        import png  # only 16-bit colour is written with pypng (Pillow would narrow it)

        writer = png.Writer(width, height, greyscale=channels <= 2, alpha=channels in (2, 4), bitdepth=16)
        atomic_write_with(path, lambda buf: writer.write(buf, array.reshape(height, width * channels)))
        return
    image = Image.fromarray(array[:, :, 0] if channels == 1 else array)
    atomic_write_with(path, lambda buf: image.save(buf, format="PNG"))
