"""How the command line phrases errors raised below it: a setting's name becomes the flag that sets it.

Layers below the CLI raise :class:`inr_core.errors.InvalidSetting` naming a config field (``steps``,
``solver.max_iter``); here it becomes ``--steps must be at least 1, got 0``. A command whose flag is not simply
the field's last name with dashes passes its own ``flags`` mapping.

In a torchrun run every rank meets a usage error or a refusal the whole run shares; rank 0 says it, once
(:func:`let_rank_zero_speak`).

An allocation that fails (a network or a step too large for the memory there is; recognised by
:func:`inr_core.errors.out_of_memory`) becomes one line too, saying what to lower.
"""

from __future__ import annotations

import os
import re
import sys
import time

from inr_core.errors import InvalidSetting, UserError

# The size asked for: in bytes (torch's CPU allocator) or already in units (CUDA, MPS, numpy).
_ASKED_FOR = re.compile(r"allocate (?:(\d+) bytes|([\d.]+ [KMGTPE]i?B))", re.IGNORECASE)


def flag_for(setting: str, flags: dict[str, str] | None = None) -> str:
    """``solver.max_iter`` -> ``--max-iter`` unless ``flags`` names it otherwise; a flag stays as it is."""
    if setting.startswith("--"):
        return setting
    if flags and setting in flags:
        return flags[setting]
    return "--" + setting.rsplit(".", 1)[-1].replace("_", "-")


def given_options(context, options: dict[str, str]) -> dict[str, str]:
    """Of ``options`` (config field: the command's parameter name), those given on the command line rather than
    left at their defaults, as field: flag (``--train-batch-size``). ``context`` is the command's Click context."""
    given = {}
    for setting, parameter in options.items():
        source = context.get_parameter_source(parameter)
        # By name: Typer carries its own copy of Click, whose ParameterSource is not click's.
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            option = next(p for p in context.command.params if p.name == parameter)
            given[setting] = max(option.opts, key=len)
    return given


def phrase(error: UserError, flags: dict[str, str] | None = None) -> str:
    """The one-line message for a user error, settings phrased as flags."""
    if isinstance(error, InvalidSetting):
        return f"{flag_for(error.setting, flags)} {error.problem}"
    return str(error)


def as_flag_error(error: InvalidSetting, flags: dict[str, str] | None = None) -> UserError:
    """The same error with its message phrased for the command line (for code that re-raises)."""
    return UserError(phrase(error, flags))


def out_of_memory_message(error: BaseException, remedy: str) -> str:
    """One line for an allocation failure: how much was asked for, where the message says, and ``remedy``."""
    asked = _ASKED_FOR.search(str(error))
    if asked is None:
        amount = ""
    elif asked.group(1):
        amount = f" (asked for {int(asked.group(1)) / 2**30:,.1f} GiB at once)"
    else:
        amount = f" (asked for {asked.group(2)} at once)"
    return f"out of memory{amount}: {remedy}"


def another_rank() -> bool:
    """Whether this process is a torchrun rank other than 0. A usage error or a setting no run can use is found
    alike by every rank, before they connect: rank 0 says it, once."""
    return os.environ.get("RANK", "0") != "0"


# How long a silent rank waits for rank 0 to say an error they share before it exits anyway.
RANK_ZERO_SPEAKS_SECONDS = 30.0


def print_notes(error: BaseException) -> None:
    """What a failed or interrupted command kept for the user to go on from (a training run's last saved epoch, a
    shape fit's checkpoint), a line each under its error line: the notes (``add_note``) on ``error``."""
    for note in getattr(error, "__notes__", ()):
        print(f"inr: {note}", file=sys.stderr)


class LeftToRankZero(SystemExit):
    """Raised by a rank other than 0 that met, in a collective, an error rank 0 reports for all (``code``: the exit
    code). It unwinds as rank 0's error does, through leaving the process group together, and only then does the
    entry point hold the rank (:func:`let_rank_zero_speak`): held before, it kept rank 0 waiting at that leave."""


def let_rank_zero_speak() -> None:
    """Hold a rank other than 0 that leaves a shared error for rank 0 to print. torchrun stops every worker (SIGTERM)
    as soon as one exits with an error: a silent rank that exited first could stop rank 0 before its line was
    written (seen in CI: the usage error printed no times). Rank 0, failing the same way, exits first, and torchrun
    then stops this rank in its wait, which costs nothing; the bound only matters if rank 0 did not fail."""
    if another_rank():
        time.sleep(RANK_ZERO_SPEAKS_SECONDS)
