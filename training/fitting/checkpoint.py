"""Checkpoints as plain data: the run's config, the architecture, weights, optimizer state, step, and what the
signal looked like.

Serialised with ``torch.save`` and read back with ``weights_only=True``, so loading a checkpoint never runs
code from the file: it may hold only tensors, numbers, strings, lists and dicts.

Version 2 keeps the whole config of the command that made it (as that command's ``to_dict()``) and the solver
settings inside ``architecture``, so the network rebuilds from ``architecture`` alone. Version 1 kept a flat
config; its solver fields are read from there.
"""

from __future__ import annotations

import io
import pickle
import warnings

import torch
from torch import nn

from inr_core.errors import UserError
from models import build_model
from models.fixpoint import SolverSettings
from training.fitting.config import FitConfig
from training.fitting.fit import FitResult

FORMAT = "inr-checkpoint"
VERSION = 2


def checkpoint_payload(result: FitResult, signal_info: dict, *, in_features: int, out_features: int,
                       config: dict) -> dict:
    """Everything needed to re-render or resume. ``signal_info`` describes the source (kind, size, bit depth...);
    ``config`` is the whole config of the run (the fit's resolved config and whatever else the command set)."""
    fit_config = result.config
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config,
        "architecture": {
            "name": fit_config.model, "in_features": in_features, "out_features": out_features,
            "hidden": fit_config.hidden, "layers": fit_config.layers, "frequency": float(fit_config.frequency),
            "one_pass": fit_config.explicit, "solver": fit_config.solver.to_dict(),
        },
        "step": fit_config.steps,
        "signal": signal_info,
        "model_state": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "optimizer_state": to_cpu(result.optimizer.state_dict()),
    }


def to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def serialize(payload: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def deserialize(data: bytes, source: str = "checkpoint") -> dict:
    """Parse checkpoint bytes without executing code; raise UserError for anything that is not our checkpoint."""
    try:
        with warnings.catch_warnings():
            # torch warns about foreign pickle protocols on stderr; the one-line error below says it all.
            warnings.simplefilter("ignore")
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - the safe loader raises many types on arbitrary bytes
        # Deliberately not torch's message: it suggests weights_only=False, which would run code from the file.
        kind = "refused: it holds objects other than tensors and plain data" \
            if isinstance(error, pickle.UnpicklingError) and "weights_only" in str(error) else "not a torch file"
        raise UserError(f"{source}: not a readable inr checkpoint ({kind})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{source}: not an inr checkpoint (missing format marker)")
    if payload.get("version", 0) > VERSION:
        raise UserError(f"{source}: checkpoint version {payload['version']} is newer than this inr understands")
    return payload


def solver_settings_from_payload(payload: dict) -> SolverSettings:
    arch = payload["architecture"]
    if "solver" in arch:
        return SolverSettings(**arch["solver"])
    return FitConfig.from_flat_dict(payload["config"]).solver  # version 1


def model_from_payload(payload: dict, device: torch.device | str = "cpu") -> nn.Module:
    arch = payload["architecture"]
    model = build_model(arch["name"], arch["in_features"], arch["out_features"], hidden=arch["hidden"],
                        layers=arch["layers"], frequency=arch["frequency"], one_pass=arch.get("one_pass", False),
                        settings=solver_settings_from_payload(payload))
    model.load_state_dict(payload["model_state"])
    return model.to(device).eval()
