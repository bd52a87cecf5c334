"""Writing one fitted input's run folder: the modality's outputs, the training plot, the checkpoint, the page and
(last, so its presence means the run is complete) the report."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

from inr_cli.figures import write_psnr_plot
from inr_cli.errors import out_of_memory_message, phrase
from inr_cli.files import atomic_write_bytes, atomic_write_text, remove_written_on_failure
from inr_cli.modalities.base import QUALITY_KEYS, FitCommandConfig, LoadedSignal, Modality
from inr_cli.pages import write_run_page
from inr_cli.progress import stderr_console
from inr_cli.reports import REPORT_VERSION, to_json, versions
from inr_cli.run_folder import REPORT, TRAINING_STATE
from inr_cli.tensorboard_log import FitLog
from inr_core.errors import UserError, out_of_memory
from models.registry import count_stored_numbers
from training.fitting.checkpoint import checkpoint_payload, serialize
from training.fitting.fit import FitResult
from training.fitting.evaluate import bits_per_point

PSNR_PLOT = "psnr.png"
CHECKPOINT = "checkpoint.pt"
# What to lower when the outputs made after a fit (a shape's mesh extraction) run out of memory.
OUTPUTS_MEMORY_HINT = "the outputs made after the fit do not fit; lower --resolution"


def input_stem(source: str) -> str:
    """The input's name for titles and folders: a file's stem, or the photo's name of ``skimage:NAME``."""
    return source.split(":", 1)[1] if source.startswith("skimage:") else (Path(source).stem or "input")


@dataclass
class TrainedRun:
    """One input fitted, its outputs not yet written."""

    source: str
    loaded: LoadedSignal
    out_dir: Path
    config: FitCommandConfig  # resolved
    result: FitResult
    startup_seconds: float  # from this input's turn (the process's start, for the first) to its first step
    log: FitLog | None = None  # its TensorBoard run (--tensorboard), finished when the files are written
    # CUDA memory its fit allocated at most, beyond what was allocated before (a group's: the whole group's);
    # None on a CPU, where no allocator statistic is trustworthy (inr_cli/peak_memory.py)
    peak_memory_mb: float | None = None
    rendered: object = None  # what Modality.render_outputs gave, in the fit's thread (see rendered_run)
    checkpoint_written: bool = False  # already, before the outputs were made (Modality.checkpoint_first)


def _solver_warning(result: FitResult) -> str | None:
    evaluation = result.solver["evaluation"] if result.solver else None
    if not evaluation or evaluation["converged"]:
        return None
    # bfloat16 keeps 8 bits of mantissa: f(z) itself is rounded by ~4e-3, so no solve gets below that.
    advice = "give --tol 1e-2 with --precision bf16, or fit in fp32" if result.config.precision == "bf16" \
        and result.config.solver.tol < 1e-2 else "raise --max-iter or try --solver anderson"
    return (f"evaluation solve did not converge: max relative residual {evaluation['max_rel_residual']:.2e} "
            f"> tol {result.config.solver.tol:g} after up to {evaluation['iterations_max']} iterations ({advice})")


def _report_metrics(metrics: dict, measured: dict) -> dict:
    """A modality's metrics of the fit and those measured on its outputs, as report entries. Every report has
    the quality keys; a key in both is the modality's bug, not something for merge order to settle."""
    missing = [key for key in QUALITY_KEYS if key not in metrics]
    if missing:
        raise ValueError(f"the modality's metrics lack {', '.join(missing)}")
    both = metrics.keys() & measured.keys()
    if both:
        raise ValueError(f"report entries measured twice: {', '.join(sorted(both))}")
    return {**metrics, **measured}


def _write_checkpoint(run: TrainedRun) -> None:
    payload = checkpoint_payload(run.result, run.loaded.info, in_features=run.loaded.signal.dims,
                                 out_features=run.loaded.signal.channels, config=run.config.to_dict())
    atomic_write_bytes(run.out_dir / CHECKPOINT, serialize(payload))


def _kept_checkpoint(error: BaseException, run: TrainedRun) -> BaseException:
    """The error of outputs that failed after the checkpoint was written, saying that it is kept: a UserError as
    one line (a failed input of `inr fit` is one line on stderr, in --json and in the summary; running out of
    memory is this input's failure too, now that its network is safe), anything else (an interrupt, a bug's
    traceback) with a note."""
    kept = f"{run.out_dir / CHECKPOINT} holds the fitted network, kept: `inr sample` makes its outputs from it"
    if isinstance(error, UserError):
        return UserError(f"{phrase(error)} ({kept})")
    if out_of_memory(error):
        return UserError(f"{run.source}: {out_of_memory_message(error, OUTPUTS_MEMORY_HINT)} ({kept})")
    error.add_note(kept)
    return error


