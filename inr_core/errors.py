"""The error types for problems the user can fix (bad input, bad settings, a missing device).

Code below the command line raises them with messages that name the problem in the terms of the library (a
setting's name, a file, a shape); the command line turns them into one line on stderr and a non-zero exit code,
and phrases settings as the flags that set them (see ``inr_cli.errors``).
"""

from __future__ import annotations

import math
import sys
from typing import Callable


class UserError(Exception):
    """Raised with a message that says what went wrong and what to do; the CLI prints it as one line."""


class InvalidSetting(UserError, ValueError):
    """A configuration value no run can use. ``setting`` is the field's name (``steps``, ``solver.tol``),
    ``problem`` what is wrong with it (``must be at least 1, got 0``)."""

    def __init__(self, setting: str, problem: str):
        super().__init__(f"{setting} {problem}")
        self.setting, self.problem = setting, problem


class RefusedOnEveryRank(UserError):
    """A refusal of the whole run that every rank of a torchrun launch meets alike, before they connect (a resume
    of another run's shape, say): the command line prints it once, from rank 0."""


def check(ok: bool, setting: str, problem: str) -> None:
    """Raise :class:`InvalidSetting` unless ``ok``."""
    if not ok:
        raise InvalidSetting(setting, problem)


def positive(value: float) -> bool:
    """A usable positive number: above zero and finite (not inf or nan)."""
    return value > 0 and math.isfinite(value)


def check_positive(value: float | None, setting: str, *, optional: bool = False) -> None:
    """Raise :class:`InvalidSetting` unless ``value`` is above zero and finite (or None, when ``optional``):
    one wording for every such setting, which also tells a user who typed ``inf`` or ``nan`` what is wrong."""
    check((optional and value is None) or (value is not None and positive(value)), setting,
          f"must be a positive, finite number, got {value}")


def within(prefix: str, validate: Callable[[], None]) -> None:
    """Run a nested part's ``validate``, naming the field it rejects from the enclosing config
    (``tol`` -> ``solver.tol``)."""
    try:
        validate()
    except InvalidSetting as error:
        raise InvalidSetting(f"{prefix}.{error.setting}", error.problem) from None


# How allocators say they failed, where they raise a plain RuntimeError: torch's CPU allocator ("can't allocate
# memory"), CUDA calls outside the caching allocator ("out of memory"), cuBLAS.
ALLOCATION_FAILURES = ("can't allocate memory", "out of memory", "CUBLAS_STATUS_ALLOC_FAILED")


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says an allocation failed. torch is consulted only when it is loaded already: what
    imports this module (the command line, its --help included) must not import it."""
    torch = sys.modules.get("torch")
    if isinstance(error, MemoryError) or (torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error) for text in ALLOCATION_FAILURES)
