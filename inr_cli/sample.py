"""`inr sample`: re-render a fitted network from its checkpoint alone, or draw from a JIIO-trained decoder.

A fitted network's checkpoint holds its run's whole config; the modality named there says which sample
settings apply and renders the sample. The checkpoint is validated before a network is built from it
(:func:`training.fitting.checkpoint.validate_payload`), and the render's memory is estimated before anything is
allocated, so a damaged file or an impossible size ends in one line, not a traceback or a half-written file.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from inr_cli.errors import out_of_memory_message
from inr_cli.files import expand_inputs, first_line, numbered, prepare_output_dir
from inr_cli.modalities.base import (FitCommandConfig, FittedNetwork, Modality, SampleRequest, SampleTarget,
                                     get_modality, modality_names)
from inr_cli.progress import counter_progress
from inr_core.errors import InvalidSetting, UserError, check, out_of_memory
from training.fitting.checkpoint import deserialize, model_from_payload
from training.fitting.devices import (activation_bytes_per_point, available_host_bytes, check_device_name,
                                      render_chunk_size, resolve_device)
from training.fitting.render import reporting_render_progress
from training.checkpoint_kinds import CLASSIFIER_KIND, checkpoint_holds
from training.jiio.decoder_checkpoint import is_decoder_payload

SAMPLE_FLAGS = {"scale": "--scale", "width": "--width", "height": "--height", "rate": "--rate",
                "duration": "--duration", "fps": "--fps", "resolution": "--resolution"}
MAX_DECODER_SAMPLES = 100_000
CHECKPOINT_NAMES = ("checkpoint.pt", "decoder.pt")  # what `inr fit` and `inr jiio-invert` write into a run folder
# What a run over several inputs writes beside its inputs' folders (inr_cli.run_folder.ROOT_FILES, lock aside).
SUMMARY_NAMES = ("summary.json", "summary.md", "summary.png", "index.html")
MEMORY_HINT = "the output does not fit; lower --scale, --width, --height, --resolution or -n"  # as inr_cli.app says
# Renders of at most this many passes of the network show no progress bar (they take a moment).
RENDER_PASSES_WITHOUT_A_BAR = 4


@dataclass(frozen=True)
class DecoderSampleOptions:
    """What `inr sample` takes for a JIIO-trained decoder (None / False: not given)."""

    count: int | None = None
    fid: str | None = None
    fid_model: Path | None = None
    fid_count: int | None = None
    seed: int = 0
    as_json: bool = False
    individual: bool = False  # one PNG per sample besides the grid
    show_progress: bool = False  # a progress bar over FID's Inception passes (minutes for thousands of images)

    def validate(self) -> None:
        """Usage errors, checked before any file is read (exit code 2, as for any bad option value)."""
        check(self.count is None or 1 <= self.count <= MAX_DECODER_SAMPLES, "count",
              f"must be between 1 and {MAX_DECODER_SAMPLES}, got {self.count}")
        check(self.fid_count is None or self.fid_count >= 2, "fid_count", f"must be at least 2, got {self.fid_count}")
        for name, what in (("fid_count", "limits the real images of the FID"), ("fid_model", "is the FID's network")):
            check(getattr(self, name) is None or self.fid is not None, name, f"{what}: it needs --fid")

    def given_flags(self) -> list[str]:
        """The flags given, except --seed (which has a default, so it is always "given")."""
        flags = {"count": "-n", "fid": "--fid", "fid_model": "--fid-model", "fid_count": "--fid-count",
                 "as_json": "--json", "individual": "--individual"}
        return [flag for name, flag in flags.items() if getattr(self, name) not in (None, False, 0)]


def checkpoints_in(paths: list[str]) -> list[Path]:
    """The checkpoints ``inr sample PATH...`` names: files as given (``-``: paths on stdin); a run folder stands for
    its checkpoint (:data:`CHECKPOINT_NAMES`), and a folder of runs (``inr fit``'s --out over several inputs) for
    theirs, in name order. A folder with none stays as it is, to fail on its own turn."""
    found: list[Path] = []
    for path in map(Path, expand_inputs(paths, default=None)):
        if not path.is_dir():
            found.append(path)
            continue
        own = [path / name for name in CHECKPOINT_NAMES if (path / name).is_file()]
        try:
            inside = [] if own else sorted(run / name for run in path.iterdir() if run.is_dir()
                                           for name in CHECKPOINT_NAMES if (run / name).is_file())
        except OSError as error:  # a folder we may not list
            raise UserError(f"{path}: unreadable folder ({error.strerror or error})") from None
        found += own or inside or [path]
    return found


def read_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: a folder with no {' or '.join(CHECKPOINT_NAMES)} in it or in its immediate "
                        "subfolders; pass a checkpoint file or a run folder")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None
    return deserialize(data, source=str(path))


def run_config_from_payload(payload: dict, checkpoint: Path) -> FitCommandConfig:
    """The run's whole config, as a version-2 checkpoint saved it, or from a version-1 checkpoint's flat one;
    it must be one `inr fit` could have run, and name the architecture the checkpoint holds."""
    current = payload.get("version", 1) >= 2
    saved = payload.get("config")
    if not isinstance(saved, dict):
        raise UserError(f"{checkpoint}: checkpoint lacks config (the settings of the run that wrote it)")
    signal = payload.get("signal")
    kind = saved.get("modality") if current else signal.get("kind") if isinstance(signal, dict) else None
    if kind not in modality_names():
        raise UserError(f"{checkpoint}: holds a {kind or 'unknown'} network, which cannot be sampled")
    try:
        config = FitCommandConfig.from_dict(saved) if current else FitCommandConfig.from_flat_dict(kind, saved)
        config.validate()
    except InvalidSetting as error:  # a bad file, not a bad option: exit code 1
        raise UserError(f"{checkpoint}: checkpoint config setting {error}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{checkpoint}: checkpoint config is unreadable ({type(error).__name__}: {error})") from None
    arch, fit = payload["architecture"], config.fit
    for name, recorded in (("name", fit.model), ("hidden", fit.hidden), ("layers", fit.layers)):
        if arch[name] != recorded:
            raise UserError(f"{checkpoint}: checkpoint architecture {name} is {arch[name]!r} but its run's config "
                            f"says {recorded!r}; the file was edited or damaged")
    return config


def saved_epoch(target: Path) -> int:
    """The epoch a training checkpoint (a decoder's or a classifier's) holds; 0: none there, or not one that can be
    read."""
    try:
        return int(read_checkpoint(target).get("epoch") or 0) if target.is_file() else 0
    except UserError:
        return 0


def check_render_memory(target: SampleTarget, channels: int, network_bytes: int, modality: Modality, out: Path
                        ) -> None:
    """Refuse, before allocating, a sample whose values (and on the CPU the network's working set,
    ``network_bytes``) need more memory than is available."""
    # Host bytes per rendered value at the peak of writing it: the modality's (Modality.render_bytes_per_value).
    needed = math.prod(target.grid) * channels * modality.render_bytes_per_value + network_bytes
    available = available_host_bytes()
    if needed > available:
        flags = ", ".join(SAMPLE_FLAGS[name] for name in modality.sample_settings)
        raise UserError(f"{out}: this sample ({' x '.join(map(str, target.grid))} points, {channels} channels) "
                        f"needs about {needed / 1e9:.1f} GB of memory, {available / 1e9:.1f} GB is available; "
                        f"ask for a smaller one ({flags})")


def sample_names(checkpoints: list[Path]) -> list[str]:
    """A name per checkpoint for its sample in a shared --out folder: its run folder's name (``runs/set/photo/
    checkpoint.pt``: ``photo``), numbered from the second time a name comes up (``photo-2``), as `inr fit` names
    the folders of inputs that share a name."""
    return numbered([checkpoint.absolute().parent.name or checkpoint.stem for checkpoint in checkpoints])


def run_samples(checkpoints: list[Path], request: SampleRequest, *, out: Path | None = None, device: str = "auto",
                decoder: DecoderSampleOptions = DecoderSampleOptions(), on_written=print, overwrite: bool = False,
                out_is_folder: bool = False, show_progress: bool = False) -> int:
    """`inr sample` over one checkpoint or several: the options are checked once, before any file is read; then
    each checkpoint is sampled in turn, in this one process. With several, ``out`` is a folder that receives
    each sample as NAME-SAMPLE (a decoder's draws in a folder NAME; :func:`sample_names`), or, without it, each
    sample goes beside its checkpoint; so does one fitted network's sample when ``out`` is a folder (an existing
    one, or ``out_is_folder``: it was given with a trailing slash). A checkpoint that fails, whatever the error
    (writing its files included), is reported on one stderr line and the others go on; nothing more is printed
    about it (the exit code says that one failed), as with `inr fit`'s several inputs. Returns the exit code: 1 if
    any failed. ``on_written`` receives each file written. ``overwrite``: an existing file may be replaced.
    ``show_progress``: a bar over each fitted network's render that takes more than a few passes."""
    request.validate()
    decoder.validate()
    check_device_name(device)
    several = len(checkpoints) > 1
    if several and out is not None:
        check(out.is_dir() if out.exists() else not out.suffix or out_is_folder, "out",
              f"with several checkpoints must be a folder (each sample is written into it, named after its run "
              f"folder), got {out}")
    into_folder = out is not None and (several or out_is_folder or out.is_dir())
    failed = 0
    for checkpoint, name in zip(checkpoints, sample_names(checkpoints)):
        try:
            written = _one_line_errors(checkpoint, lambda: run_sample(
                checkpoint, request, out=out, device=device, decoder=decoder, overwrite=overwrite,
                name_in_folder=name if into_folder else None, several=several, show_progress=show_progress),
                several)
        except UserError as error:
            if not several:
                raise
            failed += 1
            print(f"inr: error: {error}", file=sys.stderr, flush=True)
            continue
        if written is not None:
            on_written(written)
    return 1 if failed else 0


