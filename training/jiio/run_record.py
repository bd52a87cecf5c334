"""What a JIIO checkpoint (``decoder.pt``, ``classifier.pt``) records of its run beside the weights: the epochs done
and their history, the optimizer's state, and a description of the training data.

The commands read these fields where they use them (resuming, finding the held-out images, the report), so a
hand-edited or damaged record is refused here, when the checkpoint is read, in one line naming the field.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from inr_core.errors import UserError
from training.fitting.checkpoint import whole


def check_run_record(payload: dict, source: str, kind: str) -> None:
    """Refuse a record whose fields do not have the types the run wrote; ``kind`` names the checkpoint ("decoder",
    "classifier"). Absent fields are left to their defaults."""
    problem = _record_problem(payload)
    if problem is not None:
        raise UserError(f"{source}: {kind} checkpoint {problem}")


def _record_problem(payload: dict) -> str | None:
    epoch = payload.get("epoch", 0)
    if not whole(epoch) or epoch < 0:
        return f"epoch is {epoch!r}; it must be a whole number of 0 or more"
    if not isinstance(payload.get("history", []), list):
        return "history is not a list of epochs"
    if not isinstance(payload.get("optimizer_state") or {}, dict):
        return "optimizer_state is not a table of the optimizer's state"
    data = payload.get("data")
    if data is None:
        return None
    if not isinstance(data, dict):
        return f"data is a {type(data).__name__}, not a description of the training data"
    count = data.get("train_count")
    if count is not None and (not whole(count) or count < 1):
        return f"data.train_count is {count!r}; it must be a whole number of at least 1"
    for name in ("source", "labels"):
        if not isinstance(data.get(name) or "", str):
            return f"data.{name} is {data[name]!r}; it must be a path"
    if not isinstance(data.get("digest") or "", str):
        return f"data.digest is {data['digest']!r}; it must be a hexadecimal digest"
    return None


def data_digest(*tensors: torch.Tensor) -> str:
    """A digest of the training data as the run holds it (each tensor's dtype, shape and values): recorded in the
    checkpoint, so that a resume, or a later run that takes its test images from the same collection, can tell
    the data it trained on from other data of the same size, wherever the file has moved since."""
    digest = hashlib.sha256()
    for tensor in tensors:
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def other_data(recorded: dict | None, digest: str) -> bool:
    """Whether a checkpoint's data record names other data than that of ``digest`` (:func:`data_digest`). A
    record from before digests were kept cannot tell, and says no (:func:`unchecked_data_note` notes it)."""
    return (recorded or {}).get("digest") not in (None, digest)


def load_optimizer_state(optimizer: torch.optim.Optimizer, payload: dict, source: str, kind: str) -> None:
    """Give ``optimizer`` the checkpoint's state (checked by :func:`check_run_record`), when it has one."""
    if not payload.get("optimizer_state"):
        return
    try:
        optimizer.load_state_dict(payload["optimizer_state"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{source}: {kind} checkpoint optimizer_state does not match its weights; the file was "
                        "edited or damaged") from None


def recorded_path(source: str) -> str:
    """``source`` as a checkpoint records it: absolute, so that a later run from another folder finds the data
    trained on rather than another file of the same name there (a built-in collection, ``skimage:...``, as it is)."""
    return source if source.startswith("skimage:") else str(Path(source).absolute())


def unchecked_data_note(recorded: dict, what: str) -> list[str]:
    """A note for a checkpoint from before digests were recorded, whose data cannot be checked to be the same."""
    return [] if recorded.get("digest") else [f"the checkpoint records no digest of its training data, so the {what} "
                                              "could not be checked to come from the data it was trained on"]
