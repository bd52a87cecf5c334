"""`inr sample`: re-render a fitted network from its checkpoint alone, at any resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inr_cli.files import prepare_output_dir
from inr_cli.media.audio import write_wav
from inr_cli.fit_sdf import extract
from inr_cli.media.images import write_png
from inr_cli.media.meshes import MESH_FORMATS, write_mesh
from inr_cli.media.video import write_lossless, write_viewable
from training.fitting.checkpoint import config_from_payload, deserialize, model_from_payload
from training.jiio.decoder_checkpoint import is_decoder_payload
from training.fitting.devices import render_chunk_size, resolve_device
from inr_core.errors import UserError
from training.fitting.fit import solver_tensors
from training.metrics import to_unit_range
from training.fitting.render import render_grid

MAX_SIDE = 65536
MAX_AUDIO_SAMPLES = 1 << 31
MAX_RESOLUTION = 1024


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


def audio_length(info: dict, rate: int | None, duration: float | None) -> tuple[int, int]:
    """(samples, rate) to render: by default the fitted clip; --rate resamples, --duration stretches in time."""
    if rate is not None and rate < 1:
        raise UserError(f"--rate must be at least 1, got {rate}")
    if duration is not None and not duration > 0:
        raise UserError(f"--duration must be positive, got {duration}")
    rate = rate or info["rate"]
    count = max(2, round((duration if duration is not None else info["seconds"]) * rate))
    if count > MAX_AUDIO_SAMPLES:
        raise UserError(f"requested {count} samples; at most {MAX_AUDIO_SAMPLES} can be rendered")
    return count, rate


def run_sample(checkpoint: Path, *, scale: float | None = None, width: int | None = None, height: int | None = None,
               rate: int | None = None, duration: float | None = None, fps: float | None = None,
               resolution: int | None = None,
               out: Path | None = None,
               device_name: str = "auto", decoder_options: dict | None = None) -> Path | None:
    payload = read_checkpoint(checkpoint)
    decoder_options = {k: v for k, v in (decoder_options or {}).items() if v not in (None, False, 0)}
    if is_decoder_payload(payload):
        stray = [name for name, value in (("--scale", scale), ("--width", width), ("--height", height),
                                          ("--rate", rate), ("--duration", duration), ("--fps", fps),
                                          ("--resolution", resolution)) if value is not None]
        if stray:
            raise UserError(f"{checkpoint}: {' '.join(stray)} does not apply to a decoder checkpoint "
                            "(it takes -n, --fid, --fid-model, --fid-count, --seed, --json)")
        from inr_cli.decoder_sample import sample_decoder
        return sample_decoder(checkpoint, payload, out=out, device_name=device_name, **decoder_options)
    flags = {"count": "-n", "as_json": "--json"}
    stray = [flags.get(name, f"--{name.replace('_', '-')}") for name in decoder_options if name != "seed"]
    if stray:
        raise UserError(f"{checkpoint}: {' '.join(stray)} only applies to a decoder checkpoint")
    info = payload.get("signal", {})
    kind = info.get("kind")
    if kind not in ("image", "audio", "video", "shape"):
        raise UserError(f"{checkpoint}: holds a {kind or 'unknown'} network, which cannot be sampled")
    given = {"--scale": scale, "--width": width, "--height": height, "--rate": rate, "--duration": duration,
             "--fps": fps, "--resolution": resolution}
    allowed = {"image": ("--scale", "--width", "--height"), "audio": ("--rate", "--duration"),
               "video": ("--scale", "--width", "--height", "--fps"), "shape": ("--resolution",)}[kind]
    stray = [name for name, value in given.items() if value is not None and name not in allowed]
    if stray:
        raise UserError(f"{checkpoint}: {' '.join(stray)} does not apply to a {kind} checkpoint "
                        f"(it takes {', '.join(allowed)})")
    if kind == "image":
        grid = target_size(info, scale, width, height)
        default_name, suffixes = f"sample-{grid[1]}x{grid[0]}.png", (".png",)
    elif kind == "shape":
        resolution = resolution or 128
        if not 8 <= resolution <= MAX_RESOLUTION:
            raise UserError(f"--resolution must be between 8 and {MAX_RESOLUTION}, got {resolution}")
        grid = (resolution,) * 3
        default_name, suffixes = f"sample-{resolution}.ply", tuple(f".{f}" for f in MESH_FORMATS)
    elif kind == "video":
        if fps is not None and not fps > 0:
            raise UserError(f"--fps must be positive, got {fps}")
        out_fps = fps or info["fps"]
        count = max(1, round(info["frames"] * out_fps / info["fps"]))  # same duration at the new frame rate
        grid = (count, *target_size(info, scale, width, height))
        default_name, suffixes = f"sample-{grid[2]}x{grid[1]}-{out_fps:g}fps.mp4", (".mp4", ".mkv")
    else:
        count, out_rate = audio_length(info, rate, duration)
        grid = (count,)
        default_name, suffixes = f"sample-{out_rate}Hz-{count / out_rate:g}s.wav", (".wav",)
    out = out or checkpoint.parent / default_name
    if out.suffix.lower() not in suffixes:
        raise UserError(f"{out}: {kind} samples are written as {' or '.join(suffixes)}; give such a file name")
    device = resolve_device(device_name)
    model = model_from_payload(payload, device)
    arch = payload["architecture"]
    chunk = render_chunk_size(arch["hidden"], arch["layers"], device, solver_tensors(config_from_payload(payload)))
    prepare_output_dir(out.parent)
    if kind == "shape":
        vertices, faces = extract(model, info, grid[0], device, chunk, info.get("target", "sdf"))
        write_mesh(out, vertices * info["scale"] + np.asarray(info["center"]), faces)
        return out
    with torch.no_grad():
        values = to_unit_range(render_grid(model, grid, arch["out_features"], device, chunk))
    if kind == "image":
        write_png(out, values, info.get("bit_depth", 8))
    elif kind == "video":
        (write_lossless if out.suffix.lower() == ".mkv" else write_viewable)(out, values, out_fps)
    else:
        write_wav(out, values * 2.0 - 1.0, out_rate, info.get("subtype", "FLOAT"))
    return out
