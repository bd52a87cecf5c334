"""Checkpoints as plain data: the run's config, the architecture, weights, optimizer state, step, and what the
signal looked like.

Serialised with ``torch.save`` and read back with ``weights_only=True``, so loading a checkpoint never runs
code from the file: it may hold only tensors, numbers, strings, lists and dicts.

Version 2 keeps the whole config of the command that made it (as that command's ``to_dict()``) and the solver
settings inside ``architecture``, so the network rebuilds from ``architecture`` alone. Version 1 kept a flat
config; its solver fields are read from there.

A file can be edited by hand or damaged, so :func:`validate_payload` checks a payload before a network is built
from it (``model_from_payload`` always does): the architecture must be one this inr builds with positive sizes,
the weights must have exactly the names and shapes that architecture has, and every tensor must be finite. Each
problem is one :class:`UserError` line naming the file and what is wrong.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
import warnings
from contextlib import contextmanager
from dataclasses import fields

import torch
from torch import nn

from inr_core.errors import InvalidSetting, UserError
from models import build_model
from models.fixpoint import SolverSettings
from models.registry import model_names
from training.fitting.config import FitConfig
from training.fitting.control import to_host
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
        "step": fit_config.steps,  # steps trained (the optimizer state's)
        # The step whose network model_state holds: an earlier one where the fit kept its best (--keep best).
        "kept_step": fit_config.steps if result.kept_step is None else result.kept_step,
        "signal": signal_info,
        "model_state": to_host(result.model.state_dict()),
        "optimizer_state": to_host(result.optimizer.state_dict()),
    }



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
        # Only a real pickle naming a class or function is "refused"; text and random bytes simply are not ours.
        # (torch has worded it "Unsupported global" and, since 2.13, "unsupported GLOBAL").
        refused = isinstance(error, pickle.UnpicklingError) and "unsupported global" in str(error).lower()
        if data[:4] == b"PK\x03\x04" and not zipfile.is_zipfile(io.BytesIO(data)):  # torch's archive, cut short
            raise UserError(f"{source}: truncated or damaged: it starts as a checkpoint archive but cannot be read "
                            "to its end (a copy or a write that was cut short?)") from None
        raise UserError(f"{source}: refused: it holds objects other than tensors and plain data, so it is not an "
                        "inr checkpoint" if refused else
                        f"{source}: not an inr checkpoint (no inr command wrote it)") \
            from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{source}: not an inr checkpoint (missing format marker)")
    version = payload.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise UserError(f"{source}: checkpoint version {version!r} is not a whole number")
    if version > VERSION:
        raise UserError(f"{source}: checkpoint version {version} is newer than this inr understands")
    return payload


def solver_settings_from_payload(payload: dict) -> SolverSettings:
    arch = payload["architecture"]
    if "solver" in arch:
        return SolverSettings(**arch["solver"])
    return FitConfig.from_flat_dict(payload["config"]).solver  # version 1


def model_from_payload(payload: dict, device: torch.device | str = "cpu", source: str = "checkpoint") -> nn.Module:
    """The fitted network, after :func:`validate_payload`."""
    validate_payload(payload, source)
    model = _build(payload["architecture"], solver_settings_from_payload(payload))
    model.load_state_dict(payload["model_state"])
    return model.to(device).eval()


def _build(arch: dict, settings: SolverSettings) -> nn.Module:
    return build_model(arch["name"], arch["in_features"], arch["out_features"], hidden=arch["hidden"],
                       layers=arch["layers"], frequency=arch["frequency"], one_pass=arch.get("one_pass", False),
                       settings=settings)


# ------------------------------------------------------------------------------------------------- validation

ARCHITECTURE_COUNTS = {"in_features": 1, "out_features": 1, "hidden": 1, "layers": 0}  # name -> least value
# Numbers in the signal record that are counts (whole, at least 1) or amounts (positive): what the readers wrote.
IMAGE_BIT_DEPTHS = (8, 16)  # what an image's PNG is written in (inr_cli.media.images.write_png)
SIGNAL_COUNTS = ("height", "width", "channels", "frames", "samples", "rate", "bit_depth", "vertices", "faces")
SIGNAL_AMOUNTS = ("seconds", "fps", "scale")


def whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def section(payload: dict, name: str, source: str, what: str) -> dict:
    """``payload[name]``, which must be a dict (``what`` says what it holds, for the error)."""
    if name not in payload:
        raise UserError(f"{source}: checkpoint lacks {name} ({what})")
    if not isinstance(payload[name], dict):
        raise UserError(f"{source}: checkpoint {name} is a {type(payload[name]).__name__}, not a table of {what}")
    return payload[name]


def validate_payload(payload: dict, source: str = "checkpoint") -> None:
    """Refuse a fitted network's checkpoint that does not hold what `inr fit` writes, naming the first problem."""
    arch = section(payload, "architecture", source, "the network's name and sizes")
    state = section(payload, "model_state", source, "the network's weights")
    _check_architecture(arch, source)
    solver = arch.get("solver", {})
    unknown = sorted(set(solver) - {f.name for f in fields(SolverSettings)}) if isinstance(solver, dict) else []
    if unknown:
        raise UserError(f"{source}: checkpoint solver settings include unknown {', '.join(map(str, unknown))}")
    try:
        settings = solver_settings_from_payload(payload)
        settings.validate()
    except InvalidSetting as error:
        raise UserError(f"{source}: checkpoint solver setting {error}") from None
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise UserError(f"{source}: checkpoint solver settings are unreadable ({error})") from None
    try:
        with building_on_meta():
            expected = _build(arch, settings).state_dict()
    except ValueError as error:  # sizes each valid alone that the model refuses together
        raise UserError(f"{source}: checkpoint architecture cannot be built ({error})") from None
    what = f"the {arch['name']} network its architecture describes (hidden {arch['hidden']}, layers {arch['layers']})"
    check_state(state, {k: tuple(v.shape) for k, v in expected.items()}, source, what)
    check_signal(payload.get("signal", {}), source, arch["out_features"])
    check_finite({"model_state": state}, source)  # the weights; other state is the resuming run's to judge


