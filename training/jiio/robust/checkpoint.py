"""Checkpoints of an MDEQ classifier (``classifier.pt``), as plain data read back with ``weights_only=True``.

They hold ``kind: "mdeq-classifier"`` (so a decoder or a fitted network handed over as a classifier, or a
classifier handed to ``inr sample``, is refused in one line), the run's :class:`RobustConfig`, the weights and
optimizer state, the epochs done with their history, and a description of the training data (classes included).
Loading checks the config, the weights' names and shapes against what that config builds, that every weight
is finite, and the run record's types (:mod:`training.jiio.run_record`).
"""

from __future__ import annotations

import torch

from inr_core.errors import InvalidSetting, UserError
from models.mdeq_classifier import MDEQClassifier
from training.adam import Adam
from training.fitting.checkpoint import FORMAT, building_on_meta, check_finite, check_state
from training.checkpoint_kinds import CLASSIFIER_KIND, checkpoint_holds
from training.fitting.control import to_host
from training.jiio.robust.classifier_training import ClassifierTrainingState
from training.jiio.robust.config import RobustConfig
from training.jiio.run_record import check_run_record, load_optimizer_state

VERSION = 1


def classifier_payload(state: ClassifierTrainingState, config: RobustConfig, data: dict) -> dict:
    return {"format": FORMAT, "version": VERSION, "kind": CLASSIFIER_KIND, "config": config.to_dict(),
            "epoch": state.epoch, "history": list(state.history), "data": dict(data),
            "model_state": to_host(state.model.state_dict()), "optimizer_state": to_host(state.optimizer.state_dict())}


def is_classifier_payload(payload: dict) -> bool:
    return payload.get("kind") == CLASSIFIER_KIND


def _check(payload: dict, source: str) -> RobustConfig:
    if not is_classifier_payload(payload):
        raise UserError(f"{source}: not a classifier checkpoint (it holds {checkpoint_holds(payload)}); train one "
                        "with `inr jiio-robust --data DATA`")
    missing = [k for k in ("config", "model_state") if k not in payload]
    if missing:
        raise UserError(f"{source}: classifier checkpoint lacks {', '.join(missing)}")
    problem = None
    try:
        config = RobustConfig.from_dict(payload["config"])
        config.validate()
    except InvalidSetting as error:
        problem = f"config setting {error}"
    except (TypeError, ValueError, AttributeError, KeyError) as error:
        problem = f"config is unreadable ({error})"
    if problem is not None:
        raise UserError(f"{source}: classifier checkpoint {problem}")
    if not isinstance(payload["model_state"], dict):
        raise UserError(f"{source}: classifier checkpoint model_state is not a table of weights")
    with building_on_meta():
        expected = MDEQClassifier(config.classifier_preset(), config.classes, config.in_channels).state_dict()
    check_state(payload["model_state"], {k: tuple(v.shape) for k, v in expected.items()}, source,
                f"the {config.preset} classifier its config describes ({config.classes} classes, "
                f"{config.image_size} px)")
    check_finite({"model_state": payload["model_state"]}, source)
    check_run_record(payload, source, "classifier")
    return config


def classifier_from_payload(payload: dict, source: str = "checkpoint", device: torch.device | str = "cpu"
                            ) -> tuple[MDEQClassifier, RobustConfig]:
    state, config = training_state_from_payload(payload, source, device)
    return state.model.eval(), config


def training_state_from_payload(payload: dict, source: str, device: torch.device | str = "cpu"
                                ) -> tuple[ClassifierTrainingState, RobustConfig]:
    """The state to continue a run from, after the checks: the classifier, its optimizer (with the checkpoint's
    state), the epochs done."""
    config = _check(payload, source)
    model = MDEQClassifier(config.classifier_preset(), config.classes, config.in_channels)
    model.load_state_dict(payload["model_state"])
    optimizer = Adam(model.to(device).parameters(), lr=config.lr)
    load_optimizer_state(optimizer, payload, source, "classifier")
    epoch, history = int(payload.get("epoch", 0)), list(payload.get("history", []))
    return ClassifierTrainingState(model.train(), optimizer, epoch, history), config
