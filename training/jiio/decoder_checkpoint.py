"""Checkpoints of a JIIO-trained MDEQ decoder, as plain data (read back with ``weights_only=True``).

Beside the weights and optimizer state they hold the run's DecoderConfig, the epochs done with their history, the
latent code JIIO found for every training image (to resume, and to fit the sampling density), a description of
the data, and once training ends the Gaussian mixture over the latents that ``inr sample`` draws from.

Loading checks them first, as fitted networks' checkpoints are checked: a valid config, weights with exactly the
names and shapes that config builds, latents of its latent size (2 at least), no NaN or infinite value anywhere, a
mixture that can be sampled, and a run record of the types the run wrote (:mod:`training.jiio.run_record`).
"""

from __future__ import annotations

import torch

from models.mdeq import MDEQDecoder
from training.adam import Adam
from training.fitting.checkpoint import FORMAT, building_on_meta, check_finite, check_state, whole
from training.fitting.control import to_host
from inr_core.errors import InvalidSetting, UserError
from training.checkpoint_kinds import DECODER_KIND, checkpoint_holds
from training.jiio.decoder_training import DecoderConfig, DecoderTrainingState
from training.jiio.latent_density import mixture_problem
from training.jiio.run_record import check_run_record, load_optimizer_state

VERSION = 1


def decoder_payload(state: DecoderTrainingState, config: DecoderConfig, data: dict,
                    density: dict | None = None) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": DECODER_KIND,
        "config": config.to_dict(),
        "out_channels": state.decoder.out_channels,
        "epoch": state.epoch,
        "history": list(state.history),
        "data": dict(data),
        "model_state": to_host(state.decoder.state_dict()),
        "optimizer_state": to_host(state.optimizer.state_dict()),
        "latents": state.latents.detach().cpu(),
        "density": None if density is None else to_host(density),
    }


def is_decoder_payload(payload: dict) -> bool:
    return payload.get("kind") == DECODER_KIND


def _check(payload: dict, source: str) -> DecoderConfig:
    """The checkpoint's config, once the whole payload is known to be a decoder this config builds."""
    if not is_decoder_payload(payload):
        raise UserError(f"{source}: not a decoder checkpoint (it holds {checkpoint_holds(payload)}); "
                        "train one with `inr jiio-invert --data DATA`")
    missing = [k for k in ("config", "model_state", "latents", "out_channels") if k not in payload]
    if missing:
        raise UserError(f"{source}: decoder checkpoint lacks {', '.join(missing)}")
    try:
        config = DecoderConfig.from_dict(payload["config"])
        config.validate()
    except InvalidSetting as error:
        raise UserError(f"{source}: decoder checkpoint config setting {error}") from None
    except (TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{source}: decoder checkpoint config is unreadable ({error})") from None
    channels = payload["out_channels"]
    if not whole(channels) or channels not in (1, 3):
        raise UserError(f"{source}: decoder checkpoint out_channels is {channels!r}; it must be 1 or 3")
    if not isinstance(payload["model_state"], dict):
        raise UserError(f"{source}: decoder checkpoint model_state is not a table of weights")
    with building_on_meta():
        expected = MDEQDecoder(config.decoder_preset(), out_channels=channels).state_dict()
    check_state(payload["model_state"], {k: tuple(v.shape) for k, v in expected.items()}, source,
                f"the decoder its config describes (image size {config.image_size}, latent size {config.latent_dim})")
    _check_latents(payload, config.latent_dim, source)
    check_finite({k: payload.get(k) for k in ("model_state", "latents", "density")}, source)
    problem = None if payload.get("density") is None else mixture_problem(payload["density"])
    if problem is not None:
        raise UserError(f"{source}: decoder checkpoint density {problem}")
    check_run_record(payload, source, "decoder")
    return config


def _check_latents(payload: dict, latent_dim: int, source: str) -> None:
    """The training latents, and the mixture drawn from (when training finished), have the config's latent size."""
    latents = payload["latents"]
    # Training needs 2 images at least, and `inr sample` fits its density to their codes when none is saved.
    if not isinstance(latents, torch.Tensor) or latents.ndim != 2 or latents.shape[1] != latent_dim or \
            len(latents) < 2:
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise UserError(f"{source}: decoder checkpoint latents are {shape}; they must be (images, {latent_dim}), "
                        "with 2 images at least")
    density = payload.get("density")
    if density is None:
        return
    parts = {"weights": 1, "means": 2, "covariances": 3}  # name -> dimensions
    if not isinstance(density, dict) or any(not isinstance(density.get(k), torch.Tensor) or density[k].ndim != n
                                            for k, n in parts.items()):
        raise UserError(f"{source}: decoder checkpoint density is not a Gaussian mixture (weights, means, "
                        "covariances)")
    count = len(density["weights"])
    if tuple(density["means"].shape) != (count, latent_dim) or \
            tuple(density["covariances"].shape) != (count, latent_dim, latent_dim):
        raise UserError(f"{source}: decoder checkpoint density does not match its {count} components of latent size "
                        f"{latent_dim}")


def decoder_from_payload(payload: dict, source: str = "checkpoint", device: torch.device | str = "cpu"
                         ) -> tuple[MDEQDecoder, DecoderConfig]:
    config = _check(payload, source)
    decoder = MDEQDecoder(config.decoder_preset(), out_channels=payload["out_channels"])
    decoder.load_state_dict(payload["model_state"])
    return decoder.to(device).eval(), config


def training_state_from_payload(payload: dict, source: str, device: torch.device | str = "cpu"
                                ) -> tuple[DecoderTrainingState, DecoderConfig]:
    """The state to resume a run from; the optimizer is rebuilt with the checkpoint's learning rate and state."""
    decoder, config = decoder_from_payload(payload, source, device)
    optimizer = Adam(decoder.parameters(), lr=config.lr)
    load_optimizer_state(optimizer, payload, source, "decoder")
    latents = payload["latents"].to(device)
    state = DecoderTrainingState(decoder, optimizer, latents, int(payload.get("epoch", 0)),
                                 list(payload.get("history", [])))
    return state, config
