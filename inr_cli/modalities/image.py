"""Images: (y, x) in [-1, 1]^2, any channel count and bit depth; optionally a held-out grid of pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inr_cli.errors import phrase
from inr_cli.figures import write_comparison
from inr_cli.figures.captions import grid_quality, run_caption
from inr_cli.media.images import (DEFAULT_IMAGE, DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, LoadedImage, crop_to,
                                  parse_crop, read_image, write_png)
from inr_cli.modalities.base import (FittedNetwork, LoadedSignal, Modality, ModalityOptions, Outputs, SampleRequest,
                                     SampleTarget, register_modality)
from inr_core.errors import InvalidSetting, UserError, check
from training.fitting.fit import FitResult
from training.fitting.recipes import Recipe, frequency_for_side, learning_rate_for_side
from training.fitting.signal import HOLDOUT_MODES, GridSignal, image_signal

ALPHA_MODES = ("keep", "drop")
MAX_SIDE = 65536
RECONSTRUCTION = "reconstruction.png"
COMPARISON = "comparison.png"


@dataclass(frozen=True)
class ImageOptions(ModalityOptions):
    holdout: str = "none"  # or "grid": train on [::2, ::2], measure on [1::2, 1::2]
    alpha: str = "keep"  # a non-opaque alpha channel: fitted as one more channel, or dropped
    resize: int | None = None  # downscale so the longest side is this many pixels
    crop: str | None = None  # WxH or N: scale down to cover, then keep the centre (--resize stops at covering)
    max_pixels: int = DEFAULT_MAX_PIXELS  # most pixels a file may decode to, checked from its header

    def validate(self) -> None:
        check(self.holdout in HOLDOUT_MODES, "holdout",
              f"must be one of: {', '.join(HOLDOUT_MODES)}; got {self.holdout!r}")
        check(self.alpha in ALPHA_MODES, "alpha", f"must be one of: {', '.join(ALPHA_MODES)}; got {self.alpha!r}")
        check(self.resize is None or self.resize >= 1, "resize", f"must be at least 1, got {self.resize}")
        check(self.max_pixels >= 1, "max_pixels", f"must be at least 1, got {self.max_pixels}")
        if self.crop is not None:
            parse_crop(self.crop)


@dataclass
class LoadedImageSignal(LoadedSignal):
    image: LoadedImage
    source: str = ""


def sample_size(info: dict, request: SampleRequest) -> tuple[int, int]:
    """(height, width) to render: a scale of the fitted size, or explicit sides (one side keeps the aspect ratio)."""
    scale, width, height = request.scale, request.width, request.height  # not both: SampleRequest.validate
    src_h, src_w = info["height"], info["width"]
    if scale is not None:
        size = (max(1, round(src_h * scale)), max(1, round(src_w * scale)))
    elif width is None and height is None:
        size = (src_h, src_w)
    else:
        size = (height or max(1, round(width * src_h / src_w)), width or max(1, round(height * src_w / src_h)))
    if max(size) > MAX_SIDE:
        raise UserError(f"requested {size[1]}x{size[0]} pixels; the largest side allowed is {MAX_SIDE}")
    return size


class ImageModality(Modality):
    name = "image"
    options_type = ImageOptions
    default_input = DEFAULT_IMAGE
    folder_suffixes = tuple(sorted(IMAGE_SUFFIXES))
    sample_settings = ("scale", "width", "height")
    # A sample is rendered straight to the PNG's levels (FittedNetwork.render_levels): 1 or 2 bytes per value, plus
    # the encoder's copy (measured 2.1 bytes per value for 8000x6000 RGB, 8-bit).
    render_bytes_per_value = 4

    def load(self, source: str, options: ImageOptions, seed: int) -> LoadedImageSignal:
        crop = None if options.crop is None else parse_crop(options.crop)
        image = read_image(source, alpha=options.alpha, max_pixels=options.max_pixels, shrink_to=options.resize,
                           cover=crop)
        if crop is not None:
            try:
                image = crop_to(image, *crop)
            except UserError as error:
                raise UserError(f"{source}: {error}") from None
        try:
            signal = image_signal(image.pixels, holdout=options.holdout)
        except InvalidSetting as error:
            raise UserError(f"{source}: {phrase(error)}") from None
        return LoadedImageSignal(signal, image.info(), image.notes, image, source)

    def recipe(self, model: str, signal: GridSignal) -> Recipe:
        side = max(signal.grid_shape)
        return Recipe(learning_rate_for_side(model, side), frequency_for_side(model, side))

    def write_outputs(self, loaded: LoadedImageSignal, result: FitResult, out_dir: Path, rendered: object = None
                      ) -> Outputs:
        write_png(out_dir / RECONSTRUCTION, result.final.reconstruction, loaded.image.bit_depth)
        caption = run_caption(loaded.source, result.config, grid_quality(self.metrics(loaded, result)),
                              result.kept_step)
        write_comparison(out_dir / COMPARISON, loaded.image.pixels, result.final.reconstruction, caption)
        return Outputs({"reconstruction": RECONSTRUCTION, "comparison": COMPARISON})

    def sample_target(self, info: dict, request: SampleRequest) -> SampleTarget:
        height, width = sample_size(info, request)
        return SampleTarget((height, width), f"sample-{width}x{height}.png", (".png",))

    def write_sample(self, network: FittedNetwork, target: SampleTarget, path: Path) -> None:
        bit_depth = network.info.get("bit_depth", 8)
        write_png(path, network.render_levels(target.grid, bit_depth), bit_depth)


IMAGE = register_modality(ImageModality())
