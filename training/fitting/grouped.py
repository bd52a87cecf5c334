"""Fitting several same-shaped signals at once: one stacked network, each signal with its own parameters.

The G networks are initialised exactly as G separate fits would be (same seed each, as `inr fit` with several inputs
does), their parameters stacked along a new first axis (``torch.func.stack_module_state``), and the network's own
code, called on the stacked parameters, evaluates all of them: one batched matrix product per layer instead of G
small ones (every model in the registry takes stacked parameters: ``stacks_natively``). The loss is the sum of the
per-signal losses, so each signal's parameters receive exactly the gradient of its own loss; Adam acts element by
element, so its update of a signal's slice is the update that signal's own optimizer would make. A signal whose loss
turns non-finite is reported as failed; its slice cannot reach the others' (every operation is per signal).

A group's signals share their config, except for the frequency scale (:func:`stack_key`): each network is built
with its signal's own. The MFNs' and implicit models' input scale only draws initial weights; SIREN's w0 is a
buffer of each network, which the stacked forward takes per signal like the weights.

Every model groups:

- explicit networks (and the implicit ones with ``--explicit``): the network's forward;
- implicit networks: :class:`StackedImplicit`, whose states are ``(G, N, D)``. Its fixpoint solves are one solve
  over every signal's points (the per-point stopping rule is unchanged; the solve simply stops once the slowest
  signal's points have converged), the amortized cache holds every signal's states, and the implicit backward
  is block-diagonal over signals, so each signal gets the gradient its own fit would.

Minibatch fits (long clips, videos, shapes) draw one index batch per step for the whole group: every signal of a
group has the same point count and seed, so its own fit would have drawn exactly that batch. Grid signals share
their coordinates; scattered samples (shapes) bring their own, stacked like the targets.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from inr_core.errors import UserError, out_of_memory
from models import count_parameters
from models.fixpoint import SolverStats, solve
from models.implicit import ImplicitINR, Prepared, holding_estimates
from training.fitting import step as step_module
from training.fitting.amortized import FixpointCache, solved_from_zero_note
from training.fitting.batches import BatchSampler
from training.fitting.best import BestNetwork, kept_note
from training.fitting.config import FitConfig, resolve_config
from training.fitting.control import Interrupted, runs_away, set_learning_rate
from training.fitting.devices import cpu_piece_points, loss_read_interval, render_chunk_size, synchronize
from training.fitting.evaluate import GroupGridProgress, psnr_with_half_precision_weights
from training.fitting.fit import (FitProgress, FitResult, amortized_cache, divergence_error, make_model,
                                  make_optimizer, solver_report)
from training.fitting.precision import (autocast, bf16_ceiling_note, matmul_precision, precision_note,
                                        precision_scope)
from training.fitting.recipes import RecipeRule
from training.fitting.signal import GridSignal, Signal, per_signal_training_loss
from training.fitting.step import compile_by_default, failure_reason, piece_bounds
from training.metrics import psnr_from_mse


def stack_key(config: FitConfig) -> FitConfig:
    """What fits must share to be stacked: their config, less the frequency scale, which a recipe may set from
    each signal's own spectrum (the MFNs' and implicit models' input scale only draws initial weights; SIREN's w0
    is a buffer of each network, stacked with its weights)."""
    return replace(config, frequency=None)


def group_key(signal: Signal) -> tuple:
    """Signals with equal keys can share a stacked fit: the same points (grids) or as many points (samples)."""
    if isinstance(signal, GridSignal):
        holdout = None if signal.holdout is None else tuple(signal.holdout.shape)
        return ("grid", signal.grid_shape, signal.channels, tuple(signal.train.shape), holdout)
    return ("samples", signal.dims, signal.channels, signal.train_count, signal.loss,
            tuple(sorted((name, len(group.points)) for name, group in signal.held_out.items())))


class GroupStep:
    """A group's forward and loss, then the backward: compiled (``torch.compile`` of the stacked forward) when
    ``config.compile`` asks and the network is explicit, else eager. A failure to compile or to run compiled code
    makes this step and every later one eager, with :attr:`note` saying why (nothing is updated before the
    backward has succeeded, so the eager retry starts clean); later groups of the same model in this process then
    start eager. Implicit groups run eagerly: their solver loop and hooks are the single fit's compiled pieces'
    job, which a group's stacked pieces do not have.

    ``piece_rows``: run each step in pieces of this many points per signal (on a CPU), as
    :class:`training.fitting.step.TrainingStep` runs a fit alone: the same update for every signal (tested in
    tests/test_step_pieces.py). None: every signal's whole batch at once."""

    def __init__(self, network, cache: FixpointCache | None, per_signal_loss, optimizer: torch.optim.Optimizer,
                 config: FitConfig, piece_rows: int | None = None):
        self.network, self.cache, self.per_signal_loss = network, cache, per_signal_loss
        self.optimizer = optimizer
        self.piece_rows = piece_rows
        self.precision, self.device = config.precision, torch.device(config.device)
        self.note: str | None = None
        self.compiled = None
        self._failure_key = ("group", config.model)
        known = step_module.known_compile_failure(self._failure_key)
        if config.compile and known:
            self._fall_back(known)
        elif config.compile and cache is None and not config.is_implicit():
            self.compiled = step_module.compile_function(network)  # (a seam the tests replace)
        elif config.compile:
            self.note = "the group's training step ran eagerly (compiling applies to explicit networks in a group)"

    def _run(self, forward, points: torch.Tensor, target: torch.Tensor, batch) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)  # here, so an eager retry never adds to a failed try's gradients
        pieces = piece_bounds(points.shape[-2], self.piece_rows)
        if len(pieces) == 1:
            with autocast(self.precision, self.device):
                prediction = (forward(points) if self.cache is None else
                              self.cache.predict(forward, points, batch)).float()
            per_signal = self.per_signal_loss(prediction, target)
            per_signal.sum().backward()
            return per_signal
        # In pieces along the points, as a fit alone runs on a CPU.
        return step_module.backward_in_pieces(forward, self.cache, points, target, batch, pieces,
                                              self.per_signal_loss, self.precision, self.device)

    def __call__(self, points: torch.Tensor, target: torch.Tensor, batch) -> torch.Tensor:
        """(G,) losses of one step, their gradients (and only theirs) in the stacked parameters' ``grad``."""
        if self.compiled is not None:
            try:
                return self._run(self.compiled, points, target, batch)
            except Exception as error:  # any failure to compile or to run compiled code: eager mode instead
                if out_of_memory(error):
                    raise  # the group's size, not the compiler (see TrainingStep._compiled_or_eager)
                reason = failure_reason(error)
            step_module.remember_compile_failure(self._failure_key, reason)
            self._fall_back(reason)
        return self._run(self.network, points, target, batch)

    def _fall_back(self, reason: str) -> None:
        self.compiled = None
        self.note = f"torch.compile failed ({reason}); the group's training step ran eagerly"

    @property
    def compiling(self) -> bool:
        return self.compiled is not None


