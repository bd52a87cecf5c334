"""`inr sample`: re-render a fitted network from its checkpoint alone, or draw from a JIIO-trained decoder.

A fitted network's checkpoint holds its run's whole config; the modality named there says which sample
settings apply and renders the sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inr_cli.files import prepare_output_dir
from inr_cli.modalities.base import FitCommandConfig, FittedNetwork, SampleRequest, get_modality, modality_names
from inr_core.errors import UserError
from training.fitting.checkpoint import deserialize, model_from_payload
from training.fitting.devices import check_device_name, render_chunk_size, resolve_device
from training.jiio.decoder_checkpoint import is_decoder_payload

SAMPLE_FLAGS = {"scale": "--scale", "width": "--width", "height": "--height", "rate": "--rate",
                "duration": "--duration", "fps": "--fps", "resolution": "--resolution"}


@dataclass(frozen=True)
class DecoderSampleOptions:
    """What `inr sample` takes for a JIIO-trained decoder (None / False: not given)."""

    count: int | None = None
    fid: str | None = None
    fid_model: Path | None = None
    fid_count: int | None = None
    seed: int = 0
    as_json: bool = False

    def given_flags(self) -> list[str]:
        """The flags given, except --seed (which has a default, so it is always "given")."""
        flags = {"count": "-n", "fid": "--fid", "fid_model": "--fid-model", "fid_count": "--fid-count",
                 "as_json": "--json"}
        return [flag for name, flag in flags.items() if getattr(self, name) not in (None, False, 0)]


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


def run_config_from_payload(payload: dict, checkpoint: Path) -> FitCommandConfig:
    """The run's whole config, as a version-2 checkpoint saved it, or from a version-1 checkpoint's flat one."""
    current = payload.get("version", 1) >= 2
    kind = payload["config"].get("modality") if current else payload.get("signal", {}).get("kind")
    if kind not in modality_names():
        raise UserError(f"{checkpoint}: holds a {kind or 'unknown'} network, which cannot be sampled")
    return FitCommandConfig.from_dict(payload["config"]) if current else \
        FitCommandConfig.from_flat_dict(kind, payload["config"])


def run_sample(checkpoint: Path, request: SampleRequest, *, out: Path | None = None, device: str = "auto",
               decoder: DecoderSampleOptions = DecoderSampleOptions()) -> Path | None:
    """Validate the request once, then render the sample (or the decoder's draws). Returns the file written."""
    request.validate()
    check_device_name(device)
    payload = read_checkpoint(checkpoint)
    if is_decoder_payload(payload):
        stray = [SAMPLE_FLAGS[name] for name in request.given()]
        if stray:
            raise UserError(f"{checkpoint}: {' '.join(stray)} does not apply to a decoder checkpoint "
                            "(it takes -n, --fid, --fid-model, --fid-count, --seed, --json)")
        from inr_cli.jiio.decoder_sample import sample_decoder
        return sample_decoder(checkpoint, payload, out=out, device_name=device, count=decoder.count, fid=decoder.fid,
                              fid_model=decoder.fid_model, fid_count=decoder.fid_count, seed=decoder.seed,
                              as_json=decoder.as_json)
    if decoder.given_flags():
        raise UserError(f"{checkpoint}: {' '.join(decoder.given_flags())} only applies to a decoder checkpoint")

    config = run_config_from_payload(payload, checkpoint)
    modality = get_modality(config.modality)
    info = payload.get("signal", {})
    stray = [SAMPLE_FLAGS[name] for name in request.given() if name not in modality.sample_settings]
    if stray:
        allowed = ", ".join(SAMPLE_FLAGS[name] for name in modality.sample_settings)
        raise UserError(f"{checkpoint}: {' '.join(stray)} does not apply to a {modality.name} checkpoint "
                        f"(it takes {allowed})")
    target = modality.sample_target(info, request)
    out = out or checkpoint.parent / target.default_name
    if out.suffix.lower() not in target.suffixes:
        raise UserError(f"{out}: {modality.name} samples are written as {' or '.join(target.suffixes)}; "
                        "give such a file name")
    torch_device = resolve_device(device)
    fit = config.fit
    network = FittedNetwork(
        model=model_from_payload(payload, torch_device), out_features=payload["architecture"]["out_features"],
        device=torch_device, chunk=render_chunk_size(fit.hidden, fit.layers, torch_device, fit.solver_tensors()),
        info=info, config=config)
    prepare_output_dir(out.parent)
    modality.write_sample(network, target, out)
    return out
