"""What decides a fit: the typed :class:`FitConfig`, its validation, and its resolution against a signal.

A command builds one FitConfig, calls :meth:`FitConfig.validate` once, and each fit resolves it against its
signal and the modality's :class:`~training.fitting.recipes.Recipe` (:func:`resolve_config`): every ``None``
becomes the concrete value the run uses, so the saved config reproduces the run.

The config and its defaults import no torch (a command lists them in ``--help`` without loading it); validating
and resolving one import the device and recipe rules they apply.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING

from inr_core.errors import check, check_positive, within
from models import get_spec, model_names
from models.fixpoint.settings import SolverSettings
from training.fitting.precision import check_precision, default_precision
from training.schedule import LR_SCHEDULES, rate_factor

if TYPE_CHECKING:
    from training.fitting.recipes import RecipeRule

# The largest sizes and counts a fit takes: past them torch's 64-bit sizes and seeds overflow, or the run could
# never finish, so such values are refused as settings instead of failing deep inside a run.
MAX_HIDDEN = 2**24  # one hidden-to-hidden weight of this width is a petabyte: past any memory, short of overflow
MAX_LAYERS = 1_000
MAX_STEPS = 10**9  # the loss of every step is kept: 4 GB at this many
MAX_SEED = 2**63 - 1  # torch's generators take a signed 64-bit seed
# Which network a fit returns (see training.fitting.best): its best progress evaluation's, or the last step's.
KEEP_CHOICES = ("best", "last")
# Progress evaluations along a run, by default: about 25, as long as they cost at most a tenth of the training.
# An evaluation renders every point once without gradients (an implicit model solving from its cached states);
# measured on the CPU at 128 and 256 px with full batches, one costs 0.36-0.45 of a training step, SIREN, MFN and
# implicit alike: about 0.4 x (points / points per step) steps. Evaluating at most every 4 x (points / points per
# step) steps keeps it under a tenth of the training: every 4th step at full batch, every 8th when a step takes
# half the points. (A 30-step fit used to evaluate after every step, which took longer than its training.) A run
# of 100 steps or more at full batch evaluates 25 times, as before.
DEFAULT_EVALUATIONS = 25
EVALUATION_SPACING = 4  # steps between evaluations, at least, per full pass's worth of steps (0.4 / a tenth)


@dataclass(frozen=True)
class FitConfig:
    """Everything that decides a fit. ``None`` means "resolve from the signal" (see :func:`resolve_config`)."""

    # The network
    model: str = "siren"
    hidden: int = 256
    layers: int = 3
    frequency: float | None = None  # SIREN first-layer w0, or MFN input scale
    explicit: bool = False  # implicit models: one pass of f from z = 0, the explicit counterpart
    # The optimisation
    steps: int = 2000
    lr: float | None = None
    lr_schedule: str = "constant"  # the rate over the run (training.schedule): constant, as both papers, or cosine
    batch_size: int | None = None  # points per step; None = full batch when it fits in memory
    eval_every: int | None = None  # steps between full evaluations; None = default_eval_every, 0 = only at the end
    keep: str = "best"  # the network a fit returns: its best progress evaluation's ("best") or the last step's
    seed: int = 0
    device: str = "auto"
    # Speed: the arithmetic precision (fp32, tf32, bf16; None = tf32 on CUDA, fp32 on the CPU) and whether the
    # training step is compiled with torch.compile (None = for fits long enough to earn it back: on CUDA, and on
    # the CPU when a step has at least 65,536 points)
    precision: str | None = None
    compile: bool | None = None
    # Implicit models: how fixpoints are found and differentiated, and whether training reuses them
    amortize: bool = True  # reuse last step's fixpoint: one f evaluation per training step
    solver: SolverSettings = field(default_factory=SolverSettings)

    def validate(self) -> None:
        """Raise :class:`inr_core.errors.InvalidSetting` naming the first setting no fit can use."""
        from training.fitting.devices import check_device_name

        check(self.model in model_names(), "model", f"must be one of: {', '.join(model_names())}; got {self.model!r}")
        _check_between(self.hidden, "hidden", 1, MAX_HIDDEN)
        _check_between(self.layers, "layers", 0, MAX_LAYERS)
        check(not get_spec(self.model).implicit or self.layers >= 1, "layers",
              f"must be at least 1 for the implicit model {self.model}, got {self.layers}")
        check_positive(self.frequency, "frequency", optional=True)
        _check_between(self.steps, "steps", 1, MAX_STEPS)
        check_positive(self.lr, "lr", optional=True)
        check(self.lr_schedule in LR_SCHEDULES, "lr_schedule",
              f"must be one of: {', '.join(LR_SCHEDULES)}; got {self.lr_schedule!r}")
        check(self.batch_size is None or self.batch_size >= 1, "batch_size",
              f"must be at least 1, got {self.batch_size}")
        check(self.eval_every is None or self.eval_every >= 0, "eval_every",
              f"must be 0 or more, got {self.eval_every}")
        check(self.keep in KEEP_CHOICES, "keep", f"must be one of: {', '.join(KEEP_CHOICES)}; got {self.keep!r}")
        _check_between(self.seed, "seed", 0, MAX_SEED)
        check_device_name(self.device)
        check_precision(self.precision)
        within("solver", self.solver.validate)

    def learning_rate(self, step: int, rollbacks: int = 0) -> float:
        """Step ``step``'s rate (1-based) of a resolved config: ``lr`` on its schedule over the run's steps,
        halved by each rollback after a runaway loss (training.fitting.control.ROLLBACK_LR_FACTOR)."""
        from training.fitting.control import ROLLBACK_LR_FACTOR

        progress = (step - 1) / max(1, self.steps - 1)
        return self.lr * ROLLBACK_LR_FACTOR ** rollbacks * rate_factor(self.lr_schedule, progress)

    def is_implicit(self) -> bool:
        """True when the model is solved to a fixpoint (an implicit model not switched to its one-pass form)."""
        return get_spec(self.model).implicit and not self.explicit

    def unused_settings_note(self) -> str | None:
        """A note naming the implicit-model settings given to a fit they do nothing for (a SIREN or MFN, or an
        implicit model run ``--explicit``), so that a report's config is not read as if they had been used."""
        if self.is_implicit():
            return None
        defaults = SolverSettings()
        unused = [f"--{item.name.replace('_', '-')} {getattr(self.solver, item.name)}" for item in fields(defaults)
                  if getattr(self.solver, item.name) != getattr(defaults, item.name)]
        unused += ["--no-amortize"] if not self.amortize else []
        implicit = get_spec(self.model).implicit
        unused += ["--explicit"] if self.explicit and not implicit else []
        if not unused:
            return None
        why = "run --explicit: one pass, no fixpoint" if implicit else "not an implicit model"
        return f"{', '.join(unused)}: no effect on {self.model} ({why})"

    def solver_tensors(self) -> int:
        """Width-hidden tensors per point the fit keeps beyond activations: solver state (and the amortized cache)."""
        return self.solver.state_tensors() + 1 if self.is_implicit() else 0

    def to_dict(self) -> dict:
        return asdict(self)  # the solver settings nest as a dict of their own

    @classmethod
    def from_dict(cls, data: dict) -> FitConfig:
        """The inverse of :meth:`to_dict`."""
        return cls(**{**data, "solver": SolverSettings(**data.get("solver", {}))})

    @classmethod
    def from_flat_dict(cls, data: dict) -> FitConfig:
        """From the flat layout of version-1 checkpoints and reports: solver fields beside the others, other
        commands' options mixed in (ignored here)."""
        own = {f.name for f in fields(cls)} - {"solver"}
        solver = {f.name for f in fields(SolverSettings)}
        return cls(**{k: v for k, v in data.items() if k in own},
                   solver=SolverSettings(**{k: v for k, v in data.items() if k in solver}))


