"""One training step — prediction, loss, backward, Adam update — eager or with its network compiled.

What is compiled (``torch.compile``): an explicit network's forward; for an implicit network, its z-independent
preparation (filters, normalised weights) and the layers of f, as two separate pieces. The implicit backward is a
hook that takes vector-Jacobian products through the layers' graph; keeping it between compiled pieces lets it
differentiate through the layers' compiled backward, which AOTAutograd generates as usual. The solver loop, the
hook and the optimizer stay eager (the optimizer is one fused kernel on CUDA already).

Compilation is paid once per process for a model class and input shape, not once per fit: what is compiled is
the class's own (unbound) method, shared by every instance. torch.compile caches by code and guards on shapes,
dtypes and the module's constant settings, not on which instance it is given. A second input of another shape
compiles once more, with dynamic shapes, and that version serves every later shape.

Where compilation fails (no compiler, an unsupported operator), the step falls back to eager mode and says why
in :attr:`TrainingStep.note`; the fit goes on. ``INR_COMPILE_BACKEND`` selects another torch.compile backend
(``aot_eager`` traces and splits graphs exactly as ``inductor`` does, without generating code: the tests use it).
"""

from __future__ import annotations

import functools
import os
import time
from contextlib import contextmanager, nullcontext
from typing import Callable

import torch
from torch import nn

from inr_core.errors import out_of_memory
from training.fitting.amortized import FixpointCache
from training.fitting.devices import synchronize
from training.fitting.precision import autocast

DEFAULT_COMPILE_BACKEND = "inductor"
# Below this many point-steps (steps x points per step) a fit is left eager unless --compile asks: compiling
# costs seconds up front, and on an H200 it saves about 1.8 ms per step of 262,144 points (TF32 SIREN 3x256:
# 5.6 -> 3.8 ms), so short or small fits would pay more than they gain. 1e8 is 400 steps at 512 x 512 (the
# default `inr fit image` compiles) or 6,100 steps at 128 x 128 (a 300-step thumbnail does not).
COMPILE_MIN_POINT_STEPS = 1e8
# On a CPU the gain needs large steps as well. At 64x64 (4,096 points) the compiled step ran 0.94x (Fourier-iMFN,
# Gabor-MFN) to 1.48x (SIREN) the eager one's speed, a gain too uncertain for its compile time, so small steps
# stay eager. Large steps run in pieces on a CPU (TrainingStep's piece_rows), and there compiling gains for some
# models only. Measured with inductor on 2 cores, camera 256x256 (65,536 points, pieces of 8,192), ms per step
# eager -> compiled (compile seconds): SIREN 3x256 263 -> 238 (4.9), Fourier-MFN 3x256 321 -> 269 (5.1), iSIREN
# 1L-256D 177 -> 169 (6.2), Fourier-iMFN 1L-256D 176 -> 180 (6.3), Gabor-MFN 3x256 677 -> 713 (7.3), Gabor-iMFN
# 1L-256D 317 -> 417 (4.5). At 512x512 SIREN ran 543 -> 486 ms (131,072 points).
CPU_COMPILE_MIN_POINTS = 65_536
CPU_COMPILE_GAINS = ("siren", "fourier-mfn")  # the models whose CPU steps compiling makes faster by 10% or more


def compile_by_default(device: torch.device, steps: int, points_per_step: int, model: str | None = None) -> bool:
    """Whether a fit compiles its training step when the user has not said: for fits long enough to earn the
    compilation back, on CUDA, and on a CPU when each step is large as well and, for a fit of one ``model``, the
    model is one compiling speeds up there (:data:`CPU_COMPILE_GAINS`; groups, with ``model`` None, run unpieced
    steps and keep the size rule alone)."""
    if steps * points_per_step < COMPILE_MIN_POINT_STEPS:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and points_per_step >= CPU_COMPILE_MIN_POINTS and (model is None
                                                                                  or model in CPU_COMPILE_GAINS)


_COMPILED: dict[tuple[type, str, str], Callable] = {}
# Why compilation failed in this process, by what was compiled (a model class; ("group", model name) for stacked
# groups): later fits of the same go straight to eager mode instead of paying a failing compile again.
_COMPILE_FAILURES: dict[object, str] = {}


def known_compile_failure(key: object) -> str | None:
    """Why compiling ``key`` failed earlier in this process, or None."""
    return _COMPILE_FAILURES.get(key)


