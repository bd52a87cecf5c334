"""Reading and writing images: Pillow for the common formats, pypng and tifffile where Pillow drops bits.

Pillow reads 16-bit grayscale natively but narrows 16-bit colour PNGs to 8 bits, so those go through pypng;
TIFFs go through tifffile (shipped with scikit-image), which keeps every sample format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import png
import tifffile
import torch
from PIL import Image, UnidentifiedImageError

from inr_cli.files import atomic_write_with, existing_file, first_line
from inr_core.errors import InvalidSetting, UserError

# Photos that ship inside scikit-image, addressable as "skimage:NAME" (no download needed).
SKIMAGE_SAMPLES = ("camera", "astronaut", "coffee", "chelsea", "text", "moon", "coins", "page", "rocket",
                   "brick", "grass", "gravel", "logo", "retina", "hubble_deep_field", "immunohistochemistry",
                   "microaneurysms", "clock", "cat")
DEFAULT_IMAGE = "skimage:camera"
ALPHA_MODES = ("keep", "drop")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def _from_array(array: np.ndarray, notes: list[str]) -> tuple[np.ndarray, int]:
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
        if array.size and (np.nanmin(array) < 0.0 or np.nanmax(array) > 1.0 or np.isnan(array).any()):
            raise UserError("floating-point image with values outside [0, 1] or NaN; save it as 8- or 16-bit")
        notes.append("floating-point samples read as [0, 1] and written back as 16-bit")
        return array.astype(np.float32), 16
    raise UserError(f"unsupported sample type {array.dtype}; save the image as 8- or 16-bit PNG")


def _is_16bit_colour_png(path: Path) -> bool:
    with open(path, "rb") as handle:
        header = handle.read(26)
    # IHDR follows the signature: bit depth at byte 24, colour type at byte 25 (2 = RGB, 4 = LA, 6 = RGBA).
    return header[:8] == PNG_SIGNATURE and len(header) == 26 and header[24] == 16 and header[25] in (2, 4, 6)


def _read_png16(path: Path) -> np.ndarray:
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    return np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)


def _read_with_pillow(path: Path, notes: list[str]) -> np.ndarray:
    with Image.open(path) as image:
        if getattr(image, "n_frames", 1) > 1:
            notes.append(f"file has {image.n_frames} frames; using the first")
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
            return np.asarray(image).astype(np.uint16)
        elif mode == "La":
            image = image.convert("LA")
        elif mode == "RGBa":
            image = image.convert("RGBA")
        return np.asarray(image)


def _read_skimage_sample(name: str) -> np.ndarray:
    if name not in SKIMAGE_SAMPLES:
        raise UserError(f"unknown scikit-image sample {name!r}; choose one of: {', '.join(SKIMAGE_SAMPLES)}")
    from skimage import data

    return getattr(data, name)()


def read_image(source: str, alpha: str = "keep") -> LoadedImage:
    """Read ``source`` (a file path, or ``skimage:NAME``) as float pixels in [0, 1], channels last."""
    notes: list[str] = []
    if source.startswith("skimage:"):
        array = _read_skimage_sample(source.split(":", 1)[1])
    else:
        path = existing_file(source, "an image")
        try:
            if path.suffix.lower() in (".tif", ".tiff"):
                array = tifffile.imread(path, key=0)
            elif _is_16bit_colour_png(path):
                array = _read_png16(path)
            else:
                array = _read_with_pillow(path, notes)
        except UnidentifiedImageError:
            raise UserError(f"{source}: not an image Pillow can read (PNG, JPEG, TIFF, BMP, WebP, ...)") from None
        except Image.DecompressionBombError as error:
            raise UserError(f"{source}: {error}") from None
        except (OSError, ValueError, SyntaxError, png.Error, tifffile.TiffFileError) as error:
            raise UserError(f"{source}: unreadable or corrupt image ({first_line(error)})") from None
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise UserError(f"{source}: unsupported image layout {array.shape}; expected gray, RGB or RGBA")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise UserError(f"{source}: image has no pixels")
    pixels, bit_depth = _from_array(array, notes)
    pixels = _handle_alpha(pixels, alpha, notes)
    return LoadedImage(torch.from_numpy(np.ascontiguousarray(pixels)), bit_depth, _channel_names(pixels.shape[2]), notes)


def _handle_alpha(pixels: np.ndarray, alpha: str, notes: list[str]) -> np.ndarray:
    if pixels.shape[2] not in (2, 4):
        return pixels
    if alpha not in ALPHA_MODES:
        raise UserError(f"unknown --alpha {alpha!r}; choose one of: {', '.join(ALPHA_MODES)}")
    if alpha == "drop":
        notes.append("alpha channel dropped (--alpha drop)")
        return pixels[:, :, :-1]
    if np.all(pixels[:, :, -1] == 1.0):
        notes.append("alpha channel is fully opaque: dropped")
        return pixels[:, :, :-1]
    notes.append("alpha channel fitted as one more channel")
    return pixels


def resize_pixels(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W, C)`` values in [0, 1] resampled to ``shape`` (height, width): bicubic, anti-aliased when shrinking,
    clipped to [0, 1], float32. The one resize behind images, video frames and image collections."""
    from skimage.transform import resize

    return resize(pixels, shape, order=3, anti_aliasing=True, preserve_range=True).clip(0, 1).astype(np.float32)