def _check_between(value: int, setting: str, least: int, most: int) -> None:
    check(least <= value <= most, setting, f"must be between {least:,} and {most:,}, got {value}")


def resolve_config(config: FitConfig, signal, recipe_rule: RecipeRule | None = None) -> FitConfig:
    """Fill every ``None`` of a validated ``config`` with the value this fit on ``signal`` will use.

    ``recipe_rule`` (the modality's, e.g. ``Modality.recipe``) gives the learning rate, frequency scale and points
    per step for the model; a config that already has them (a resolved one) needs none.
    """
    from training.fitting.devices import auto_batch_size, resolve_device
    from training.fitting.step import compile_by_default

    if recipe_rule is None and (config.lr is None or config.frequency is None):
        raise ValueError("resolving lr or frequency needs the modality's recipe rule")
    recipe = recipe_rule(config.model, signal) if recipe_rule is not None else None
    device = resolve_device(config.device)
    n_train = signal.train_count
    batch = config.batch_size or auto_batch_size(n_train, config.hidden, config.layers, device,
                                                 config.solver_tensors())
    if recipe is not None and recipe.points_per_step and not config.batch_size:
        batch = min(batch, recipe.points_per_step)
    return replace(
        config,
        device=str(device),
        lr=config.lr if config.lr is not None else recipe.learning_rate,
        frequency=config.frequency if config.frequency is not None else recipe.frequency_value(),
        batch_size=min(batch, n_train),
        precision=config.precision or default_precision(device),
        compile=config.compile if config.compile is not None else
        compile_by_default(device, config.steps, min(batch, n_train), config.model),
        eval_every=config.eval_every if config.eval_every is not None else
        default_eval_every(config.steps, signal.num_points, min(batch, n_train)),
    )


def default_eval_every(steps: int, points: int, points_per_step: int) -> int:
    """Steps between progress evaluations when the user has not said: about ``DEFAULT_EVALUATIONS`` over the run,
    but never so often that evaluating ``points`` would cost more than a tenth of the training. It may exceed
    ``steps``: then only the final evaluation is made."""
    affordable = math.ceil(EVALUATION_SPACING * points / points_per_step)
    return max(1, steps // DEFAULT_EVALUATIONS, affordable)
