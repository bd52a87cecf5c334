"""How the command line phrases errors raised below it: a setting's name becomes the flag that sets it.

Layers below the CLI raise :class:`inr_core.errors.InvalidSetting` naming a config field (``steps``,
``solver.max_iter``); here it becomes ``--steps must be at least 1, got 0``. A command whose flag is not simply
the field's last name with dashes passes its own ``flags`` mapping.
"""

from __future__ import annotations

from inr_core.errors import InvalidSetting, UserError


def flag_for(setting: str, flags: dict[str, str] | None = None) -> str:
    """``solver.max_iter`` -> ``--max-iter`` unless ``flags`` names it otherwise; a flag stays as it is."""
    if setting.startswith("--"):
        return setting
    if flags and setting in flags:
        return flags[setting]
    return "--" + setting.rsplit(".", 1)[-1].replace("_", "-")


def phrase(error: UserError, flags: dict[str, str] | None = None) -> str:
    """The one-line message for a user error, settings phrased as flags."""
    if isinstance(error, InvalidSetting):
        return f"{flag_for(error.setting, flags)} {error.problem}"
    return str(error)


def as_flag_error(error: InvalidSetting, flags: dict[str, str] | None = None) -> UserError:
    """The same error with its message phrased for the command line (for code that re-raises)."""
    return UserError(phrase(error, flags))