def _one_line_errors(checkpoint: Path, sample, several: bool):
    """``sample()``, a write of it that failed (a full disk, a folder that went away) a UserError of one line; with
    ``several`` checkpoints any other error too (an allocation that failed, anything else), so that one
    checkpoint's failure does not end the others'. Alone, those are the entry point's to report (an allocation that
    failed in one line with what to lower, a bug with its traceback)."""
    try:
        return sample()
    except UserError:
        raise
    except OSError as error:
        where = error.filename if error.filename is not None else checkpoint
        raise UserError(f"{where}: {error.strerror or first_line(error)}") from None
    except (MemoryError, RuntimeError) as error:
        if not several:
            raise
        if not out_of_memory(error):
            raise UserError(f"{checkpoint}: {type(error).__name__}: {first_line(error)}") from None
        raise UserError(f"{checkpoint}: {out_of_memory_message(error, MEMORY_HINT)}") from None
    except Exception as error:  # noqa: BLE001 - one checkpoint's failure, reported on its line
        if not several:
            raise
        raise UserError(f"{checkpoint}: {type(error).__name__}: {first_line(error)}") from None


def writable_sample_path(out: Path, overwrite: bool) -> Path:
    """Where a sample asked for as ``out`` is written: ``out`` itself, or, for a symbolic link to a file, the file
    it points to (the link stays). Refused in one line: a link that points nowhere; a file that a run's report in
    its folder lists as that run's own (its target, reconstruction, checkpoint, report), whatever ``overwrite``
    says; any other file that exists, unless ``overwrite``."""
    path = out
    if out.is_symlink():
        path = Path(os.path.realpath(out))
        if not path.exists():
            raise UserError(f"--out {out} is a symbolic link to {os.readlink(out)}, which does not exist; choose "
                            "another --out")
    if path.is_dir():
        raise UserError(f"{out}: is a folder, where the sample's file would go; choose another --out")
    owner = _run_listing(path)
    if owner is not None:
        raise UserError(f"{out}: belongs to the run in {owner.parent} ({owner.name} lists it as one of its files), "
                        "which this sample would replace; choose another --out")
    if path.exists() and not overwrite:
        raise UserError(f"{out}: already exists; add --overwrite to replace it, or choose another --out")
    return path


