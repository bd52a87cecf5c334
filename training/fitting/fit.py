"""The fit loop: one network, one signal, Adam on the mean squared error."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch
from torch import nn

from models import build_model, count_parameters, get_spec
from models.fixpoint import SOLVERS
from models.fixpoint.core import STATE_TENSORS
from models.fixpoint.backward import BACKWARD_MODES
from models.implicit import SolveSettings
from training.fitting.devices import auto_batch_size, memory_budget_bytes, render_chunk_size, resolve_device
from training.fitting.amortized import FixpointCache
from inr_core.errors import UserError
from training.fitting.evaluate import Evaluation, evaluate
from training.metrics import psnr_from_mse
from training.fitting.recipes import default_frequency, default_learning_rate
from training.fitting.signal import Signal


# Video and 3D shapes train on random minibatches of points, never the whole signal at once
# (the implicit-layer paper: 65,536 video points, 50,000 shape points per step).
POINTS_PER_STEP = {"video": 65536, "shape": 50000}


@dataclass
class FitConfig:
    """Everything that decides a fit. ``None`` means "resolve from the signal" (see :func:`resolve_config`)."""

    model: str = "siren"
    hidden: int = 256
    layers: int = 3
    steps: int = 2000
    lr: float | None = None
    frequency: float | None = None  # SIREN first-layer w0, or MFN input scale
    batch_size: int | None = None  # points per step; None = full batch when it fits in memory
    device: str = "auto"
    seed: int = 0
    holdout: str = "none"
    eval_every: int | None = None  # steps between full evaluations; None = about 25 over the run, 0 = only at the end
    # Implicit models only (isiren, fourier-imfn, gabor-imfn):
    explicit: bool = False  # one pass of f from z = 0: the explicit counterpart with the same parameters
    solver: str = "fixed-point"
    tol: float = 1e-3  # relative residual, per sample
    max_iter: int = 100
    backward: str = "neumann"  # or "exact"
    neumann_steps: int = 1
    amortize: bool = True  # reuse last step's fixpoint: one f evaluation per training step

    def to_dict(self) -> dict:
        return asdict(self)


def validate_config(config: FitConfig) -> None:
    """Reject options no fit can use, with a message naming the option."""
    get_spec(config.model)  # raises ValueError naming the known models
    checks = [
        (config.steps >= 1, f"--steps must be at least 1, got {config.steps}"),
        (config.hidden >= 1, f"--hidden must be at least 1, got {config.hidden}"),
        (config.layers >= 0, f"--layers must be 0 or more, got {config.layers}"),
        (config.lr is None or (config.lr > 0 and math.isfinite(config.lr)), f"--lr must be positive, got {config.lr}"),
        (config.frequency is None or (config.frequency > 0 and math.isfinite(config.frequency)),
         f"--frequency must be positive, got {config.frequency}"),
        (config.batch_size is None or config.batch_size >= 1, f"--batch-size must be at least 1, got {config.batch_size}"),
        (config.eval_every is None or config.eval_every >= 0, f"--eval-every must be 0 or more, got {config.eval_every}"),
        (config.solver in SOLVERS, f"unknown --solver {config.solver!r}; choose one of: {', '.join(SOLVERS)}"),
        (config.backward in BACKWARD_MODES,
         f"unknown --backward {config.backward!r}; choose one of: {', '.join(BACKWARD_MODES)}"),
        (config.tol > 0, f"--tol must be positive, got {config.tol}"),
        (config.max_iter >= 1, f"--max-iter must be at least 1, got {config.max_iter}"),
        (config.neumann_steps >= 0, f"--neumann-steps must be 0 or more, got {config.neumann_steps}"),
        (not get_spec(config.model).implicit or config.layers >= 1, "implicit models need --layers of at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def resolve_config(config: FitConfig, signal: Signal) -> FitConfig:
    """Fill every ``None`` with the concrete value this fit will use, so the saved config reproduces the run."""
    validate_config(config)
    device = resolve_device(config.device)
    n_train = len(signal.train_index)
    batch = config.batch_size or auto_batch_size(n_train, config.hidden, config.layers, device,
                                                 solver_tensors(config))
    if signal.kind in POINTS_PER_STEP and not config.batch_size:
        batch = min(batch, POINTS_PER_STEP[signal.kind])
    return replace(
        config,
        device=str(device),
        lr=config.lr if config.lr is not None else default_learning_rate(config.model, signal.grid_shape, signal.kind),
        frequency=(config.frequency if config.frequency is not None
                   else default_frequency(config.model, signal.grid_shape, signal.kind, signal.values)),
        batch_size=min(batch, n_train),
        eval_every=config.eval_every if config.eval_every is not None else max(1, config.steps // 25),
    )


@dataclass
class FitProgress:
    step: int
    steps: int
    loss: float
    psnr: float  # on the step's batch, from the training loss (values in [0, 1])
    seconds: float


@dataclass
class FitResult:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: FitConfig  # resolved
    params: int
    train_seconds: float  # the optimisation alone, evaluations excluded
    eval_seconds: float
    batch_psnr: list[float]  # per step, from the training loss
    evaluations: list[dict] = field(default_factory=list)  # {"step", "psnr", "psnr_holdout"} along the run
    final: Evaluation | None = None
    solver: dict | None = None  # implicit models: iterations and residuals (see solver_report)


def solve_settings(config: FitConfig) -> SolveSettings:
    return SolveSettings(solver=config.solver, tol=config.tol, max_iter=config.max_iter, backward=config.backward,
                         neumann_steps=config.neumann_steps)


def is_implicit(config: FitConfig) -> bool:
    """True when the model is solved to a fixpoint (an implicit model not switched to its one-pass form)."""
    return get_spec(config.model).implicit and not config.explicit


def solver_tensors(config: FitConfig) -> int:
    """Width-hidden tensors per point the fit keeps beyond activations: solver state (and the amortized cache)."""
    return STATE_TENSORS[config.solver] + 1 if is_implicit(config) else 0


def make_model(config: FitConfig, signal: Signal) -> nn.Module:
    return build_model(config.model, signal.dims, signal.channels, hidden=config.hidden, layers=config.layers,
                       frequency=config.frequency, one_pass=config.explicit, settings=solve_settings(config))


def make_optimizer(model: nn.Module, config: FitConfig, device: torch.device) -> torch.optim.Optimizer:
    # The fused kernel is the fastest Adam on CUDA; on the CPU the default (foreach) implementation is.
    return torch.optim.Adam(model.parameters(), lr=config.lr, fused=device.type == "cuda" or None)


class _BatchSampler:
    """Index batches into the training points: every point once per epoch, in a fresh random order each epoch."""

    def __init__(self, n: int, batch_size: int, device: torch.device, generator: torch.Generator):
        self.n, self.batch_size, self.device, self.generator = n, batch_size, device, generator
        self._order = torch.empty(0, dtype=torch.int64)
        self._pos = n

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > self.n:
            self._order = torch.randperm(self.n, generator=self.generator).to(self.device)
            self._pos = 0
        batch = self._order[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return batch


def fit(signal: Signal, config: FitConfig, on_progress: Callable[[FitProgress], None] | None = None) -> FitResult:
    """Fit a fresh network to ``signal``. ``config`` may be partly unresolved; the result holds the resolved one."""
    config = resolve_config(config, signal)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = make_model(config, signal).to(device)
    optimizer = make_optimizer(model, config, device)
    chunk = render_chunk_size(config.hidden, config.layers, device, solver_tensors(config))

    train_coords = signal.coordinates(signal.train_index).to(device)
    train_values = signal.values[signal.train_index].to(device)
    n_train = len(signal.train_index)
    full_batch = config.batch_size >= n_train
    sampler = _BatchSampler(n_train, config.batch_size, device, torch.Generator().manual_seed(config.seed))
    cache_note = None
    cache = None
    if is_implicit(config) and config.amortize:
        cache_bytes = 4 * n_train * config.hidden
        if cache_bytes <= memory_budget_bytes(device) // 4:
            cache = FixpointCache(n_train, config.hidden, device)
        else:
            # A state per training point would crowd out the activations: solve each step instead.
            cache_note = f"no amortized cache: it would need {cache_bytes / 2**30:.1f} GiB for {n_train} points"

    # Losses stay on the device; reading them back forces a sync, so on a GPU we only do it now and then.
    losses = torch.zeros(config.steps, device=device)
    sync_every = 25 if device.type == "cuda" else 1
    evaluations: list[dict] = []
    eval_seconds = 0.0
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        batch = None if full_batch else sampler.next()
        coords = train_coords if batch is None else train_coords[batch]
        target = train_values if batch is None else train_values[batch]
        prediction = model(coords) if cache is None else cache.predict(model, coords, batch)
        if signal.loss == "bce":
            loss = nn.functional.binary_cross_entropy_with_logits(prediction, target)
        else:
            loss = torch.mean((prediction - target) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[step - 1] = loss.detach()

        last = step == config.steps
        if step % sync_every == 0 or last:
            value = loss.item()
            if not math.isfinite(value):
                raise UserError(f"training diverged at step {step} (loss {value}); try a smaller --lr")
            if on_progress is not None:
                on_progress(FitProgress(step, config.steps, value, psnr_from_mse(value),
                                        time.perf_counter() - start - eval_seconds))
        if (config.eval_every and step % config.eval_every == 0) or last:
            eval_start = time.perf_counter()
            result = evaluate(model, signal, device, chunk)
            evaluations.append({"step": step, "psnr": result.psnr, "psnr_holdout": result.psnr_holdout,
                                **({"iou": result.iou} if result.iou is not None else {})})
            eval_seconds += time.perf_counter() - eval_start
    train_seconds = time.perf_counter() - start - eval_seconds

    return FitResult(
        model=model, optimizer=optimizer, config=config, params=count_parameters(model),
        train_seconds=train_seconds, eval_seconds=eval_seconds,
        batch_psnr=[psnr_from_mse(v) for v in losses.cpu().tolist()],
        evaluations=evaluations, final=result,
        solver=solver_report(config, model, cache, train_coords, result, chunk, cache_note) if is_implicit(config)
        else None,
    )


def solver_report(config: FitConfig, model: nn.Module, cache: FixpointCache | None, train_coords: torch.Tensor,
                  final: Evaluation, chunk: int, cache_note: str | None = None) -> dict:
    """The report's ``solver`` section: iterations and residuals at training and at evaluation."""
    training: dict = {"amortized": cache is not None}
    if cache_note:
        training["note"] = cache_note
    if cache is not None:
        steps = [s["steps"] for s in cache.initial_solves]
        training.update({"initial_solves": len(steps), "initial_solve_iterations_mean": sum(steps) / len(steps),
                         "initial_solve_iterations_max": max(steps)})
        training.update(cache.residuals(model, train_coords, chunk))
    return {"solver": config.solver, "tol": config.tol, "max_iter": config.max_iter, "backward": config.backward,
            "neumann_steps": config.neumann_steps, "training": training, "evaluation": final.solver}
