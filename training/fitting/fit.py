"""The fit loop: one network, one signal, Adam on the signal's loss.

The loop knows a signal only as coordinates, targets, a loss and an evaluation (see
:mod:`training.fitting.signal`); which modality it came from is none of its business.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from inr_core.errors import UserError
from models import build_model, count_parameters
from training.adam import Adam
from training.fitting.amortized import FixpointCache, solved_from_zero_note
from training.fitting.batches import BatchSampler
from training.fitting.best import BestNetwork, kept_note
from training.fitting.config import FitConfig, resolve_config
from training.fitting.control import (MAX_ROLLBACKS, FitControl, Interrupted, RunawayGuard,
                                      rng_state, set_learning_rate, set_rng_state, to_host)
from training.fitting.devices import (cpu_piece_points, loss_read_interval, memory_budget_bytes, render_chunk_size,
                                      synchronize)
from training.fitting.evaluate import GridEvaluation, SampleEvaluation, psnr_with_half_precision_weights
from training.fitting.precision import bf16_ceiling_note, matmul_precision, precision_note, precision_scope
from training.fitting.recipes import RecipeRule
from training.fitting.signal import GridPoints, GridSignal, Signal, training_loss
from training.fitting.render import eval_mode
from training.fitting.step import TrainingStep, piece_bounds
from training.metrics import psnr_from_mse


@dataclass
class FitProgress:
    step: int
    steps: int
    loss: float
    psnr: float  # on the step's batch, from the training loss (values in [0, 1])
    seconds: float
    learning_rate: float | None = None  # the optimizer's rate now (a Python number: reading it costs no sync)


@dataclass
class FitResult:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: FitConfig  # resolved
    params: int
    train_seconds: float  # the optimisation alone: evaluations and the first (compiling) step excluded
    timed_steps: int  # the steps train_seconds covers (all but the first when the step was compiled)
    eval_seconds: float
    compiled: bool  # the training step ran compiled (False: not asked for, or compilation failed; see notes)
    compile_seconds: float  # the first step of a compiled fit, compilation included (0 when not compiled)
    setup_seconds: float  # from the call to the first step: model, optimizer, data on the device
    first_step_at: float  # time.perf_counter() when the first step began (for start-up measured by the caller)
    batch_psnr: list[float]  # per step, from the training loss
    final: GridEvaluation | SampleEvaluation
    evaluations: list[dict] = field(default_factory=list)  # {"step", "psnr", "psnr_holdout", ...} along the run
    solver: dict | None = None  # implicit models: iterations and residuals (see solver_report)
    notes: list[str] = field(default_factory=list)  # what the user should know (compile fallback, precision)
    # PSNR with the weights rounded to float16 (grid signals): the quality at the rate reports count
    psnr_fp16_weights: float | None = None
    kept_step: int | None = None  # the step whose network this is (--keep best); None: the last step's
    stopped_early: StoppedEarly | None = None  # training ended before config.steps: the loss kept running away
    group_size: int = 1  # how many signals trained with this one as one stacked network, itself included

    @property
    def steps_per_second(self) -> float | None:
        return self.timed_steps / self.train_seconds if self.train_seconds > 0 else None


@dataclass
class StoppedEarly:
    """Why a fit ended before its last step: its loss ran away once more after ``MAX_ROLLBACKS`` rollbacks, at
    ``step`` (reaching ``loss``), and it ended with the last good network (of ``kept_step``), not with nothing."""

    step: int
    loss: float
    kept_step: int

    def message(self) -> str:
        return (f"training diverged at step {self.step} (loss {self.loss}) after {MAX_ROLLBACKS} rollbacks at lower "
                f"learning rates; its outputs hold the network of step {self.kept_step}, the last good one; try a "
                "smaller --lr")

    def report(self) -> dict:
        return {"step": self.step, "loss": self.loss, "kept_step": self.kept_step, "message": self.message()}


def make_model(config: FitConfig, signal: Signal) -> nn.Module:
    return build_model(config.model, signal.dims, signal.channels, hidden=config.hidden, layers=config.layers,
                       frequency=config.frequency, one_pass=config.explicit, settings=config.solver)


def make_optimizer(parameters, config: FitConfig, device: torch.device) -> torch.optim.Optimizer:
    # The fused kernel is the fastest Adam on CUDA; on the CPU the default (single-tensor) update is, which Adam
    # (training.adam) applies without loading torch.compile's front end.
    return Adam(parameters, lr=config.lr, fused=device.type == "cuda" or None)


def divergence_error(step: int, loss: float, detail: str = "") -> UserError:
    return UserError(f"training diverged at step {step} (loss {loss}){detail}; try a smaller --lr")


def _batch_coordinates(signal: GridSignal, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """``batch`` (positions among the training points) -> their coordinates, made from their grid indices."""
    points = GridPoints(signal.grid_shape, device)
    rows = signal.rows_of(signal.train)
    if rows is None:
        return points
    rows = rows.to(device)
    return lambda batch: points(rows[batch])


def amortized_cache(config: FitConfig, n_train: int, device: torch.device, signals: int | None = None
                    ) -> tuple[FixpointCache | None, str | None]:
    """The fixpoint cache for an amortized implicit fit (of ``signals`` stacked networks), or why there is none."""
    if not (config.is_implicit() and config.amortize):
        return None, None
    cache_bytes = 4 * n_train * config.hidden * (signals or 1)
    if cache_bytes > memory_budget_bytes(device) // 4:
        # A state per training point would crowd out the activations: solve each step instead.
        return None, f"no amortized cache: it would need {cache_bytes / 2**30:.1f} GiB for {n_train} points"
    return FixpointCache(n_train, config.hidden, device, signals), None


def _read_back(entry: dict) -> dict:
    """A progress entry with its device tensors read back as Python numbers."""
    return {key: value.item() if isinstance(value, torch.Tensor) else value for key, value in entry.items()}


def fit(signal: Signal, config: FitConfig, recipe_rule: RecipeRule | None = None,
        on_progress: Callable[[FitProgress], None] | None = None, control: FitControl | None = None) -> FitResult:
    """Fit a fresh network to ``signal`` (or continue the fit saved in ``control.resume``).

    ``config`` must be valid (:meth:`FitConfig.validate`); its ``None`` values resolve by ``recipe_rule`` (the
    modality's, e.g. ``Modality.recipe``). The result holds the resolved config.

    Along the run the GPU is never made to wait for the host: losses and progress PSNRs stay on the device and
    are read back every ``sync_every`` steps (progress, run-away check) and at the end. The first step of a
    compiled fit is timed on its own (``compile_seconds``) and left out of ``train_seconds``. A loss that runs
    away (:class:`training.fitting.control.RunawayGuard`) is rolled back to the last good state at a lower
    learning rate, with a note; when it runs away again after the last rollback, the fit ends with the last good
    network (``stopped_early``), or fails when it never had one; ``control`` saves, stops and resumes the fit
    (:mod:`training.fitting.control`).
    """
    called_at = time.perf_counter()
    config = resolve_config(config, signal, recipe_rule)
    control = control or FitControl()
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = make_model(config, signal).to(device)
    optimizer = make_optimizer(model.parameters(), config, device)
    chunk = render_chunk_size(config.hidden, config.layers, device, config.solver_tensors())

    train_values = signal.train_targets().to(device)  # (a whole grid's values themselves: no copy on the CPU)
    n_train = signal.train_count
    full_batch = config.batch_size >= n_train
    sampler = BatchSampler(n_train, config.batch_size, device, torch.Generator().manual_seed(config.seed))
    cache, cache_note = amortized_cache(config, n_train, device)
    # A grid's coordinates are made batch by batch from the points' indices (GridPoints), never held whole: they
    # were 8-12 bytes a point beside 12 of values. Whole-batch steps and an amortized cache (which solves every
    # training point) still take them all; scattered samples hold theirs anyway.
    if full_batch or cache is not None or not isinstance(signal, GridSignal):
        train_coords = signal.train_coordinates().to(device)
        coordinates_of = train_coords.__getitem__
    else:
        train_coords, coordinates_of = None, _batch_coordinates(signal, device)
    piece_rows = cpu_piece_points(config.hidden) if device.type == "cpu" else None
    training_step = TrainingStep(model, optimizer, training_loss(signal), cache, device, config.compile,
                                 config.precision, piece_rows)
    measure_progress = signal.progress(device, chunk)
    notes = [note for note in (config.unused_settings_note(), precision_note(config.precision, device)) if note]
    keeper = BestNetwork(model.state_dict) if config.keep == "best" and config.eval_every else None

    # Losses stay on the device; reading them back forces a sync, so on a GPU we only do it now and then.
    losses = torch.zeros(config.steps, device=device)
    sync_every = loss_read_interval(device)
    progress: list[tuple[int, dict]] = []
    eval_seconds, trained_before = 0.0, 0.0
    guard = RunawayGuard()

    def light_state() -> dict:  # what a rollback restores
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "sampler": sampler.state()}

    def restore_light(state: dict) -> None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.restore(state["sampler"])

    def full_state(step: int) -> dict:  # what a resume restores
        return to_host({
            "step": step, **light_state(), "losses": losses[:step], "rng": rng_state(),
            "progress": [[s, _read_back(entry)] for s, entry in progress], "guard": guard.state(),
            "notes": list(notes), "cache": None if cache is None else cache.state(),
            "train_seconds": trained_before + time.perf_counter() - start - eval_seconds,
            "eval_seconds": eval_seconds, "config": config.to_dict(),
            "best": None if keeper is None else keeper.state()})

    first = 1
    if control.resume is not None:
        state = control.resume
        restore_light(state)
        first = state["step"] + 1
        losses[:state["step"]] = state["losses"].to(device)
        progress = [(s, entry) for s, entry in state["progress"]]
        guard.restore(state["guard"])
        notes = list(state["notes"]) + [f"resumed at step {state['step']}"]
        trained_before, eval_seconds = state["train_seconds"], state["eval_seconds"]
        if cache is not None and state["cache"] is not None:
            cache.restore(state["cache"])
        set_rng_state(state["rng"])
        if keeper is not None and state.get("best") is not None:
            keeper.restore(state["best"])
    guard.good(first - 1, guard.best, light_state)  # the state training starts from is the first to fall back to

    compiling = training_step.compile  # the first step is then timed apart, whether compilation succeeds or not
    first_step_at = time.perf_counter()
    start = first_step_at
    checked = first - 1  # losses up to this step have been looked at
    step = first
    stopped: StoppedEarly | None = None
    with matmul_precision(config.precision, device):
        while step <= config.steps:
            batch = None if full_batch else sampler.next()
            coords = train_coords if batch is None else coordinates_of(batch)
            target = train_values if batch is None else train_values[batch]
            set_learning_rate(optimizer, config.learning_rate(step, guard.rollbacks))
            losses[step - 1] = training_step(coords, target, batch)
            if step == first and compiling:
                start = time.perf_counter()  # the compiling step is timed apart: compile_seconds

            last = step == config.steps
            if step % sync_every == 0 or last:
                worst, value = losses[checked:step].max().item(), losses[step - 1].item()
                if guard.ran_away(worst, losses[0].item()):
                    # The evaluations of the steps given up go with them (a rollback measures those steps again).
                    progress = [(s, entry) for s, entry in progress if s <= guard.snapshot_step]
                    if guard.rollbacks >= MAX_ROLLBACKS:
                        stopped = _stop_at_last_good(guard, step, worst, restore_light, model, cache,
                                                     (train_coords, piece_rows), notes)
                        break
                    step = _roll_back(guard, step, worst, restore_light, config, cache, notes)
                    checked = step - 1
                    continue
                checked = step
                guard.good(step, value, light_state)
                if on_progress is not None:
                    on_progress(FitProgress(step, config.steps, value, psnr_from_mse(value),
                                            time.perf_counter() - start - eval_seconds,
                                            optimizer.param_groups[0]["lr"]))
            if config.eval_every and step % config.eval_every == 0 and not last:
                eval_start = time.perf_counter()
                with precision_scope(config.precision, device):
                    entry = measure_progress(model, None if cache is None else cache.z)
                progress.append((step, entry))
                if keeper is not None and isinstance(entry["psnr"], torch.Tensor):
                    keeper.offer(entry["psnr"], step)
                eval_seconds += time.perf_counter() - eval_start
            if control.save is not None and (control.stop_requested() or control.save_due(step, config.steps)):
                control.save(full_state(step))
                control.saved()
                if control.stop_requested():
                    raise Interrupted(step)
            step += 1
        synchronize(device)
        sampler.release()  # training is over: the final evaluation's render needs the memory
        train_seconds = trained_before + time.perf_counter() - start - eval_seconds
        eval_start = time.perf_counter()
        # The last network measured as the run measured its others: what --keep best weighs, and, for an
        # amortized fit, the history's last point (see amortized.solved_from_zero_note).
        last_measured = None
        if progress and (keeper is not None or cache is not None):
            with precision_scope(config.precision, device):
                last_measured = _read_back(measure_progress(model, None if cache is None else cache.z))
        kept = _keep_best(keeper, model, last_measured, cache, config, (train_coords, chunk), notes)
        with precision_scope(config.precision, device):
            result = signal.evaluate(model, device, chunk)
            psnr_fp16 = psnr_with_half_precision_weights(model, signal, device, chunk)
        eval_seconds += time.perf_counter() - eval_start
    last_step = config.steps if stopped is None else stopped.kept_step
    evaluations = [{"step": step, **_read_back(entry)} for step, entry in progress]
    if kept is not None:  # the last step's network as measured along the run; the kept one is earlier in the list
        evaluations.append({"step": last_step, **kept.last_entry})
    elif cache is not None and last_measured is not None:
        evaluations.append({"step": last_step, **last_measured})
    else:
        evaluations.append({"step": last_step, **result.history_entry()})
    if cache is not None and last_measured is not None:
        written = (kept.step, float(keeper.psnr)) if kept is not None else (last_step, last_measured["psnr"])
        note = solved_from_zero_note(*written, getattr(result, "psnr", None))
        if note:
            notes.append(note)
    if training_step.note:
        notes.append(training_step.note)
    ceiling = bf16_ceiling_note(config.precision, getattr(result, "psnr", None))
    if ceiling:
        notes.append(ceiling)

    return FitResult(
        model=model, optimizer=optimizer, config=config, params=count_parameters(model),
        train_seconds=train_seconds, timed_steps=(step if stopped else config.steps) - (1 if compiling else 0),
        compiled=training_step.compile,
        eval_seconds=eval_seconds, compile_seconds=training_step.compile_seconds,
        setup_seconds=first_step_at - called_at, first_step_at=first_step_at,
        batch_psnr=[psnr_from_mse(v) for v in losses[:last_step].cpu().tolist()],
        evaluations=evaluations, final=result, notes=notes, psnr_fp16_weights=psnr_fp16,
        solver=solver_report(config, model, cache, train_coords, result, chunk, cache_note,
                             None if kept is None else kept.cache_residuals) if config.is_implicit() else None,
        kept_step=kept.step if kept is not None else None if stopped is None else stopped.kept_step,
        stopped_early=stopped,
    )


@dataclass
class KeptNetwork:
    """An earlier network kept instead of the last one: its step, and what was measured of the last one."""

    step: int
    last_entry: dict  # the last step's network, measured as the progress evaluations measure
    cache_residuals: dict | None  # the amortized cache's residuals on the last network, whose states it holds


def _keep_best(keeper: BestNetwork | None, model: nn.Module, last: dict | None, cache: FixpointCache | None,
               config: FitConfig, train_points: tuple[torch.Tensor, int], notes: list[str]) -> KeptNetwork | None:
    """Put the best network measured along the run into ``model`` when it beats the last one, ``last`` (measured
    alike, read back; see :mod:`training.fitting.best`); None when the last network stays."""
    if keeper is None or last is None or not bool(torch.isfinite(keeper.psnr)):
        return None
    last_psnr = torch.tensor(last["psnr"], device=keeper.psnr.device)  # (a finite best means the measure is a PSNR)
    if not bool(keeper.beats(last_psnr)):
        return None
    residuals = None if cache is None else cache.residuals(model, *train_points)
    model.load_state_dict(keeper.values())
    kept = KeptNetwork(int(keeper.step), last, residuals)
    notes.append(kept_note(kept.step, float(keeper.psnr), config.steps, kept.last_entry["psnr"]))
    return kept


def _stop_at_last_good(guard: RunawayGuard, step: int, worst: float, restore_light, model: nn.Module,
                       cache: FixpointCache | None, train_points: tuple[torch.Tensor, int | None], notes: list[str]
                       ) -> StoppedEarly:
    """End training with the last good state, once the rollbacks are used up: what hours of a long fit reached is
    kept, not thrown away with the run-away steps. Raises the divergence error when there is no good state past
    the start (a learning rate too high from the first step)."""
    if guard.snapshot_step == 0:
        raise divergence_error(step, worst, f" after {MAX_ROLLBACKS} rollbacks at lower learning rates")
    restore_light(guard.snapshot)
    if cache is not None:  # its states belong to the weights that ran away: solve afresh for the good ones
        cache.invalidate()
        coords, piece_rows = train_points
        with eval_mode(model):  # (a training-mode solve would advance spectral-norm estimates: another network)
            cache.ensure_solved(model, coords, None, piece_bounds(len(coords), piece_rows))
    stopped = StoppedEarly(step, worst, guard.snapshot_step)
    notes.append(f"the loss ran away again by step {step} (reached {worst:.3g}) after {MAX_ROLLBACKS} rollbacks at "
                 f"lower learning rates: training stopped, and the network is step {stopped.kept_step}'s, the last "
                 "good one; try a smaller --lr")
    return stopped


def _roll_back(guard: RunawayGuard, step: int, worst: float, restore_light, config: FitConfig, cache,
               notes) -> int:
    """Restore the last good state at a lower learning rate; returns the step to go on from."""
    guard.rollbacks += 1  # every later step's rate is halved once more (FitConfig.learning_rate)
    restore_light(guard.snapshot)
    learning_rate = config.learning_rate(guard.snapshot_step + 1, guard.rollbacks)  # the rate training goes on at
    if cache is not None:
        cache.invalidate()  # its states belong to the weights that ran away: solve afresh from the good ones
    notes.append(f"the loss ran away by step {step} (reached {worst:.3g}); rolled back to step "
                 f"{guard.snapshot_step} and lowered the learning rate to {learning_rate:.3g}")
    return guard.snapshot_step + 1


def solver_report(config: FitConfig, model: nn.Module, cache: FixpointCache | None, train_coords: torch.Tensor,
                  final: GridEvaluation | SampleEvaluation, chunk: int, cache_note: str | None = None,
                  cache_residuals: dict | None = None) -> dict:
    """The report's ``solver`` section: iterations and residuals at training and at evaluation.
    ``cache_residuals``: the cache's residuals measured earlier (on the last step's network, whose states the
    cache holds, when a better network was kept); by default they are measured on ``model`` now."""
    training: dict = {"amortized": cache is not None}
    if cache_note:
        training["note"] = cache_note
    if cache is not None:
        steps = [stats.steps for stats in cache.solves]
        training.update({"initial_solves": len(steps), "initial_solve_iterations_mean": sum(steps) / len(steps),
                         "initial_solve_iterations_max": max(steps)})
        training.update(cache_residuals or cache.residuals(model, train_coords, chunk))
    settings = config.solver
    return {"solver": settings.solver, "tol": settings.tol, "max_iter": settings.max_iter,
            "backward": settings.backward, "neumann_steps": settings.neumann_steps, "training": training,
            "evaluation": final.solver}
