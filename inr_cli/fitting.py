"""What every `inr fit` run shares, whatever the modality: inputs, output folders, the fits (one at a time or in
groups, :mod:`inr_cli.fit_groups`), handing each fitted input to its writer (:mod:`inr_cli.fit_outputs`), and
the dataset summary.

:func:`run_fit_command` validates the run's config once, then for each input asks the modality to load it,
fits the signal with the modality's recipe, and lets the modality measure and write its own outputs.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from inr_cli.cluster import Cluster
from inr_cli.interrupts import StopRequest
from inr_cli.errors import phrase
from inr_cli.fit_options import OutputOptions
from inr_cli.files import (expand_inputs, missing_ancestors, numbered, prepare_output_dir, refuse_empty_folder,
                           remove_if_empty)
from inr_cli.fit_groups import WaitingGroups
from inr_cli.fit_outputs import CHECKPOINT, TrainedRun, input_stem, rendered_run, write_run
from inr_cli.modalities.base import FitCommandConfig, LoadedSignal, Modality, get_modality
from inr_cli.peak_memory import measure_peak_memory
from inr_cli.progress import fit_progress, status_line, stderr_console
from inr_cli.reports import human_summary, to_json
from inr_cli.run_folder import (ROOT_FILES, RunFolder, finished_report, load_training_state,
                               save_training_state)
from inr_cli.summary import write_summary
from inr_cli.tensorboard_log import INSTALL_HINT, FitLog, open_log, tensorboard_available, with_log
from inr_core.clock import PROCESS_STARTED_AT
from inr_core.errors import UserError, check
from training.fitting.config import FitConfig, resolve_config
from training.fitting.grouped import fit_group
from training.fitting.signal import fingerprint
from training.fitting.control import FitControl, Interrupted
from training.fitting.fit import fit


def run_root(sources: list[str], out: Path | None, model: str) -> Path:
    """The run's folder: ``--out``, or ``runs/NAME-MODEL-TIME`` (one input, or several from one folder NAME, as a
    folder given whole is) / ``runs/MODEL-TIME`` (several from anywhere)."""
    if out is not None:
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if len(sources) == 1:
        return Path("runs") / f"{input_stem(sources[0])}-{model}-{stamp}"
    folders = {None if source.startswith("skimage:") else Path(source).resolve().parent for source in sources}
    shared = folders.pop() if len(folders) == 1 else None
    shared = shared.name if shared is not None else ""  # "" too for the filesystem root, which has no name
    return Path("runs") / (f"{shared}-{model}-{stamp}" if shared else f"{model}-{stamp}")


def output_dirs(sources: list[str], root: Path) -> list[Path]:
    """One folder for one input (the root); with several inputs, one sub-folder each (names made unique, and
    never those of the files the run writes beside them: an input named ``index.html.png`` gets ``index.html-2``,
    nor ``.`` and ``..``, the stems of ``..png`` and ``...png``)."""
    if len(sources) == 1:
        return [root]
    return [root / name for name in numbered([input_stem(source) for source in sources], (*ROOT_FILES, ".", ".."))]


class GroupDivergence(UserError):
    """A signal's loss ran away in a group fit (it is then fitted again alone)."""


@dataclass
class Job:
    """One input of the run, loaded, with its resolved fit config."""

    index: int
    source: str
    out_dir: Path
    loaded: LoadedSignal
    fit_config: FitConfig


def load_job(modality: Modality, index: int, source: str, out_dir: Path, config: FitCommandConfig) -> Job:
    refuse_empty_folder(source, modality.folder_suffixes)
    loaded = modality.load(source, config.options, config.fit.seed)
    # Resolved here, so a missing CUDA device fails before any folder exists.
    return Job(index, source, out_dir, loaded, resolve_config(config.fit, loaded.signal, modality.recipe))


