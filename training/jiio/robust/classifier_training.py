"""Training an MDEQ classifier, clean or adversarially, and measuring it under attack.

Per batch, by ``RobustConfig.adversary``:

- ``none``: the equilibrium of the clean images, solved to tolerance; cross-entropy; the exact implicit backward.
- ``pgd``: PGD's adversarial images (:func:`training.jiio.robust.attacks.pgd_perturb`), then the same step on them.
- ``jiio``: the JIIO attack's augmented fixpoint (:func:`training.jiio.robust.attacks.run_jiio`) ends with the
  adversarial image x', a state z ~ z*(x') and the adjoint mu of its cost (-loss). The parameters' gradient of the
  loss at x' is then the implicit one, ``-(df/dtheta)^T mu + d loss/d theta``: the backward of the surrogate
  ``-<f(z, x'), mu> + loss(head(z))``, one application of f, no forward or backward solve of its own (as the
  decoder is trained with JIIO's latents).

Every epoch reseeds the order and the attacks' random starts from (seed, epoch), so a run resumed after epoch k
continues as the uninterrupted run would. :func:`evaluate` measures clean accuracy and accuracy under each attack on
held-out images, with every perturbation's norm asserted and every prediction read at a re-solved equilibrium; it
stops between batches when asked (:class:`EvaluationInterrupted`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.nn import functional as F

from models.mdeq_classifier import MDEQClassifier
from training.adam import Adam
from training.jiio.robust.attacks import AttackResult, attack, pgd_perturb, run_jiio
from training.jiio.robust.config import RobustConfig


class TrainingInterrupted(Exception):
    """Raised between batches when the caller asks to stop; the last finished epoch was handed to ``on_epoch``."""

    def __init__(self, epoch: int):
        super().__init__(f"interrupted in epoch {epoch + 1}")
        self.epoch = epoch


class EvaluationInterrupted(Exception):
    """Raised by :func:`evaluate` between batches when the caller asks to stop: no measurement is complete."""

    def __init__(self):
        super().__init__("interrupted while attacking")


@dataclass
class ClassifierTrainingState:
    model: MDEQClassifier
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    history: list[dict] = field(default_factory=list)  # one record per finished epoch


def new_state(config: RobustConfig, device: torch.device | str = "cpu") -> ClassifierTrainingState:
    torch.manual_seed(config.seed)
    model = MDEQClassifier(config.classifier_preset(), config.classes, config.in_channels).to(device)
    return ClassifierTrainingState(model, Adam(model.parameters(), lr=config.lr))


def epoch_generator(seed: int, epoch: int, purpose: int) -> torch.Generator:
    """The random stream of one epoch (``purpose`` 0: the order, 1: the attacks' random starts)."""
    return torch.Generator().manual_seed(1_000_003 * seed + 1009 * epoch + purpose)


def _clean_loss(model: MDEQClassifier, images: torch.Tensor, labels: torch.Tensor, config: RobustConfig
                ) -> tuple[torch.Tensor, torch.Tensor]:
    logits, _, _ = model.forward_with_stats(images, config.attack.solver)
    return F.cross_entropy(logits, labels), logits.detach()


def _jiio_surrogate(model: MDEQClassifier, images: torch.Tensor, labels: torch.Tensor, config: RobustConfig,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A loss whose parameter gradient is the implicit gradient of the mean loss at JIIO's adversarial images."""
    with torch.no_grad():
        result = run_jiio(model, images, labels, config.attack, generator)
    z, mu, attacked = result.last_z.detach(), result.last_mu.detach(), result.last_x.detach()
    f_out = model.f_from_input(z, attacked)
    logits = model.logits(z)
    loss = F.cross_entropy(logits, labels, reduction="sum")
    # mu is the adjoint of the cost -loss, summed per sample: the mean loss's multiplier is -mu / batch.
    surrogate = (loss - (f_out * mu).sum()) / len(images)
    return surrogate, logits.detach()


def train_step(state: ClassifierTrainingState, images: torch.Tensor, labels: torch.Tensor, config: RobustConfig,
               generator: torch.Generator) -> dict:
    """One optimiser step on a batch under ``config.adversary``: the loss and accuracy on the examples trained on."""
    model = state.model
    started = time.perf_counter()
    if config.adversary == "jiio":
        loss, logits = _jiio_surrogate(model, images, labels, config, generator)
        attack_seconds = time.perf_counter() - started
    else:
        if config.adversary == "pgd":
            images, _ = pgd_perturb(model, images, labels, config.attack, generator)
        attack_seconds = time.perf_counter() - started
        loss, logits = _clean_loss(model, images, labels, config)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    # For JIIO the surrogate is not the loss: report the cross-entropy at the iterate's logits instead.
    reported = F.cross_entropy(logits, labels) if config.adversary == "jiio" else loss.detach()
    return {"loss": float(reported), "correct": int((logits.argmax(1) == labels).sum()),
            "attack_seconds": attack_seconds, "seconds": time.perf_counter() - started}


def train_classifier(config: RobustConfig, images: torch.Tensor, labels: torch.Tensor,
                     state: ClassifierTrainingState | None = None, *,
                     on_epoch: Callable[[ClassifierTrainingState], None] | None = None,
                     on_batch: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     device: torch.device | str = "cpu") -> ClassifierTrainingState:
    """Train up to ``config.epochs`` (continuing ``state`` when given). ``images`` (N, C, S, S) in [0, 1] may stay
    on the host; ``on_batch(epoch, images_done)`` drives progress bars; ``should_stop`` is polled between batches
    (then :class:`TrainingInterrupted`)."""
    state = state or new_state(config, device)
    state.model.train()
    while state.epoch < config.epochs:
        epoch = state.epoch
        order = torch.randperm(len(images), generator=epoch_generator(config.seed, epoch, 0))
        starts = epoch_generator(config.seed, epoch, 1)
        totals = {"loss": 0.0, "correct": 0, "attack_seconds": 0.0, "seconds": 0.0}
        for first in range(0, len(images), config.batch_size):
            if should_stop is not None and should_stop():
                raise TrainingInterrupted(epoch)
            index = order[first:first + config.batch_size]
            batch, batch_labels = images[index].to(device), labels[index].to(device)
            step = train_step(state, batch, batch_labels, config, starts)
            totals = {k: totals[k] + (step[k] * len(index) if k == "loss" else step[k]) for k in totals}
            if on_batch is not None:
                on_batch(epoch, min(first + config.batch_size, len(images)))
        state.epoch += 1
        state.history.append({"epoch": state.epoch, "adversary": config.adversary,
                              "loss": totals["loss"] / len(images), "train_accuracy": totals["correct"] / len(images),
                              "seconds": totals["seconds"], "attack_seconds": totals["attack_seconds"]})
        if on_epoch is not None:
            on_epoch(state)
    return state


@dataclass
class Evaluation:
    """Clean accuracy and, per attack, what it did to the held-out images."""

    clean_correct: torch.Tensor  # (N,) bool
    clean_residual: torch.Tensor  # (N,) relative residuals of the clean solves
    attacks: dict[str, list[AttackResult]]  # name -> one result per batch

    def summary(self) -> dict:
        report = {"clean": {"accuracy": float(self.clean_correct.float().mean()),
                            "final_residual_max": float(self.clean_residual.max())}}
        for name, results in self.attacks.items():
            report[name] = summarize_attack(results)
        return report

    def deltas(self, name: str) -> torch.Tensor:
        return torch.cat([r.delta for r in self.attacks[name]])


def summarize_attack(results: list[AttackResult]) -> dict:
    """Accuracy under the attack, time and work per batch, residuals of the judging re-solves, norms reached."""
    def cat(key: str) -> torch.Tensor:
        return torch.cat([getattr(r, key).float() for r in results])

    norms, seconds = cat("norms"), [r.seconds for r in results]
    summary = {"accuracy": float(cat("correct").mean()), "loss_mean": float(cat("loss").mean()),
               "ms_per_batch": 1000 * sum(seconds) / len(seconds), "batches": len(results),
               "evaluations_per_batch": sum(r.evaluations for r in results) / len(results),
               "final_residual_max": float(cat("residual").max()),
               "final_residual_mean": float(cat("residual").mean()),
               "delta_norm_max": float(norms.max()), "delta_norm_mean": float(norms.mean()),
               "delta_norm_min": float(norms.min())}
    jiio_runs = [r.jiio for r in results if r.jiio is not None]
    if jiio_runs:
        for key in ("state_residual", "adjoint_residual"):
            values = torch.cat([getattr(run, key) for run in jiio_runs])
            summary[f"jiio_{key}_max"], summary[f"jiio_{key}_mean"] = float(values.max()), float(values.mean())
    return summary


def evaluate(model: MDEQClassifier, images: torch.Tensor, labels: torch.Tensor, config: RobustConfig,
             attacks: tuple[str, ...] = ("pgd", "jiio"), batch_size: int | None = None, seed: int = 0,
             on_batch: Callable[[str, int], None] | None = None, device: torch.device | str = "cpu",
             should_stop: Callable[[], bool] | None = None) -> Evaluation:
    """Clean accuracy and accuracy under each attack (``config.attack``) on ``images`` in [0, 1], batch by batch;
    ``on_batch(what, images_done)`` drives progress bars; ``should_stop`` is polled between batches, and once
    more after the last (then :class:`EvaluationInterrupted`)."""
    model = model.eval().requires_grad_(False)  # attacks differentiate with respect to the images only
    size = batch_size or config.batch_size

    def poll() -> None:
        if should_stop is not None and should_stop():
            raise EvaluationInterrupted()

    try:
        logits, residual = [], []
        for first in range(0, len(images), size):
            poll()
            part_logits, part_residual = model.predict(images[first:first + size].to(device),
                                                       settings=config.attack.solver)
            logits.append(part_logits.argmax(1).cpu())
            residual.append(part_residual.cpu())
        clean_correct = torch.cat(logits) == labels.cpu()
        results: dict[str, list[AttackResult]] = {}
        for name in attacks:
            generator = torch.Generator().manual_seed(seed)
            results[name] = []
            for first in range(0, len(images), size):
                poll()
                batch, batch_labels = images[first:first + size].to(device), labels[first:first + size].to(device)
                results[name].append(_to_host(attack(name, model, batch, batch_labels, config.attack, generator)))
                if on_batch is not None:
                    on_batch(name, min(first + size, len(images)))
        poll()
        return Evaluation(clean_correct, torch.cat(residual), results)
    finally:
        model.requires_grad_(True)


def _to_host(result: AttackResult) -> AttackResult:
    for key in ("delta", "loss", "correct", "norms", "residual"):
        setattr(result, key, getattr(result, key).detach().cpu())
    if result.jiio is not None:
        for key in ("state_residual", "adjoint_residual"):
            setattr(result.jiio, key, getattr(result.jiio, key).detach().cpu())
        for key in ("x", "z", "last_x", "last_z", "last_mu"):  # large iterates the report does not need
            setattr(result.jiio, key, None)
    return result
