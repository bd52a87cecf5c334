"""L2 attacks on an MDEQ classifier, ``max_{||delta||_2 <= eps} loss(h(z*(x + delta)), y)``, two ways:

- **PGD** (:func:`pgd_attack`): every step solves the equilibrium at x + delta to tolerance, differentiates the
  loss exactly (the adjoint solved to tolerance by the DEQ core's exact implicit backward), steps along the
  normalised gradient and projects back onto the ball; random start; the highest-loss iterate per sample is kept.
- **JIIO** (:func:`jiio_attack`): the augmented (z, mu, delta) fixpoint of :func:`training.jiio.inference.jiio`
  with the cost ``-loss`` (so delta ascends the loss), unit-length steps and delta projected onto the ball every
  iteration: one evaluation of f and one vector-Jacobian product per iteration, no inner solves.

Both are judged the same way (:func:`judge`): every ``||delta||_2 <= eps`` is asserted (up to the pixels' float
rounding, :func:`ball_tolerance`), then the equilibrium at x + delta is solved again from zero to tolerance and the
loss and prediction are read there, never at an iterate.
Pixels are in [0, 1]; with ``clip`` the attacked image stays in [0, 1] (clipping after the ball projection can
only shorten delta).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch.nn import functional as F

from models.fixpoint import SolverSettings
from models.mdeq_classifier import MDEQClassifier
from training.jiio.inference import JIIOResult, jiio, l2_ball
from training.jiio.robust.config import AttackSettings
from training.jiio.settings import JIIOSettings

# Rounding may leave a norm this far (relatively) above epsilon; and, measured as attacked - images, up to one
# rounding step of the pixels' scale per pixel above it (see :func:`ball_tolerance`).
BALL_SLACK = 1e-5


@dataclass
class AttackResult:
    delta: torch.Tensor  # (B, C, H, W): the perturbation kept per sample
    loss: torch.Tensor  # (B,) cross-entropy at the equilibrium of x + delta, re-solved to tolerance
    correct: torch.Tensor  # (B,) bool: still classified right there
    norms: torch.Tensor  # (B,) ||delta||_2
    seconds: float  # the attack alone (not the re-solve that judges it)
    evaluations: int  # f evaluations and vector-Jacobian products (as JIIO's result counts them)
    residual: torch.Tensor  # (B,) relative residual of the judging re-solve
    jiio: JIIOResult | None = None  # JIIO's own iterates and residuals (None for PGD)


def _per_sample(shape: torch.Size) -> tuple[int, ...]:
    return (-1, *([1] * (len(shape) - 1)))


def norms_of(delta: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(delta.reshape(len(delta), -1), dim=1)


def ball_tolerance(delta: torch.Tensor, epsilon: float, scale: float = 1.0) -> float:
    """The largest norm of ``delta`` that is still within the ball of radius epsilon once rounding is allowed for:
    a perturbation measured as ``attacked - images`` carries the rounding of the attacked pixels (values up to
    ``scale``), about one unit in the last place of ``scale`` per pixel whatever epsilon is: 3.3e-6 in L2 over
    784 float32 pixels in [0, 1], which is far above a relative slack of a small epsilon (1e-6 measured 1.09e-6)."""
    pixels = delta[0].numel() if len(delta) else 1
    return epsilon * (1 + BALL_SLACK) + torch.finfo(delta.dtype).eps * max(scale, 1.0) * pixels ** 0.5


def assert_within_ball(delta: torch.Tensor, epsilon: float, scale: float = 1.0) -> torch.Tensor:
    """The norms of ``delta``, after checking every one is at most epsilon (up to the rounding of pixels of values
    up to ``scale``, :func:`ball_tolerance`): an attack that left the ball is a bug, and its accuracy would be
    meaningless."""
    norms = norms_of(delta)
    if not bool(torch.isfinite(norms).all()) or float(norms.max()) > ball_tolerance(delta, epsilon, scale):
        raise AssertionError(f"perturbation of L2 norm {float(norms.max()):.6g} exceeds epsilon {epsilon}")
    return norms


def ball_projection(images: torch.Tensor, epsilon: float, clip: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """Attacked images -> the nearest point of the ball around ``images`` (then clipped to [0, 1])."""
    ball = l2_ball(images, epsilon)
    return (lambda x: ball(x).clamp(0.0, 1.0)) if clip else ball


def random_start(images: torch.Tensor, epsilon: float, generator: torch.Generator | None) -> torch.Tensor:
    """A perturbation drawn uniformly from the L2 ball of radius epsilon, per sample."""
    direction = torch.randn(images.shape, generator=generator).to(images)
    direction = direction / norms_of(direction).reshape(_per_sample(images.shape))
    dim = images[0].numel()
    radius = epsilon * torch.rand(len(images), generator=generator).to(images) ** (1.0 / dim)
    return direction * radius.reshape(_per_sample(images.shape))


def _start(images: torch.Tensor, settings: AttackSettings, generator: torch.Generator | None,
           project: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    if not settings.random_start:
        return images.clone()
    return project(images + random_start(images, settings.epsilon, generator))


def loss_and_input_gradient(model: MDEQClassifier, attacked: torch.Tensor, labels: torch.Tensor,
                            solver: SolverSettings) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-sample cross-entropy at the equilibrium of ``attacked`` solved to tolerance, and its exact gradient with
    respect to the image (the adjoint solved to tolerance): ``(loss, gradient, evaluations)``."""
    with torch.enable_grad():
        x = attacked.detach().requires_grad_()
        logits, forward, backward = model.forward_with_stats(x, solver)
        loss = F.cross_entropy(logits, labels, reduction="none")
        gradient = torch.autograd.grad(loss.sum(), x)[0]
    return loss.detach(), gradient, forward.steps + 1 + backward.steps


