"""Argument checks shared by the benchmark scripts: a bad option is one line on stderr and exit status 2
(argparse's ``parser.error``), before any work starts, instead of a traceback after it or a table whose labels
name something that did not run."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable


def one_of(parser: argparse.ArgumentParser, option: str, value: str, allowed: Iterable[str],
           what: str = "name") -> str:
    """``value`` if it is one of ``allowed``; otherwise ``parser.error``."""
    allowed = list(allowed)
    if value not in allowed:
        parser.error(f"{option}: unknown {what} {value!r}; choose from {', '.join(allowed)}")
    return value


def name_list(parser: argparse.ArgumentParser, option: str, text: str, allowed: Iterable[str],
              what: str = "name") -> list[str]:
    """The comma-separated entries of ``text``, each one of ``allowed``; otherwise ``parser.error``."""
    allowed = list(allowed)
    return [one_of(parser, option, entry.strip(), allowed, what) for entry in text.split(",")]


def number_list(parser: argparse.ArgumentParser, option: str, text: str, kind: Callable = int,
                minimum: float | None = None) -> list:
    """The comma-separated numbers of ``text``, each at least ``minimum``; otherwise ``parser.error``."""
    numbers = []
    for entry in (entry.strip() for entry in text.split(",")):
        try:
            number = kind(entry)
        except ValueError:
            parser.error(f"{option}: {entry!r} is not {'an integer' if kind is int else 'a number'}")
        if minimum is not None and not number >= minimum:
            parser.error(f"{option}: each entry must be at least {minimum:g}; got {entry}")
        numbers.append(number)
    return numbers


def at_least(parser: argparse.ArgumentParser, option: str, value, minimum):
    """``value`` if it is at least ``minimum`` (None passes: an option left out); otherwise ``parser.error``."""
    if value is not None and not value >= minimum:
        parser.error(f"{option} must be at least {minimum:g}; got {value:g}")
    return value


def checkpoints(steps: int) -> list[int]:
    """The steps a benchmark evaluates at: half and all of ``steps``, never step 0 (--steps 1 evaluates at 1)."""
    return sorted({max(1, steps // 2), steps})