def rendered_run(modality: Modality, run: TrainedRun) -> TrainedRun:
    """``run`` with what its outputs need of the fitted network computed now, in the thread that fitted it (see
    :meth:`inr_cli.modalities.base.Modality.render_outputs`), before it goes to the writer. For a modality that
    writes its checkpoint first (``Modality.checkpoint_first``) the checkpoint is written here, before that."""
    if not modality.checkpoint_first:
        return replace(run, rendered=modality.render_outputs(run.loaded, run.result))
    _write_checkpoint(run)  # a failure here leaves nothing (an atomic write): the input fails as any write does
    try:
        return replace(run, rendered=modality.render_outputs(run.loaded, run.result), checkpoint_written=True)
    except BaseException as error:
        raise _kept_checkpoint(error, replace(run, checkpoint_written=True)) from None


def write_run(modality: Modality, run: TrainedRun) -> dict:
    """Write the modality's outputs, the plot, the checkpoint and (last) the report; return the report. If one
    cannot be written (a full disk), those written so far are removed again: a folder holding part of a run and no
    report would be refused by every later run into it (--resume and --overwrite included) as someone else's.

    The one exception is a checkpoint written before the outputs were made (``Modality.checkpoint_first``): the fitted
    network is worth more than a clean folder, so it stays, the error says so, and the input counts as failed (no
    report: --resume of a run over several inputs fits it again). An --overwrite that fails so puts the old run
    back whole, its own checkpoint over this one (inr_cli/run_folder.py): never a report beside another network."""
    try:
        with remove_written_on_failure():
            report = _write_files(modality, run)
    except BaseException as error:
        if run.log is not None:  # the input failed: its TensorBoard run ends here (the write's error is the one to say)
            with contextlib.suppress(OSError):
                run.log.close()
        if run.checkpoint_written:
            raise _kept_checkpoint(error, run) from None
        raise
    (run.out_dir / TRAINING_STATE).unlink(missing_ok=True)  # finished: nothing left to resume
    if run.log is not None:
        run.log.finish(run.result, report, run.loaded.signal, run.out_dir)
    return report


def _write_files(modality: Modality, run: TrainedRun) -> dict:
    source, loaded, out_dir, result = run.source, run.loaded, run.out_dir, run.result
    fit_config = result.config
    outputs = modality.write_outputs(loaded, result, out_dir, run.rendered)
    files = dict(outputs.files)
    if modality.psnr_plot:
        write_psnr_plot(out_dir / PSNR_PLOT, result.batch_psnr, result.evaluations,
                        f"{input_stem(source)}: {fit_config.model} {fit_config.layers}L-{fit_config.hidden}D",
                        kept_step=result.kept_step)
        files["psnr_plot"] = PSNR_PLOT
    if not run.checkpoint_written:
        _write_checkpoint(run)

    notes = list(loaded.notes) + list(result.notes) + list(outputs.notes)
    warning = _solver_warning(result)
    if warning:
        notes.append(f"warning: {warning}")
        stderr_console.print(f"inr: warning: {source}: {warning}", markup=False, soft_wrap=True)
    report = {
        "report_version": REPORT_VERSION,
        "input": source,
        "output_dir": str(out_dir),
        "model": fit_config.model,
        "params": result.params,
        # Every number the checkpoint stores for the network (an implicit model's u, v too), at 16 bits
        "bits_per_point": bits_per_point(count_stored_numbers(result.model), loaded.signal),
        "psnr_fp16_weights": result.psnr_fp16_weights,
        "steps": fit_config.steps,
        # The step whose network the outputs show (--keep best may keep an earlier one than the last).
        "kept_step": fit_config.steps if result.kept_step is None else result.kept_step,
        # Training ended before its last step (the loss ran away after every rollback): the input counts as failed,
        # though its outputs, of the last good network, are written.
        "stopped_early": None if result.stopped_early is None else result.stopped_early.report(),
        "seconds": result.train_seconds,  # a group's (its members trained at once): see group_size
        # Inputs trained together as one stacked network, this one included (1: alone); seconds / group_size is
        # this input's share, as the summary of a run over several inputs counts it.
        "group_size": result.group_size,
        "steps_per_second": result.steps_per_second,
        "eval_seconds": result.eval_seconds,
        "compile_seconds": result.compile_seconds,
        "startup_seconds": run.startup_seconds,
        "peak_memory_mb": run.peak_memory_mb,
        "device": fit_config.device,
        "precision": fit_config.precision,
        "compiled": result.compiled,
        "value_range": [0.0, 1.0],
        **_report_metrics(modality.metrics(loaded, result), outputs.metrics),
        modality.name: loaded.info,
        "notes": notes,
        "history": result.evaluations,
        "solver": result.solver,
        "files": {**files, "checkpoint": CHECKPOINT, "report": REPORT},
        "config": run.config.to_dict(),
        "versions": versions(fit_config.device),
    }
    report = write_run_page(out_dir, report, loaded.signal, loaded.info)  # index.html (and the target it shows)
    # The report goes last: its presence means every other file of the run is complete.
    atomic_write_text(out_dir / REPORT, to_json(report) + "\n")
    return report
