"""Checkpoints: a byte-exact round trip of the network, and loading never runs code or accepts foreign files."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from inr_cli.modalities.base import FitCommandConfig
from inr_cli.modalities.image import IMAGE, ImageOptions
from inr_cli.sample import run_config_from_payload
from inr_core.errors import UserError
from models.fixpoint import SolverSettings
from training.fitting.checkpoint import (checkpoint_payload, deserialize, model_from_payload, serialize,
                                         solver_settings_from_payload)
from training.fitting.config import FitConfig
from training.fitting.fit import fit, make_optimizer
from training.fitting.render import grid_coordinates
from training.fitting.signal import image_signal

SIGNAL_INFO = {"kind": "image", "height": 16, "width": 12, "channels": 3, "channel_names": "RGB", "bit_depth": 8}

# Set if unpickling ever calls back into this module: it must not.
CODE_RAN: list[str] = []


def _side_effect(tag):
    CODE_RAN.append(tag)
    return tag


class Sneaky:
    """A custom class whose unpickling would run _side_effect."""

    def __reduce__(self):
        return (_side_effect, ("unpickled",))


@pytest.fixture(scope="module", params=["siren", "gabor-mfn"])
def fitted(request):
    signal = image_signal(torch.rand(16, 12, 3))
    config = FitConfig(model=request.param, hidden=16, layers=2, steps=7, device="cpu", eval_every=0, seed=3)
    result = fit(signal, config, IMAGE.recipe)
    run_config = FitCommandConfig("image", result.config, ImageOptions(alpha="drop", resize=16))
    return result, checkpoint_payload(result, SIGNAL_INFO, in_features=2, out_features=3,
                                      config=run_config.to_dict())


def test_payload_contents(fitted):
    result, payload = fitted
    assert {"config", "model_state", "optimizer_state", "step", "architecture", "signal"} <= set(payload)
    assert payload["step"] == 7
    assert payload["config"]["fit"]["model"] == result.config.model
    assert payload["config"]["fit"]["lr"] == result.config.lr and payload["config"]["fit"]["lr"] is not None
    assert payload["signal"] == SIGNAL_INFO
    assert set(payload["model_state"]) == set(result.model.state_dict())
    assert payload["optimizer_state"]["state"]  # Adam moments after 7 steps
    # The run's whole config comes back whole: the resolved fit config and the modality's options.
    config = run_config_from_payload(payload, "x.pt")
    assert config == FitCommandConfig("image", result.config, ImageOptions(alpha="drop", resize=16))


def test_round_trip_restores_identical_outputs(fitted):
    result, payload = fitted
    data = serialize(payload)
    assert isinstance(data, bytes) and len(data) > 0
    restored = deserialize(data)
    model = model_from_payload(restored)
    assert not model.training
    coords = grid_coordinates((16, 12))
    with torch.no_grad():
        assert torch.equal(model(coords), result.model(coords))
    for key, value in result.model.state_dict().items():
        assert torch.equal(restored["model_state"][key], value)
    # The optimizer state loads into a fresh Adam over the restored parameters (resumable).
    optimizer = make_optimizer(model.parameters(), run_config_from_payload(restored, "x.pt").fit, torch.device("cpu"))
    optimizer.load_state_dict(restored["optimizer_state"])
    assert optimizer.state_dict()["state"][0]["step"] == 7


@pytest.mark.parametrize("data", [
    b"",
    b"\x00" * 64,
    b"PK\x03\x04" + bytes(range(60)),  # looks like the start of a zip archive
    np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes(),
    b"\x89PNG\r\n\x1a\n" + bytes(40),
], ids=["empty", "zeros", "zip-like", "random", "png-like"])
def test_garbage_bytes_raise_user_error(data):
    with pytest.raises(UserError) as info:
        deserialize(data, source="x.pt")
    assert str(info.value).startswith("x.pt")
    assert "\n" not in str(info.value)


def test_any_random_bytes_raise_user_error():
    samples = [b"hello world\n", b"some notes\n"]
    samples += [np.random.default_rng(seed).integers(0, 256, 300, dtype=np.uint8).tobytes() for seed in range(200)]
    for data in samples:
        with pytest.raises(UserError):
            deserialize(data)


def test_custom_class_is_refused_without_running_code():
    buffer = io.BytesIO()
    torch.save({"format": "inr-checkpoint", "version": 1, "payload": Sneaky()}, buffer)
    # Sanity: plain pickle would run the reduce hook.
    pickle.loads(pickle.dumps(Sneaky()))
    assert CODE_RAN == ["unpickled"]
    CODE_RAN.clear()
    with pytest.raises(UserError) as info:
        deserialize(buffer.getvalue(), source="evil.pt")
    assert CODE_RAN == []
    assert "evil.pt: refused: it holds objects other than tensors" in str(info.value) and "\n" not in str(info.value)


def test_foreign_torch_files_are_refused():
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buffer)
    with pytest.raises(UserError, match="not an inr checkpoint"):
        deserialize(buffer.getvalue())
    buffer = io.BytesIO()
    torch.save(torch.zeros(3), buffer)
    with pytest.raises(UserError, match="not an inr checkpoint"):
        deserialize(buffer.getvalue())


def test_newer_version_is_refused(fitted):
    _, payload = fitted
    with pytest.raises(UserError, match="newer"):
        deserialize(serialize({**payload, "version": 99}))


def version_one(payload: dict) -> dict:
    """The same checkpoint as version 1 of the format wrote it: one flat config, no solver in the architecture."""
    config = payload["config"]
    flat = {**{k: v for k, v in config["fit"].items() if k != "solver"}, **config["fit"]["solver"],
            "holdout": "none", **config["options"]}
    for key in ("backward_tol", "backward_max_iter"):  # version 1 did not have them
        flat.pop(key)
    architecture = {k: v for k, v in payload["architecture"].items() if k != "solver"}
    return {**payload, "version": 1, "config": flat, "architecture": architecture}


def test_version_one_checkpoints_still_load(fitted):
    result, payload = fitted
    old = deserialize(serialize(version_one(payload)))
    assert run_config_from_payload(old, "old.pt") == run_config_from_payload(payload, "new.pt")
    assert solver_settings_from_payload(old) == SolverSettings() == solver_settings_from_payload(payload)
    coords = grid_coordinates((16, 12))
    with torch.no_grad():
        assert torch.equal(model_from_payload(old)(coords), result.model(coords))