def remember_compile_failure(key: object, reason: str) -> None:
    _COMPILE_FAILURES[key] = reason


def compile_backend() -> str:
    return os.environ.get("INR_COMPILE_BACKEND", DEFAULT_COMPILE_BACKEND)


def compile_function(function: Callable) -> Callable:
    """``torch.compile`` with the process's backend (a seam the tests replace to force a failure).

    Donated buffers are switched off for the process: AOTAutograd lets a compiled backward reuse the memory of
    what its forward saved, which holds only if that backward runs once, while the implicit backward takes
    several vector-Jacobian products through the layers' graph (``retain_graph``). Once the layers compile again
    for dynamic shapes (a second input of another shape; a CPU step's pieces of two sizes), that version refused
    the second product ("compiled with non-empty donated buffers") and every later implicit fit in the process
    ran eagerly. The setting is read when a function first compiles."""
    try:
        import torch._functorch.config as functorch_config
    except ImportError:  # a torch without AOTAutograd's settings has no donated buffers either
        functorch_config = None
    if getattr(functorch_config, "donated_buffer", False):
        functorch_config.donated_buffer = False
    return torch.compile(function, backend=compile_backend())


def compiled_method(cls: type, name: str) -> Callable:
    """The compiled form of ``cls.name``, made once per process and shared by every instance."""
    key = (cls, name, compile_backend())
    if key not in _COMPILED:
        _COMPILED[key] = compile_function(getattr(cls, name))
    return _COMPILED[key]


def compiled_pieces(model: nn.Module) -> tuple[str, ...]:
    """The methods of ``model`` a compiled step replaces by their compiled forms."""
    if hasattr(model, "prepare") and hasattr(model, "_layers") and not getattr(model, "one_pass", False):
        return ("prepare", "_layers")
    return ("forward",)


@contextmanager
def _compiled(model: nn.Module, names: tuple[str, ...]):
    """Within the block, ``model.NAME`` calls the compiled method (outside it, evaluations run eagerly)."""
    for name in names:
        object.__setattr__(model, name, functools.partial(compiled_method(type(model), name), model))
    try:
        yield
    finally:
        for name in names:
            object.__delattr__(model, name)


def piece_bounds(rows: int, piece_rows: int | None) -> list[tuple[int, int]]:
    """``(start, stop)`` of the pieces a step of ``rows`` points runs in: pieces of ``piece_rows`` (the last one
    shorter), or one piece when ``piece_rows`` is None or covers them all."""
    if piece_rows is None or piece_rows >= rows:
        return [(0, rows)]
    return [(start, min(rows, start + piece_rows)) for start in range(0, rows, piece_rows)]