def shrink_to_longest_side(pixels: np.ndarray, longest: int) -> np.ndarray:
    """``(H, W, C)`` pixels scaled down so the longest side is ``longest``; returned as they are when no longer."""
    height, width = pixels.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1.0:
        return pixels
    return resize_pixels(pixels, (max(1, round(height * scale)), max(1, round(width * scale))))


def resize_longest_side(image: LoadedImage, longest: int) -> LoadedImage:
    """Downscale (anti-aliased) so the longest side is ``longest``; never upscales."""
    resized = shrink_to_longest_side(image.pixels.numpy(), longest)
    if resized.shape == image.pixels.shape:
        return image
    note = f"resized from {image.width}x{image.height} to {resized.shape[1]}x{resized.shape[0]} (--resize {longest})"
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
    shorter than the crop raises :class:`ValueError`."""
    source_height, source_width = pixels.shape[:2]
    scale = max(height / source_height, width / source_width)
    if scale > 1.0 and not upscale:
        raise ValueError(f"{source_width}x{source_height} is smaller than the {width}x{height} crop")
    if scale != 1.0:
        pixels = resize_pixels(pixels, (max(height, round(source_height * scale)),
                                        max(width, round(source_width * scale))))
    top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
    return np.ascontiguousarray(pixels[top:top + height, left:left + width])


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


def quantize(pixels: torch.Tensor, bit_depth: int) -> np.ndarray:
    """[0, 1] floats -> the integers a PNG of ``bit_depth`` stores, rounding to nearest."""
    top = 65535 if bit_depth == 16 else 255
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    return np.rint(pixels.clamp(0, 1).numpy().astype(np.float64) * top).astype(dtype)


def write_png(path: Path, pixels: torch.Tensor, bit_depth: int) -> None:
    """Write ``(H, W, C)`` pixels in [0, 1] as a lossless PNG of ``bit_depth`` (8 or 16), atomically."""
    array = quantize(pixels, bit_depth)
    height, width, channels = array.shape
    if bit_depth == 16 and channels > 1:
        writer = png.Writer(width, height, greyscale=channels <= 2, alpha=channels in (2, 4), bitdepth=16)
        atomic_write_with(path, lambda buf: writer.write(buf, array.reshape(height, width * channels)))
        return
    image = Image.fromarray(array[:, :, 0] if channels == 1 else array)
    atomic_write_with(path, lambda buf: image.save(buf, format="PNG"))
