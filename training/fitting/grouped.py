"""Fitting several same-shaped signals at once: one stacked network, each signal with its own parameters.

The G networks are initialised exactly as G separate fits would be (same seed each, as `inr fit` with several
inputs does), their parameters stacked along a new first axis (``torch.func.stack_module_state``), and one
``vmap`` of the network over that axis evaluates all of them on the shared coordinates: one batched matrix
product per layer instead of G small ones. The loss is the sum of the per-signal losses, so each signal's
parameters receive exactly the gradient of its own loss; Adam acts element by element, so its update of a
signal's slice is the update that signal's own optimizer would make. A signal whose loss turns non-finite is
reported as failed; its slice cannot reach the others' (every operation is per signal).

Explicit networks (SIREN, Fourier-MFN, Gabor-MFN) on signals trained full-batch; other fits go one at a time
(:func:`can_fit_together`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
from torch.func import functional_call, stack_module_state

from inr_core.errors import UserError
from models import count_parameters, get_spec
from training.fitting.config import FitConfig, resolve_config
from training.fitting.devices import loss_read_interval, render_chunk_size, synchronize
from training.fitting.fit import FitResult, divergence_error, make_model, make_optimizer
from training.fitting.precision import autocast, matmul_precision, precision_note, precision_scope
from training.fitting.recipes import RecipeRule
from training.fitting.signal import GridSignal, training_loss
from training.metrics import psnr_from_mse


def group_key(signal) -> tuple | None:
    """Signals with equal keys can share a stacked fit; None: this signal is fitted on its own."""
    if not isinstance(signal, GridSignal):
        return None
    holdout = None if signal.holdout is None else tuple(signal.holdout.shape)
    return (signal.grid_shape, signal.channels, tuple(signal.train.shape), holdout)


def can_fit_together(config: FitConfig, signal) -> bool:
    """Whether ``signal`` may join a group under the resolved ``config``: an explicit network, full batch."""
    return (not get_spec(config.model).implicit and config.batch_size >= signal.train_count
            and group_key(signal) is not None)


@dataclass
class GroupOutcome:
    """One signal's part of a group fit: its result, or why it failed."""

    result: FitResult | None
    error: UserError | None = None


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


def fit_group(signals: list[GridSignal], config: FitConfig, recipe_rule: RecipeRule | None = None
              ) -> list[GroupOutcome]:
    """Fit every signal of a same-shaped group with its own network, all at once (see the module's doc)."""
    configs = [resolve_config(config, signal, recipe_rule) for signal in signals]
    config = configs[0]
    if any(c != config for c in configs) or len({group_key(s) for s in signals}) != 1:
        raise ValueError("a group's signals must resolve to one config and share one shape")
    device = torch.device(config.device)
    called_at = time.perf_counter()
    models = []
    for signal in signals:
        torch.manual_seed(config.seed)
        models.append(make_model(config, signal).to(device))
    params, buffers = stack_module_state(models)
    names = list(params)
    template = copy.deepcopy(models[0]).to("meta")

    def network(p, b, coords):
        return functional_call(template, (p, b), (coords,))

    stacked_forward = torch.vmap(network, in_dims=(0, 0, None))
    coords = signals[0].train_coordinates().to(device)  # the same grid points for every signal of the group
    targets = torch.stack([signal.train_targets() for signal in signals]).to(device)
    per_signal_loss = torch.vmap(training_loss(signals[0]))  # (G, N, C) predictions and targets -> (G,) losses
    optimizer = make_optimizer(list(params.values()), config, device)
    count = len(signals)
    losses = torch.zeros(config.steps, count, device=device)
    failed_at: dict[int, int] = {}
    sync_every = loss_read_interval(device)

    first_step_at = time.perf_counter()
    with matmul_precision(config.precision, device):
        for step in range(1, config.steps + 1):
            with autocast(config.precision, device):
                prediction = stacked_forward(params, buffers, coords).float()
            per_signal = per_signal_loss(prediction, targets)
            optimizer.zero_grad(set_to_none=True)
            per_signal.sum().backward()
            optimizer.step()
            losses[step - 1] = per_signal.detach()
            if step % sync_every == 0 or step == config.steps:
                for g, value in enumerate(losses[step - 1].tolist()):
                    if not math.isfinite(value) and g not in failed_at:
                        failed_at[g] = step
        synchronize(device)
    train_seconds = time.perf_counter() - first_step_at

    outcomes = []
    history = losses.cpu()
    chunk = render_chunk_size(config.hidden, config.layers, device)
    for g, (signal, model) in enumerate(zip(signals, models)):
        if g in failed_at:
            outcomes.append(GroupOutcome(None, divergence_error(failed_at[g], history[failed_at[g] - 1, g].item())))
            continue
        with torch.no_grad():
            model.load_state_dict({name: params[name][g] for name in names} |
                                  {name: buffers[name][g] for name in buffers}, strict=True)
        eval_start = time.perf_counter()
        with precision_scope(config.precision, device):
            final = signal.evaluate(model, device, chunk)
        notes = [note for note in (precision_note(config.precision, device),) if note]
        notes.append(f"fitted together with {count - 1} other input(s) of the same shape; seconds and steps/s "
                     f"are the group's")
        outcomes.append(GroupOutcome(FitResult(
            model=model, optimizer=_per_signal_optimizer(model, config, device, optimizer, names, g),
            config=config, params=count_parameters(model), train_seconds=train_seconds, timed_steps=config.steps,
            compiled=False, compile_seconds=0.0, setup_seconds=first_step_at - called_at,
            first_step_at=first_step_at, eval_seconds=time.perf_counter() - eval_start,
            batch_psnr=[psnr_from_mse(v) for v in history[:, g].tolist()],
            final=final, evaluations=[{"step": config.steps, **final.history_entry()}], notes=notes)))
    return outcomes