def judge(model: MDEQClassifier, images: torch.Tensor, attacked: torch.Tensor, labels: torch.Tensor,
          settings: AttackSettings, seconds: float, evaluations: int, jiio_result: JIIOResult | None = None
          ) -> AttackResult:
    """The attack's result: the ball asserted, then the equilibrium at the attacked images re-solved from zero to
    tolerance, where the loss and the prediction are read."""
    delta = (attacked - images).detach()
    scale = float(torch.maximum(attacked.detach().abs().amax(), images.abs().amax())) if images.numel() else 1.0
    norms = assert_within_ball(delta, settings.epsilon, scale)
    logits, residual = model.predict(attacked.detach(), settings=settings.solver)
    loss = F.cross_entropy(logits, labels, reduction="none")
    return AttackResult(delta, loss, logits.argmax(1) == labels, norms, seconds, evaluations, residual, jiio_result)


def pgd_perturb(model: MDEQClassifier, images: torch.Tensor, labels: torch.Tensor, settings: AttackSettings,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """Projected gradient ascent with the true gradient through the equilibrium (see the module's doc): the
    highest-loss attacked images per sample and the f evaluations plus vector-Jacobian products spent."""
    project = ball_projection(images, settings.epsilon, settings.clip)
    attacked = _start(images, settings, generator, project)
    best, best_loss = attacked, torch.full((len(images),), -float("inf"), device=images.device)
    evaluations = 0
    for step in range(settings.pgd_steps + 1):  # the last pass only scores the final iterate
        if step < settings.pgd_steps:
            loss, gradient, used = loss_and_input_gradient(model, attacked, labels, settings.solver)
        else:
            z, stats = model.solve(attacked, settings.solver)
            loss, used = F.cross_entropy(model.logits(z), labels, reduction="none"), stats.steps
        evaluations += used
        better = loss > best_loss
        best_loss = torch.where(better, loss, best_loss)
        best = torch.where(better.reshape(_per_sample(images.shape)), attacked, best)
        if step < settings.pgd_steps:
            unit = gradient / norms_of(gradient).clamp_min(1e-12).reshape(_per_sample(images.shape))
            attacked = project(attacked + settings.pgd_step() * unit)
    return best, evaluations


def pgd_attack(model: MDEQClassifier, images: torch.Tensor, labels: torch.Tensor, settings: AttackSettings,
               generator: torch.Generator | None = None) -> AttackResult:
    started = time.perf_counter()
    attacked, evaluations = pgd_perturb(model, images, labels, settings, generator)
    return judge(model, images, attacked, labels, settings, time.perf_counter() - started, evaluations)


def jiio_settings(images: torch.Tensor, settings: AttackSettings, iterations: int | None = None) -> JIIOSettings:
    """JIIO's augmented fixpoint as an attack: unit steps of ``jiio_step``, the ball projection every iteration."""
    return replace(JIIOSettings(), iterations=iterations or settings.jiio_iterations, step_size=settings.jiio_step(),
                   normalize_step=True, project=ball_projection(images, settings.epsilon, settings.clip))


def run_jiio(model: MDEQClassifier, images: torch.Tensor, labels: torch.Tensor, settings: AttackSettings,
             generator: torch.Generator | None = None) -> JIIOResult:
    """The augmented fixpoint itself, ascending the loss (its cost is ``-loss``, summed per sample)."""
    jiio_config = jiio_settings(images, settings)
    start = _start(images, settings, generator, jiio_config.project)
    z0 = model.zeros(len(images), device=images.device, dtype=images.dtype)

    def cost(z: torch.Tensor) -> torch.Tensor:
        return -F.cross_entropy(model.logits(z), labels, reduction="none")

    with model.fixed_weights():
        return jiio(model.f_from_input, cost, z0, start, jiio_config)


def jiio_attack(model: MDEQClassifier, images: torch.Tensor, labels: torch.Tensor, settings: AttackSettings,
                generator: torch.Generator | None = None) -> AttackResult:
    """The JIIO attack: the highest-loss near-equilibrium iterate of :func:`run_jiio`, judged like PGD's."""
    started = time.perf_counter()
    result = run_jiio(model, images, labels, settings, generator)
    return judge(model, images, result.x, labels, settings, time.perf_counter() - started, result.evaluations,
                 result)


ATTACK_FUNCTIONS = {"pgd": pgd_attack, "jiio": jiio_attack}


def attack(name: str, model: MDEQClassifier, images: torch.Tensor, labels: torch.Tensor, settings: AttackSettings,
           generator: torch.Generator | None = None) -> AttackResult:
    return ATTACK_FUNCTIONS[name](model, images, labels, settings, generator)