class TrainingStep:
    """Forward, loss, backward and optimizer update for one batch, the forward in ``precision``'s autocast (the
    TF32 switch is the caller's, for the whole run: :func:`training.fitting.precision.matmul_precision`).

    ``compile``: compile the network's pieces; the first call then pays the compilation, timed (with a device
    synchronisation) as :attr:`compile_seconds`.

    ``piece_rows``: run forward and backward over the batch in pieces of this many points, accumulating the
    gradients, before the one optimizer update: the same step (the loss is a mean over points, so each piece's
    loss counts by its share of the points; only the order of floating-point sums differs), with activations small
    enough to stay in the CPU's caches and its allocator's recycled memory (see
    :func:`training.fitting.devices.cpu_piece_points`). Every network treats each point on its own; what a step
    shares is held fixed through its pieces: an implicit network's spectral-norm estimates advance once
    (:func:`held_estimates`), and an amortized cache solves a batch with first-seen points, piece by piece, before
    the first piece trains (each piece's solve stops at its own convergence: the states then differ from one solve
    of the whole batch within the solver's tolerance). None = the whole batch at once.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], cache: FixpointCache | None,
                 device: torch.device, compile: bool, precision: str = "fp32", piece_rows: int | None = None):
        self.model, self.optimizer, self.loss_of, self.cache, self.device = model, optimizer, loss_of, cache, device
        self.precision = precision
        self.piece_rows = piece_rows
        self.compile = compile
        self.compile_seconds = 0.0
        self.note: str | None = None
        self._first = True
        known = known_compile_failure(type(model)) if compile else None
        if known:
            self._fall_back(known)

    def _fall_back(self, reason: str) -> None:
        self.compile = False
        self.note = f"torch.compile failed ({reason}); the training step ran eagerly"

    def _run(self, coords: torch.Tensor, target: torch.Tensor, batch: torch.Tensor | None) -> torch.Tensor:
        model = self.model
        pieces = piece_bounds(len(coords), self.piece_rows)
        if len(pieces) == 1:
            with autocast(self.precision, self.device):  # per step: see training.fitting.precision.autocast
                prediction = model(coords) if self.cache is None else self.cache.predict(model, coords, batch)
                loss = self.loss_of(prediction.float(), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            return loss
        self.optimizer.zero_grad(set_to_none=True)
        return backward_in_pieces(model, self.cache, coords, target, batch, pieces, self.loss_of, self.precision,
                                  self.device)

    def __call__(self, coords: torch.Tensor, target: torch.Tensor, batch: torch.Tensor | None) -> torch.Tensor:
        """One step on ``coords``/``target`` (rows ``batch`` of the training set; None = all). Returns the loss."""
        if not self.compile:
            loss = self._run(coords, target, batch)
        elif self._first:
            loss = self._first_compiled(coords, target, batch)
        else:
            loss = self._compiled_or_eager(coords, target, batch)
        self._first = False
        self.optimizer.step()
        return loss.detach()

    def _compiled_or_eager(self, coords, target, batch) -> torch.Tensor:
        """The step with compiled pieces; if that fails (a recompilation can happen at any step), the same step
        eagerly. The weights are not updated before the backward has succeeded, so the retry starts from them. (A
        step in pieces that fails after its first piece has moved that piece's amortized states on by one more f
        evaluation, and its spectral-norm estimates by one more refinement: both only come closer to where they
        tend, so the retry is a valid step, if not bit for bit the one the failure interrupted.)"""
        try:
            with _compiled(self.model, compiled_pieces(self.model)):
                return self._run(coords, target, batch)
        except Exception as error:  # any failure to compile or to run compiled code: eager mode instead
            if out_of_memory(error):
                raise  # the step's size, not the compiler: an eager step needs at least as much memory
            reason = failure_reason(error)
        # Retried after the handler, not in it: there the traceback would hold the failed attempt's frames, and
        # the tensors they hold, through the eager step.
        remember_compile_failure(type(self.model), reason)
        self._fall_back(reason)
        return self._run(coords, target, batch)

    def _first_compiled(self, coords, target, batch) -> torch.Tensor:
        start = time.perf_counter()
        loss = self._compiled_or_eager(coords, target, batch)
        synchronize(self.device)
        self.compile_seconds = time.perf_counter() - start
        return loss


def backward_in_pieces(model, cache: FixpointCache | None, coords: torch.Tensor, target: torch.Tensor,
                       batch: torch.Tensor | None, pieces: list[tuple[int, int]], loss_of, precision: str,
                       device: torch.device) -> torch.Tensor:
    """Forward and backward over the ``pieces`` of a batch, accumulating the gradients (a fit alone's step in
    pieces, and a group's: points run along the second-to-last axis of ``coords`` and ``target``). Each piece's
    loss counts by its share of the points; an amortized cache first solves the batch's first-seen points piece by
    piece, and the spectral-norm estimates advance once and hold through the pieces. Returns the batch's loss
    (``loss_of``'s shape: a scalar, or one per signal of a group)."""
    rows = coords.shape[-2]
    if cache is not None:
        cache.ensure_solved(model, coords, batch, pieces)
    total = None
    with held_estimates(model):
        for start, stop in pieces:
            piece = coords[..., start:stop, :]
            with autocast(precision, device):
                prediction = model(piece) if cache is None else cache.predict_piece(model, piece, batch, start, stop)
                share = loss_of(prediction.float(), target[..., start:stop, :]) * ((stop - start) / rows)
            share.sum().backward()
            total = share.detach() if total is None else total + share.detach()
    return total


def held_estimates(model: nn.Module):
    """A block in which ``model``'s spectral-norm estimates advance once and hold (an implicit network's
    ``one_estimate_per_step``), so a step in pieces normalises as a whole step does; nothing for other networks."""
    hold = getattr(model, "one_estimate_per_step", None)
    return hold() if hold is not None else nullcontext()


def failure_reason(error: BaseException) -> str:
    """Why compiling failed, in the words a fallback note gives: the error's type and first line."""
    return f"{type(error).__name__}: {first_line(error)}"


def first_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else ""