def _check_architecture(arch: dict, source: str) -> None:
    name = arch.get("name")
    if name not in model_names():
        raise UserError(f"{source}: checkpoint names an unknown architecture {name!r} "
                        f"(this inr builds {', '.join(model_names())})")
    for key, least in ARCHITECTURE_COUNTS.items():
        value = arch.get(key)
        if not whole(value) or value < least:
            raise UserError(f"{source}: checkpoint architecture {key} is {value!r}; it must be a whole number of "
                            f"at least {least}")
    frequency = arch.get("frequency")
    if isinstance(frequency, bool) or not isinstance(frequency, (int, float)) or not 0 < frequency < math.inf:
        raise UserError(f"{source}: checkpoint architecture frequency is {frequency!r}; it must be a positive number")
    if not isinstance(arch.get("one_pass", False), bool):
        raise UserError(f"{source}: checkpoint architecture one_pass is {arch['one_pass']!r}; it must be true or false")


@contextmanager
def building_on_meta():
    """Build on the meta device: shapes without memory, so an edited size of millions costs nothing. Argument
    checks of torch.distributions read values (which meta tensors lack), so they are off meanwhile."""
    validating = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        with torch.device("meta"):
            yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(validating)


def _shape(shape) -> str:
    return "x".join(map(str, shape)) or "a scalar"


def check_state(state: dict, expected: dict[str, tuple], source: str, what: str) -> None:
    """The saved weights ``state`` have exactly the names and shapes in ``expected`` (those of ``what``)."""
    missing = [key for key in expected if key not in state]
    if missing:
        raise UserError(f"{source}: checkpoint weights lack {', '.join(missing)}, which {what} has")
    unknown = [str(key) for key in state if key not in expected]
    if unknown:
        raise UserError(f"{source}: checkpoint holds weights {what} does not have: {', '.join(unknown)}")
    for key, shape in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{source}: checkpoint weight {key} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != shape:
            raise UserError(f"{source}: checkpoint weight {key} has shape {_shape(value.shape)}, but {what} has "
                            f"{_shape(shape)}")


def check_finite(value, source: str, where: str = "") -> None:
    """Every floating-point tensor in ``value`` (nested dicts and lists) is finite: NaN or infinite weights
    render black or NaN everywhere, so such a file is refused rather than used."""
    if isinstance(value, torch.Tensor):
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            kind = "NaN" if bool(torch.isnan(value).any()) else "infinite values"
            raise UserError(f"{source}: {kind} in checkpoint {where}, so nothing meaningful can be made from it; "
                            "train again (a smaller --lr keeps a run from diverging)")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, source, f"{where}[{key}]" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_finite(item, source, f"{where}[{index}]")


def check_signal(info, source: str, out_features: int | None = None) -> None:
    """The sizes recorded for the fitted signal (which `inr sample` renders at) are positive and finite, its
    channels are the network's outputs (``out_features``), and an image's bit depth is one a PNG is written in."""
    if not isinstance(info, dict):
        raise UserError(f"{source}: checkpoint signal is a {type(info).__name__}, not a description of the signal")
    for key in SIGNAL_COUNTS:
        if key in info and (not whole(info[key]) or info[key] < 1):
            raise UserError(f"{source}: checkpoint signal {key} is {info[key]!r}; it must be a whole number of at "
                            "least 1")
    for key in SIGNAL_AMOUNTS:
        value = info.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise UserError(f"{source}: checkpoint signal {key} is {value!r}; it must be a positive number")
    if out_features is not None and "channels" in info and info["channels"] != out_features:
        raise UserError(f"{source}: checkpoint signal has {info['channels']} channels, but its network gives "
                        f"{out_features} values per point")
    if info.get("kind") == "image" and info.get("bit_depth", 8) not in IMAGE_BIT_DEPTHS:
        raise UserError(f"{source}: checkpoint image bit_depth is {info['bit_depth']!r}; it must be 8 or 16")