def fit_control(job: Job, output: OutputOptions, stop: StopRequest) -> FitControl:
    """Saves of the fit's state into its folder (every ``--checkpoint-every`` steps, and on a stop request), and
    the state to resume from with ``--resume``."""
    # Which input a saved state belongs to: hashed once, and only if a state is read or written.
    signal = functools.cache(lambda: fingerprint(job.loaded.signal))
    resume = load_training_state(job.out_dir, job.fit_config.to_dict(), job.source, signal()) if output.resume \
        else None
    return FitControl(resume=resume,
                      save=lambda state: save_training_state(job.out_dir, {**state, "signal": signal()}),
                      save_every_steps=output.checkpoint_every, stop_requested=stop.requested)


def train_one(job: Job, config: FitCommandConfig, *, show_progress: bool, turn_started_at: float,
              control: FitControl | None = None, log: FitLog | None = None) -> TrainedRun:
    """Fit one loaded input; its run folder is made here (and removed again if the fit fails)."""
    created = missing_ancestors(job.out_dir)
    prepare_output_dir(job.out_dir)
    try:
        with fit_progress(input_stem(job.source), job.fit_config.steps, enabled=show_progress) as on_progress, \
                measure_peak_memory(torch.device(job.fit_config.device)) as peak:
            try:
                result = fit(job.loaded.signal, job.fit_config, on_progress=with_log(on_progress, log),
                             control=control)
            except UserError as error:  # name the input: among several, its line must say whose fit failed
                raise UserError(f"{job.source}: {error}") from None
    except BaseException:
        remove_if_empty(created)  # leave no empty folders behind for a fit that never finished
        if log is not None:
            log.close()
        raise
    return TrainedRun(job.source, job.loaded, job.out_dir, replace(config, fit=result.config), result,
                      result.first_step_at - turn_started_at, log, peak.megabytes)


def train_group(jobs: list[Job], config: FitCommandConfig, *, show_progress: bool, turn_started_at: float,
                stop: StopRequest, open_log: Callable[[Job], FitLog | None] | None = None
                ) -> list[TrainedRun | UserError]:
    """Fit same-shaped loaded inputs together as one stacked network (:mod:`training.fitting.grouped`). A group
    saves no state of its own: interrupted, it starts again on --resume (on the CPU with the same result).
    ``open_log`` opens a member's TensorBoard run once the group is done, and only for a member that succeeded
    (one that diverged is fitted again alone, into its own run)."""
    created = []
    for job in jobs:
        created.append(missing_ancestors(job.out_dir))
        prepare_output_dir(job.out_dir)
    label = f"{len(jobs)} inputs ({input_stem(jobs[0].source)}, ...)"
    try:
        with fit_progress(label, jobs[0].fit_config.steps, enabled=show_progress) as on_progress, \
                measure_peak_memory(torch.device(jobs[0].fit_config.device)) as peak:
            outcomes = fit_group([job.loaded.signal for job in jobs], [job.fit_config for job in jobs],
                                 on_progress=on_progress, stop_requested=stop.requested)
    except BaseException:
        for folders in created:
            remove_if_empty(folders)
        raise
    runs: list[TrainedRun | UserError] = []
    for job, folders, outcome in zip(jobs, created, outcomes):
        if outcome.error is not None:
            remove_if_empty(folders)
            runs.append(GroupDivergence(f"{job.source}: {outcome.error}"))
        else:
            log = open_log(job) if open_log is not None else None
            if log is not None:
                log.training_curves(outcome.result)  # a member's own curve is known once the group is done
            runs.append(TrainedRun(job.source, job.loaded, job.out_dir, replace(config, fit=outcome.result.config),
                                   outcome.result, outcome.result.first_step_at - turn_started_at, log,
                                   peak.megabytes))
    return runs


def _log(output: OutputOptions, job: Job) -> FitLog | None:
    """The input's TensorBoard run (--tensorboard DIR): DIR/RUN-FOLDER for one input, DIR/RUN-FOLDER/INPUT for
    several (``output.out`` is the run's root folder by then)."""
    return open_log(output.tensorboard, job.out_dir, output.out)