def _run_listing(path: Path) -> Path | None:
    """The report (or summary) of a run in ``path``'s folder that lists ``path`` as one of the run's files, or is
    ``path``; None when there is none. `inr sample`'s own reports (a decoder's draws) do not count: a later sample
    replaces them."""
    folder = path.parent
    report = folder / "report.json"
    try:
        written = json.loads(report.read_text()) if report.is_file() else None
    except (OSError, UnicodeDecodeError, ValueError):
        written = None
    if isinstance(written, dict) and written.get("command") != "sample":
        files = written.get("files")
        listed = {Path(str(name)).name for name in files.values()} if isinstance(files, dict) else set()
        if path.name in listed | {report.name}:
            return report
    if (folder / SUMMARY_NAMES[0]).is_file() and path.name in SUMMARY_NAMES:
        return folder / SUMMARY_NAMES[0]
    return None


def run_sample(checkpoint: Path, request: SampleRequest, *, out: Path | None = None, device: str = "auto",
               decoder: DecoderSampleOptions = DecoderSampleOptions(), name_in_folder: str | None = None,
               overwrite: bool = False, several: bool = True, show_progress: bool = False) -> Path | None:
    """Validate the request, then render the sample (or the decoder's draws). Returns the file written.
    ``show_progress``: a progress bar over a fitted network's render (a decoder's FID has its own).
    ``name_in_folder``: ``out`` is a folder, this one's sample goes in as NAME-SAMPLE; a decoder's draws go into
    its folder NAME when ``out`` is shared with other checkpoints' samples (``several``), else into ``out``."""
    request.validate()
    decoder.validate()
    check_device_name(device)
    payload = read_checkpoint(checkpoint)
    if payload.get("kind") == CLASSIFIER_KIND:
        raise UserError(f"{checkpoint}: holds {checkpoint_holds(payload)}, which draws nothing; attack it with "
                        "`inr jiio-robust --classifier`")
    if is_decoder_payload(payload):
        stray = [SAMPLE_FLAGS[name] for name in request.given()]
        if stray:
            raise UserError(f"{checkpoint}: {' '.join(stray)} does not apply to a decoder checkpoint "
                            "(it takes -n, --fid, --fid-model, --fid-count, --seed, --individual, --json)")
        from inr_cli.jiio.decoder_sample import sample_decoder
        if name_in_folder is not None and several:
            out = out / name_in_folder
        return sample_decoder(checkpoint, payload, out=out, device_name=device, count=decoder.count, fid=decoder.fid,
                              fid_model=decoder.fid_model, fid_count=decoder.fid_count, seed=decoder.seed,
                              as_json=decoder.as_json, individual=decoder.individual,
                              show_progress=decoder.show_progress, overwrite=overwrite)
    if decoder.given_flags():
        raise UserError(f"{checkpoint}: {' '.join(decoder.given_flags())} only applies to a decoder checkpoint")

    model = model_from_payload(payload, source=str(checkpoint))  # validated first; on the CPU until rendering
    config = run_config_from_payload(payload, checkpoint)
    modality = get_modality(config.modality)
    info = payload.get("signal", {})
    stray = [SAMPLE_FLAGS[name] for name in request.given() if name not in modality.sample_settings]
    if stray:
        allowed = ", ".join(SAMPLE_FLAGS[name] for name in modality.sample_settings)
        raise UserError(f"{checkpoint}: {' '.join(stray)} does not apply to {modality.name} checkpoints "
                        f"(they take {allowed})")
    try:
        target = modality.sample_target(info, request)
    except KeyError as missing:
        raise UserError(f"{checkpoint}: checkpoint signal lacks {missing}, which {modality.name} samples need") \
            from None
    if name_in_folder is not None:
        out = out / f"{name_in_folder}-{target.default_name}"
    out = out or checkpoint.parent / target.default_name
    if out.suffix.lower() not in target.suffixes:
        raise UserError(f"{out}: {modality.name} samples are written as {' or '.join(target.suffixes)}; "
                        "give such a file name, or a folder to write it into (ending in /)")
    torch_device = resolve_device(device)
    fit, out_features = config.fit, payload["architecture"]["out_features"]
    chunk = render_chunk_size(fit.hidden, fit.layers, torch_device, fit.solver_tensors())
    # The chunked passes' activations and solver state share the host's memory when rendering on the CPU.
    per_point = activation_bytes_per_point(fit.hidden, fit.layers, training=False) + 4 * fit.hidden * \
        fit.solver_tensors()
    check_render_memory(target, out_features, chunk * per_point if torch_device.type == "cpu" else 0, modality, out)
    network = FittedNetwork(model=model.to(torch_device), out_features=out_features, device=torch_device,
                            chunk=chunk, info=info, config=config)
    destination = writable_sample_path(out, overwrite)
    prepare_output_dir(destination.parent)
    # A bar where the render takes several passes (minutes for a large image on a CPU); a few passes need none.
    worth_a_bar = show_progress and math.prod(target.grid) > RENDER_PASSES_WITHOUT_A_BAR * chunk
    with counter_progress(f"rendering {destination.name}", target.grid[0], enabled=worth_a_bar) as update, \
            reporting_render_progress(None if update is None else lambda done, total: update(done, total=total)):
        modality.write_sample(network, target, destination)
    return out
