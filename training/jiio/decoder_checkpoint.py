"""Checkpoints of a JIIO-trained MDEQ decoder, as plain data (read back with ``weights_only=True``).

Beside the weights and optimizer state they hold the run's DecoderConfig, the epochs done with their history, the
latent code JIIO found for every training image (to resume, and to fit the sampling density), a description of
the data, and once training ends the Gaussian mixture over the latents that ``inr sample`` draws from.
"""

from __future__ import annotations

import torch

from models.mdeq import MDEQDecoder
from training.fitting.checkpoint import FORMAT, to_cpu
from inr_core.errors import UserError
from training.jiio.decoder_training import DecoderConfig, DecoderTrainingState

KIND = "mdeq-decoder"
VERSION = 1


def decoder_payload(state: DecoderTrainingState, config: DecoderConfig, data: dict,
                    density: dict | None = None) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": KIND,
        "config": config.to_dict(),
        "out_channels": state.decoder.out_channels,
        "epoch": state.epoch,
        "history": list(state.history),
        "data": dict(data),
        "model_state": to_cpu(state.decoder.state_dict()),
        "optimizer_state": to_cpu(state.optimizer.state_dict()),
        "latents": state.latents.detach().cpu(),
        "density": None if density is None else to_cpu(density),
    }


def is_decoder_payload(payload: dict) -> bool:
    return payload.get("kind") == KIND


def _check(payload: dict, source: str) -> None:
    if not is_decoder_payload(payload):
        fitted = payload.get("signal", {}).get("kind", "unknown")
        raise UserError(f"{source}: not a decoder checkpoint (it holds a fitted {fitted} network); "
                        "train one with `inr jiio-invert --data DATA`")
    missing = [k for k in ("config", "model_state", "latents", "out_channels") if k not in payload]
    if missing:
        raise UserError(f"{source}: decoder checkpoint lacks {', '.join(missing)}")


def decoder_from_payload(payload: dict, source: str = "checkpoint", device: torch.device | str = "cpu"
                         ) -> tuple[MDEQDecoder, DecoderConfig]:
    _check(payload, source)
    config = DecoderConfig.from_dict(payload["config"])
    decoder = MDEQDecoder(config.decoder_preset(), out_channels=int(payload["out_channels"]))
    try:
        decoder.load_state_dict(payload["model_state"])
    except (RuntimeError, KeyError) as error:
        raise UserError(f"{source}: decoder weights do not match its configuration ({str(error).splitlines()[0]})") \
            from None
    return decoder.to(device).eval(), config


def training_state_from_payload(payload: dict, source: str, device: torch.device | str = "cpu"
                                ) -> tuple[DecoderTrainingState, DecoderConfig]:
    """The state to resume a run from; the optimizer is rebuilt with the checkpoint's learning rate and state."""
    decoder, config = decoder_from_payload(payload, source, device)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.lr)
    if payload.get("optimizer_state"):
        optimizer.load_state_dict(payload["optimizer_state"])
    latents = payload["latents"].to(device)
    state = DecoderTrainingState(decoder, optimizer, latents, int(payload.get("epoch", 0)),
                                 list(payload.get("history", [])))
    return state, config