@dataclass
class GroupOutcome:
    """One signal's part of a group fit: its result, or why it failed."""

    result: FitResult | None
    error: UserError | None = None


class _Member(nn.Module):
    """Calls one method (or submodule) of ``network``, so ``functional_call`` can reach more than ``forward``."""

    def __init__(self, network: nn.Module, name: str):
        super().__init__()
        self.network, self.name = network, name

    def forward(self, *args):
        return getattr(self.network, self.name)(*args)


class StackedNetworks:
    """G networks of one architecture as stacked parameters (the leaves the optimizer updates) and a template."""

    def __init__(self, models: list[nn.Module]):
        if not getattr(models[0], "stacks_natively", False):
            raise ValueError(f"{type(models[0]).__name__} does not take stacked parameters (stacks_natively)")
        self.count = len(models)
        self.params, self.buffers = stack_module_state(models)
        self.template = copy.deepcopy(models[0]).to("meta")
        self.state_keys = set(models[0].state_dict())  # parameters and persistent buffers: what a checkpoint holds

    def state(self) -> dict[str, torch.Tensor]:
        """The stacked tensors a single network's ``state_dict`` holds (not, e.g., SIREN's per-network w0)."""
        return {name: value for name, value in (self.params | self.buffers).items() if name in self.state_keys}

    def method(self, name: str):
        """``template.NAME(*args)`` for every signal at once, each with its own parameters: the template's code
        called on the stacked parameters and buffers as they are (a buffer written in place, such as a spectral
        norm's estimate, is written into its stacked tensor). Arguments and outputs carry the signal axis first
        where they are per signal; points may be shared, ``(N, d)``."""
        member = _Member(self.template, name)
        params = {f"network.{key}": value for key, value in self.params.items()}
        buffers = {f"network.{key}": value for key, value in self.buffers.items()}
        return lambda *args: functional_call(member, (params, buffers), args)

    def forward(self):
        """Every signal's network at once, ``(G, N, C)`` from shared ``(N, d)`` or stacked ``(G, N, d)`` points."""
        return self.method("forward")

    def load_into(self, model: nn.Module, index: int) -> None:
        """Give ``model`` (of the template's architecture) signal ``index``'s parameters and buffers."""
        with torch.no_grad():
            model.load_state_dict({name: value[index] for name, value in self.state().items()}, strict=True)


