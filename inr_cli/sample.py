"""`inr sample`: re-render a fitted network from its checkpoint alone, at any resolution."""

from __future__ import annotations

from pathlib import Path

import torch

from inr_cli.files import prepare_output_dir
from inr_cli.images import write_png
from training.checkpoint import config_from_payload, deserialize, model_from_payload
from training.devices import render_chunk_size, resolve_device
from training.errors import UserError
from training.fit import solver_tensors
from training.metrics import to_unit_range
from training.render import render_grid

MAX_SIDE = 65536


def read_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; pass the checkpoint file (e.g. {path / 'checkpoint.pt'})")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None
    return deserialize(data, source=str(path))


def target_size(info: dict, scale: float | None, width: int | None, height: int | None) -> tuple[int, int]:
    """(height, width) to render: a scale of the fitted size, or explicit sides (one side keeps the aspect ratio)."""
    if scale is not None and (width is not None or height is not None):
        raise UserError("give either --scale or --width/--height, not both")
    src_h, src_w = info["height"], info["width"]
    if scale is not None:
        if not scale > 0:
            raise UserError(f"--scale must be positive, got {scale}")
        size = (max(1, round(src_h * scale)), max(1, round(src_w * scale)))
    elif width is None and height is None:
        size = (src_h, src_w)
    else:
        for name, value in (("--width", width), ("--height", height)):
            if value is not None and value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        size = (height or max(1, round(width * src_h / src_w)), width or max(1, round(height * src_w / src_h)))
    if max(size) > MAX_SIDE:
        raise UserError(f"requested {size[1]}x{size[0]} pixels; the largest side allowed is {MAX_SIDE}")
    return size


def run_sample(checkpoint: Path, *, scale: float | None, width: int | None, height: int | None,
               out: Path | None, device_name: str) -> Path:
    payload = read_checkpoint(checkpoint)
    info = payload.get("signal", {})
    if info.get("kind") != "image":
        raise UserError(f"{checkpoint}: holds a {info.get('kind', 'unknown')} network; only images can be sampled yet")
    size = target_size(info, scale, width, height)
    device = resolve_device(device_name)
    model = model_from_payload(payload, device)
    arch = payload["architecture"]
    chunk = render_chunk_size(arch["hidden"], arch["layers"], device, solver_tensors(config_from_payload(payload)))
    if out is None:
        out = checkpoint.parent / f"sample-{size[1]}x{size[0]}.png"
    if out.suffix.lower() != ".png":
        raise UserError(f"{out}: samples are written as PNG; give a .png file name")
    prepare_output_dir(out.parent)
    with torch.no_grad():
        pixels = to_unit_range(render_grid(model, size, arch["out_features"], device, chunk))
    write_png(out, pixels, info.get("bit_depth", 8))
    return out