class _Inline:
    """The executor interface, run in the calling thread: writing between fits."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def submit(self, function, *args) -> Future:
        done: Future = Future()
        try:
            done.set_result(function(*args))
        except Exception as error:  # handed on to whoever reads the result, as a pool's future would
            done.set_exception(error)
        return done


class _Outcomes:
    """Each input's outcome: its report, or the message of its failure (printed on stderr at once, by the
    process that met it). A single process prints reports in input order as soon as every earlier input is
    settled (inputs may finish out of order when same-shaped ones wait to fit together); ranks of a torchrun
    launch hand theirs to rank 0, which prints them all in input order at the end."""

    def __init__(self, modality: Modality, output: OutputOptions, streaming: bool, order: list[int],
                 sources: list[str]):
        self.modality, self.output, self.streaming, self.sources = modality, output, streaming, sources
        self.by_index: dict[int, dict | str] = {}
        self._unannounced = list(order)  # this process's inputs, in input order, not yet printed

    def failed(self, index: int, error: UserError) -> None:
        message = phrase(error)
        self.by_index[index] = message
        stderr_console.print(f"inr: error: {message}", markup=False, soft_wrap=True)
        self._announce_ready()

    def finished_earlier(self, index: int, report: dict) -> None:
        self._settled(index, report)

    def written(self, index: int, pending: Future) -> None:
        try:
            report = pending.result()
        except UserError as error:
            self.failed(index, error)
            return
        self._settled(index, report)

    def _settled(self, index: int, report: dict) -> None:
        if report.get("stopped_early"):  # written, but short of its steps: a failure, said as one
            stderr_console.print(f"inr: error: {report['input']}: {report['stopped_early']['message']}",
                                 markup=False, soft_wrap=True)
        self.by_index[index] = report
        self._announce_ready()

    def _announce_ready(self) -> None:
        while self.streaming and self._unannounced and self._unannounced[0] in self.by_index:
            index = self._unannounced.pop(0)
            self.announce(index, self.by_index[index])

    def announce(self, index: int, outcome: dict | str) -> None:
        """Print an input's report (a failure's message is on stderr already). With --json every input has its
        line, in input order, a failed one ``{"input", "status": "failed", "error"}``, so that a script pairing
        lines with inputs stays aligned."""
        if not isinstance(outcome, dict):
            if self.output.as_json:
                failure = {"input": self.sources[index], "status": "failed", "error": outcome}
                sys.stdout.write(to_json(failure, indent=None) + "\n")
                sys.stdout.flush()
            return
        report = outcome
        if self.output.as_json:
            sys.stdout.write(to_json(report, indent=None) + "\n")
            sys.stdout.flush()
        else:
            print(human_summary(report, self.modality.summary_line(report)), flush=True)


def _fit_inputs(modality: Modality, config: FitCommandConfig, jobs: list[tuple[int, str, Path]],
                output: OutputOptions, outcomes: _Outcomes, show_progress: bool, stop: StopRequest) -> None:
    """Load and fit ``(index, source, folder)`` jobs. Inputs of one shape fit together as one stacked network
    (``output.group_size`` at most; a few dozen inputs of other shapes may come between them); on CUDA each
    input's files are written while the next ones train. With ``--resume`` an input whose folder has its report
    is not fitted again. Raises :class:`Interrupted` when ``stop`` is requested (after the files in flight)."""
    background = output.write_in_background
    if background is None:
        background = config.fit.device != "cpu" and torch.cuda.is_available()
    writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inr-writer") if background else _Inline()
    turn_started_at = PROCESS_STARTED_AT
    pending: list[tuple[int, Future]] = []  # the last input handed to the writer, not yet settled
    groups = WaitingGroups(output.group_size)

    def hand_over(index: int, run: TrainedRun | UserError, writer) -> None:
        for earlier in pending:  # at most one input's files in flight
            outcomes.written(*earlier)
        pending.clear()
        if isinstance(run, UserError):
            outcomes.failed(index, run)
            return
        # (Written here, between fits, on a CPU: a shape's extraction and preview, or a long video's encoding, take
        # a minute or more after the bar has finished; the spinner says what is happening.)
        with status_line(f"writing the outputs of {run.source}", show_progress):
            try:
                run = rendered_run(modality, run)  # here, in the fit's thread: not in the writer's
            except UserError as error:
                outcomes.failed(index, error)
                return
            pending.append((index, writer.submit(write_run, modality, run)))

    def fit_now(group: list[Job] | None, writer) -> None:
        nonlocal turn_started_at
        if not group:
            return
        try:
            if len(group) == 1:
                runs = [train_one(group[0], config, show_progress=show_progress, turn_started_at=turn_started_at,
                                  control=fit_control(group[0], output, stop), log=_log(output, group[0]))]
            else:
                runs = train_group(group, config, show_progress=show_progress, turn_started_at=turn_started_at,
                                   stop=stop, open_log=lambda job: _log(output, job))
                # A signal whose loss ran away in the group is fitted again alone, where it can be rolled back.
                runs = [run if not isinstance(run, GroupDivergence) else
                        _alone(job, config, output, stop, show_progress) for job, run in zip(group, runs)]
        except UserError as error:  # one input's (its fit's failure names it) or the whole group's: name each
            runs = [error] if len(group) == 1 else [UserError(f"{job.source}: {error}") for job in group]
        except Interrupted as stopped:  # say whose fit stopped: with several inputs the step alone says little
            stopped.fitting = group[0].source if len(group) == 1 else \
                f"{len(group)} inputs fitted together ({group[0].source}, ...; a group saves no state: it starts again)"
            raise
        turn_started_at = time.perf_counter()
        for job, run in zip(group, runs):
            hand_over(job.index, run, writer)

    try:
        with writer_pool as writer:
            for index, source, out_dir in jobs:
                if stop.requested():
                    raise Interrupted(0)
                try:
                    earlier = finished_report(out_dir, source, config.to_dict()) if output.resume else None
                    if earlier is not None:  # where it is now: the run's folder may have moved since
                        outcomes.finished_earlier(index, {**earlier, "output_dir": str(out_dir)})
                        continue
                    # (An hour of audio, a folder of video frames or a large mesh takes seconds to read and prepare.)
                    with status_line(f"reading {source}", show_progress):
                        job = load_job(modality, index, source, out_dir, config)
                except UserError as error:
                    hand_over(index, error, writer)
                    continue
                fit_now(groups.add(job), writer)
            for group in groups.drain():
                fit_now(group, writer)
    finally:
        for earlier in pending:  # the files of a finished fit are written even when the run is interrupted
            outcomes.written(*earlier)


def _alone(job: Job, config: FitCommandConfig, output: OutputOptions, stop: StopRequest, show_progress: bool
           ) -> TrainedRun | UserError:
    try:  # (a failure of the fit itself names the input: train_one)
        return train_one(job, config, show_progress=show_progress, turn_started_at=time.perf_counter(),
                         control=fit_control(job, output, stop), log=_log(output, job))
    except UserError as error:
        return error


def run_fit_command(config: FitCommandConfig, paths: list[str], output: OutputOptions) -> int:
    """Validate ``config`` once, then fit every input; report each failure on one stderr line and carry on.
    Returns the exit code: 1 if any input failed, or stopped short of its steps (its loss ran away again after
    every rollback: its outputs hold its last good network, and its report says so in ``stopped_early``).

    On CUDA one input's outputs (pictures, checkpoint, report) are written by a background thread while the next
    input trains, so the device does not wait for PNG encoders and plots (``output.write_in_background``).
    Reports appear in input order either way, and each run folder is complete once its report.json exists.
    Launched by torchrun, the inputs are shared out between the ranks (:mod:`inr_cli.cluster`) and the run's
    folders, reports and summary are those a single process would write. With several inputs the run folder
    also gets the dataset summary (:mod:`inr_cli.summary`).
    """
    config.validate()
    _validate_output(output)
    modality = get_modality(config.modality)
    cluster = Cluster.from_environment()
    claimed: list[RunFolder] = []

    def claim_root() -> Path:
        root = run_root(sources, output.out, config.fit.model)
        # A checkpoint alone marks the folder as this command's run: a shape fit keeps it when its mesh or preview
        # failed (fit_outputs), and --resume must fit that input again, not take the folder for someone else's.
        claimed.append(RunFolder(root, run_marks=(CHECKPOINT,)).claim(overwrite=output.overwrite,
                                                                      resume=output.resume, several=len(sources) > 1))
        return root

    interrupted = False
    try:
        with StopRequest() as stop:
            sources = cluster.from_leader(lambda: expand_inputs(paths, modality.default_input,
                                                                modality.folder_suffixes))
            root = cluster.from_leader(claim_root)
            output = replace(output, out=root)  # from here on, the run's root folder (named by --out or not)
            folders = output_dirs(sources, root)
            config = replace(config, fit=replace(config.fit, device=cluster.device_for(config.fit.device)))
            share = cluster.my_share(len(sources))
            outcomes = _Outcomes(modality, output, streaming=not cluster.distributed, order=list(share),
                                 sources=sources)
            jobs = [(index, sources[index], folders[index]) for index in share]
            try:
                _fit_inputs(modality, config, jobs, output, outcomes,
                            show_progress=output.show_progress and cluster.is_leader, stop=stop)
            except Interrupted as stopped:
                interrupted = True
                where = f" at step {stopped.step}" if stopped.step else ""
                where += f" of {stopped.fitting}" if stopped.step and stopped.fitting else ""
                stderr_console.print(f"inr: interrupted{where}; resume with --resume", markup=False, soft_wrap=True)
                return stop.exit_code
            finally:
                # This process's inputs whose folder is still empty (made for a fit that a closed pipe or another
                # error stopped before its files were written): no empty folders left behind. Every write has
                # settled by now; other ranks' folders are theirs to tidy.
                for _index, _source, folder in jobs:
                    remove_if_empty([folder])
        everything = cluster.gather_to_leader(outcomes.by_index)
        code = 0
        if cluster.is_leader:
            if cluster.distributed:
                for index in sorted(everything):
                    outcomes.announce(index, everything[index])
            if len(sources) > 1 and any(isinstance(outcome, dict) for outcome in everything.values()):
                write_summary(root, sources, everything, modality.summary_metrics,
                              f"{config.modality}: {config.fit.model} {config.fit.layers}L-{config.fit.hidden}D, "
                              f"{len(sources)} inputs")
            code = 1 if any(not isinstance(outcome, dict) or outcome.get("stopped_early")
                            for outcome in everything.values()) else 0
        return cluster.agree(code)
    finally:
        for folder in claimed:
            folder.release()
        cluster.close(wait=not interrupted)  # interrupted ranks do not wait for each other


def _validate_output(output: OutputOptions) -> None:
    check(output.group_size is None or output.group_size >= 1, "group_size",
          f"must be at least 1, got {output.group_size}")
    check(output.checkpoint_every is None or output.checkpoint_every >= 0, "checkpoint_every",
          f"must be 0 or more, got {output.checkpoint_every}")
    check(not (output.resume and output.overwrite), "resume", "and --overwrite exclude each other: choose one")
    check(not output.resume or output.out is not None, "resume", "needs --out: the run folder to continue")
    check(output.tensorboard is None or tensorboard_available(), "tensorboard", INSTALL_HINT)