class StackedImplicit:
    """G implicit networks as one, with the interface of :class:`models.implicit.ImplicitINR` that fits use
    (``prepare``, ``f``, ``solve``, ``zeros``, ``amortized_step``, calling it), on states ``(G, N, D)``.

    The model's own logic is reused, not rewritten: ``prepare``, the layers, the head, ``f``, the implicit backward,
    the amortized step and the forward are ImplicitINR's methods, called on the stacked parameters; only the zero
    state and the solve (which takes rows of states) are this class's own.
    """

    one_pass = False

    def __init__(self, stacked: StackedNetworks):
        template = stacked.template
        self.hidden, self.settings, self.count = template.hidden, template.settings, stacked.count
        self.prepare = stacked.method("prepare")
        self.head = stacked.method("head")
        self._template = template
        self._advance_estimates = stacked.method("advance_estimates")

    def one_estimate_per_step(self):
        """As :meth:`models.implicit.ImplicitINR.one_estimate_per_step`, for every signal's network: the template's
        norms' mode decides what the calls on the stacked parameters do."""
        return holding_estimates(self._template, self._advance_estimates)

    def _layers(self, z: torch.Tensor, prepared: Prepared) -> torch.Tensor:
        # The prepared weights are stacked, and the template's layers take them as they are (models.base.affine:
        # one baddbmm per layer, the bias inside it, the rows shared out evenly among a CPU's threads).
        return self._template._layers(z, prepared)

    def zeros(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(self.count, x.shape[-2], self.hidden)

    @torch.no_grad()
    def solve(self, prepared: Prepared, z0: torch.Tensor) -> tuple[torch.Tensor, SolverStats]:
        """One solve over every signal's points (the solvers take rows of states); residuals come back (G, N)."""
        count, points, hidden = z0.shape
        z, stats = solve(lambda flat: self.f(flat.view(count, points, hidden), prepared).reshape(-1, hidden),
                         z0.reshape(-1, hidden), self.settings)
        return z.view(count, points, hidden), replace(stats, abs_residual=stats.abs_residual.view(count, points),
                                                      rel_residual=stats.rel_residual.view(count, points))

    f = ImplicitINR.f
    _with_implicit_backward = ImplicitINR._with_implicit_backward
    amortized_step = ImplicitINR.amortized_step
    forward_with_stats = ImplicitINR.forward_with_stats

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_stats(x)[0]


def signal_share(stats: SolverStats, index: int, tol: float) -> SolverStats:
    """Signal ``index``'s part of a group solve: its own residuals; steps and trace are the group's."""
    rel = stats.rel_residual[index]
    return replace(stats, abs_residual=stats.abs_residual[index], rel_residual=rel,
                   converged=bool(rel.numel() == 0 or float(rel.max()) <= tol))


def _signal_cache(cache: FixpointCache, index: int, tol: float) -> FixpointCache:
    """Signal ``index``'s slice of a group's cache, as its own fit would have left it (for its report)."""
    mine = FixpointCache(cache.z.shape[-2], cache.z.shape[-1], cache.z.device)
    mine.z, mine.valid, mine.all_valid = cache.z[index], cache.valid, cache.all_valid
    mine.solves = [signal_share(stats, index, tol) for stats in cache.solves]
    return mine


def _per_signal_optimizer(model, config: FitConfig, device, stacked: torch.optim.Optimizer, names, index: int):
    """A single-signal Adam whose state is the stacked optimizer's slice ``index`` (for the checkpoint)."""
    optimizer = make_optimizer(model.parameters(), config, device)
    by_name = dict(model.named_parameters())
    for stacked_param, name in zip(stacked.param_groups[0]["params"], names):
        state = stacked.state.get(stacked_param)
        if state:
            optimizer.state[by_name[name]] = {key: value if key == "step" else value[index].clone()
                                              for key, value in state.items()}
    return optimizer


def fit_group(signals: list[Signal], config: FitConfig | list[FitConfig], recipe_rule: RecipeRule | None = None,
              on_progress=None, stop_requested=None) -> list[GroupOutcome]:
    """Fit every signal of a same-shaped group with its own network, all at once (see the module's doc).

    ``config`` is every signal's, or a list of each signal's own (resolved per input, they may differ in their
    frequency scale: :func:`stack_key`).

    ``on_progress`` receives :class:`training.fitting.fit.FitProgress` records for the group (the mean loss).
    A signal whose loss runs away (:func:`training.fitting.control.runs_away`) fails with a divergence error; its
    neighbours go on (a caller may fit it again alone, where it can be rolled back). When
    ``stop_requested()`` turns true the group stops with :class:`training.fitting.control.Interrupted`; a group
    saves no state (started again, it ends the same on the CPU).
    """
    given = config if isinstance(config, list) else [config] * len(signals)
    asked_to_compile = given[0].compile
    configs = [resolve_config(own, signal, recipe_rule) for own, signal in zip(given, signals, strict=True)]
    config = configs[0]
    if any(stack_key(c) != stack_key(config) for c in configs) or len({group_key(s) for s in signals}) != 1:
        raise ValueError("a group's signals must resolve to one config (frequency scales aside) and share one shape")
    device = torch.device(config.device)
    if asked_to_compile is None:  # the default rule, weighed on the group's step: count times one member's points
        config = replace(config, compile=compile_by_default(device, config.steps, len(signals) * config.batch_size))
    # Each signal's own config: the group's, with its own frequency scale (stack_key).
    configs = [replace(own, compile=config.compile) for own in configs]
    called_at = time.perf_counter()
    models = []
    for signal, own in zip(signals, configs):
        torch.manual_seed(config.seed)
        models.append(make_model(own, signal).to(device))
    stacked = StackedNetworks(models)
    names = list(stacked.params)
    count = len(signals)

    # Grids share one set of points; scattered samples bring their own, stacked like the targets.
    shared_points = isinstance(signals[0], GridSignal)
    coords = (signals[0].train_coordinates() if shared_points else
              torch.stack([signal.train_coordinates() for signal in signals])).to(device)
    targets = torch.stack([signal.train_targets() for signal in signals]).to(device)
    n_train = signals[0].train_count
    full_batch = config.batch_size >= n_train
    # The batches every member's own fit would draw: same seed, same number of points.
    sampler = BatchSampler(n_train, config.batch_size, device, torch.Generator().manual_seed(config.seed))

    cache, cache_note = None, None
    if config.is_implicit():
        network = StackedImplicit(stacked)
        cache, cache_note = amortized_cache(config, n_train, device, signals=count)
    else:
        network = stacked.forward()

    per_signal_loss = per_signal_training_loss(signals[0])  # (G, N, C) predictions and targets -> (G,) losses
    optimizer = make_optimizer(list(stacked.params.values()), config, device)
    # On a CPU, each step in pieces of about the points a fit alone runs in at once, shared among the signals:
    # (G, N, hidden) activations of a whole step outgrow the caches and the memory the allocator recycles (two to
    # three times slower per signal than fitting one at a time, measured at 64 and 128 px).
    piece_rows = max(1, cpu_piece_points(config.hidden) // count) if device.type == "cpu" else None
    group_step = GroupStep(network, cache, per_signal_loss, optimizer, config, piece_rows)
    losses = torch.zeros(config.steps, count, device=device)
    chunk = render_chunk_size(config.hidden, config.layers, device, config.solver_tensors())
    # Grids are measured along the run as a fit alone measures them (and the best network kept, per signal);
    # scattered samples only at the end.
    group_progress = (GroupGridProgress(signals, device, chunk // count)
                      if shared_points and config.eval_every else None)
    keeper = (BestNetwork(stacked.state, count)
              if group_progress is not None and config.keep == "best" else None)
    progress: list[tuple[int, dict]] = []
    progress_seconds = 0.0
    failed_at: dict[int, int] = {}
    best = [float("inf")] * count
    checked = 0
    sync_every = loss_read_interval(device)

    # Only a step that compiles (or tries to) is timed apart, as a fit alone's: an implicit group asked to compile
    # runs eagerly, and its first step, an ordinary one, counts in its seconds.
    compiles = group_step.compiling
    first_step_at = time.perf_counter()
    timed_from, compile_seconds = first_step_at, 0.0
    with matmul_precision(config.precision, device):
        for step in range(1, config.steps + 1):
            batch = None if full_batch else sampler.next()
            points = coords if batch is None else coords[..., batch, :]
            target = targets if batch is None else targets[:, batch]
            set_learning_rate(optimizer, config.learning_rate(step))
            per_signal = group_step(points, target, batch)
            if step == 1 and compiles:  # the compiling step is timed apart, as a fit alone's is
                synchronize(device)
                timed_from = time.perf_counter()
                compile_seconds = timed_from - first_step_at
            optimizer.step()
            losses[step - 1] = per_signal.detach()
            if step % sync_every == 0 or step == config.steps:
                values = losses[step - 1].tolist()
                worst = losses[checked:step].amax(dim=0).tolist()  # NaN where a signal had one
                first = losses[0].tolist()
                checked = step
                for g, value in enumerate(values):
                    if g not in failed_at and runs_away(worst[g], best[g], first[g]):
                        failed_at[g] = step
                    best[g] = min(best[g], value)
                if on_progress is not None:
                    finite = [v for v in values if math.isfinite(v)]
                    mean = sum(finite) / len(finite) if finite else float("nan")
                    on_progress(FitProgress(step, config.steps, mean, psnr_from_mse(mean),
                                            time.perf_counter() - timed_from, optimizer.param_groups[0]["lr"]))
            if group_progress is not None and step % config.eval_every == 0 and step != config.steps:
                measured_at = time.perf_counter()
                entry = _measure(group_progress, network, stacked, cache, config, device)
                progress.append((step, entry))
                if keeper is not None:
                    keeper.offer(entry["psnr"], step)
                progress_seconds += time.perf_counter() - measured_at
            if stop_requested is not None and stop_requested():
                raise Interrupted(step)
        synchronize(device)
    sampler.release()  # training is over: the final evaluations' renders need the memory
    train_seconds = time.perf_counter() - timed_from - progress_seconds

    # The last networks measured as the run measured the others: what --keep best weighs and, for an amortized
    # group, each history's last point (as for a fit alone: see amortized.solved_from_zero_note).
    last_entry, keep_best = None, [False] * count
    if progress and (keeper is not None or cache is not None):
        last_entry = _measure(group_progress, network, stacked, cache, config, device)
        if keeper is not None:
            keep_best = keeper.beats(last_entry["psnr"]).tolist()
    histories = _histories(progress, last_entry, count, config.steps)
    outcomes = []
    history = losses.cpu()
    for g, (signal, model, own_config) in enumerate(zip(signals, models, configs)):
        if g in failed_at:
            outcomes.append(GroupOutcome(None, divergence_error(failed_at[g], history[failed_at[g] - 1, g].item())))
            continue
        stacked.load_into(model, g)
        eval_start = time.perf_counter()
        notes = [note for note in (own_config.unused_settings_note(), precision_note(config.precision, device),
                                   group_step.note) if note]
        own_cache = None if cache is None else _signal_cache(cache, g, config.solver.tol)
        points = coords if shared_points else coords[g]
        kept_step, cache_residuals = None, None
        if keep_best[g]:  # an earlier network beat the last one: measure what belongs to the last, then swap
            if own_cache is not None:
                cache_residuals = own_cache.residuals(model, points, chunk)
            with torch.no_grad():
                model.load_state_dict(keeper.values(g))
            kept_step = int(keeper.step[g])
            notes.append(kept_note(kept_step, float(keeper.psnr[g]), config.steps, histories[g][-1]["psnr"]))
        with precision_scope(config.precision, device):
            final = signal.evaluate(model, device, chunk)
            psnr_fp16 = psnr_with_half_precision_weights(model, signal, device, chunk)
            solver = None if not config.is_implicit() else solver_report(
                own_config, model, own_cache, points, final, chunk, cache_note, cache_residuals)
        along_the_run = keep_best[g] or (cache is not None and last_entry is not None)
        if cache is not None and last_entry is not None:
            written = (kept_step, float(keeper.psnr[g])) if keep_best[g] else (config.steps, histories[g][-1]["psnr"])
            note = solved_from_zero_note(*written, getattr(final, "psnr", None))
            if note:
                notes.append(note)
        ceiling = bf16_ceiling_note(config.precision, getattr(final, "psnr", None))
        if ceiling:
            notes.append(ceiling)
        notes.append(f"fitted together with {count - 1} other input(s) of the same shape; seconds and steps/s "
                     f"are the group's")
        outcomes.append(GroupOutcome(FitResult(
            model=model, optimizer=_per_signal_optimizer(model, config, device, optimizer, names, g),
            config=own_config, params=count_parameters(model), train_seconds=train_seconds,
            timed_steps=config.steps - (1 if compiles else 0), compiled=group_step.compiling,
            compile_seconds=compile_seconds, setup_seconds=first_step_at - called_at,
            first_step_at=first_step_at, eval_seconds=time.perf_counter() - eval_start + progress_seconds / count,
            batch_psnr=[psnr_from_mse(v) for v in history[:, g].tolist()],
            final=final, evaluations=histories[g] if along_the_run else
            histories[g][:len(progress)] + [{"step": config.steps, **final.history_entry()}],
            solver=solver, notes=notes, psnr_fp16_weights=psnr_fp16, kept_step=kept_step, group_size=count)))
    return outcomes


def _measure(group_progress: GroupGridProgress, network, stacked: StackedNetworks, cache: FixpointCache | None,
             config: FitConfig, device: torch.device) -> dict:
    """Every signal's progress measurement of the group's networks as they are now."""
    with precision_scope(config.precision, device):
        return group_progress(network, stacked.template, None if cache is None else cache.z)


def _histories(progress: list[tuple[int, dict]], last_entry: dict | None, count: int, last_step: int
               ) -> list[list[dict]]:
    """Each signal's evaluations along the run (read back once, at the end), with the last step's measurement
    when it was taken."""
    steps = progress + ([] if last_entry is None else [(last_step, last_entry)])
    histories: list[list[dict]] = [[] for _ in range(count)]
    for step, entry in steps:
        values = {key: None if value is None else value.tolist() for key, value in entry.items()}
        for g in range(count):
            histories[g].append({"step": step, **{key: None if value is None else value[g]
                                                  for key, value in values.items()}})
    return histories

