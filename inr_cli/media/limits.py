"""What the readers share: size limits checked before decoding, START:STOP spans, and library warnings kept off
the terminal.

A file's header can claim far more data than memory holds (a 400 KB PNG of 12000x12000 pixels, a WAV header of
hours), so each reader compares the size its file claims with a limit the user can raise, and says which option
raises it. Decoders speak through Python warnings and loggers; what they say while a file is read becomes a note in
the run's report instead of raw text on stderr.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

from inr_cli.files import first_line
from inr_core.errors import InvalidSetting, UserError

Number = TypeVar("Number", int, float)


def split_span(text: str, setting: str, number: Callable[[str], Number], usage: str
               ) -> tuple[Number | None, Number | None]:
    """'START:STOP' -> (start, stop), None for an end left out; anything else is an :class:`InvalidSetting` of
    ``setting`` that shows ``usage`` (``"START:STOP, e.g. 0:60 or 30:"``). The caller checks the values."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = (number(part) if part.strip() else None for part in parts)
    except ValueError:
        raise InvalidSetting(setting, f"must be {usage}; got {text!r}") from None
    return start, stop


# Loggers of the decoding libraries that report through ``logging`` rather than ``warnings``.
LIBRARY_LOGGERS = ("PIL", "tifffile", "imageio", "libav", "trimesh", "soundfile")


def refuse_if_over(source: str, amount: float, limit: float, option: str, what: str, advice: str) -> None:
    """A one-line error when ``amount`` exceeds ``limit``: ``what`` describes the amount (``12000x12000 = ...
    pixels``), ``option`` is the flag that sets the limit, ``advice`` what else the user can do."""
    if amount > limit:
        shown = f"{limit:,}" if isinstance(limit, int) else f"{limit:g}"
        raise UserError(f"{source}: {what} exceeds {option} {shown}; raise it if memory allows, or {advice}")


class _NoteHandler(logging.Handler):
    def __init__(self, notes: list[str]):
        super().__init__(logging.WARNING)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        _add_note(self.notes, record.getMessage())


def _add_note(notes: list[str], message: str) -> None:
    text = f"reader warning: {first_line(Exception(message))}"
    if text not in notes:
        notes.append(text)


@contextmanager
def library_warnings_as_notes(notes: list[str]):
    """Within the block, warnings and logged warnings from decoders are appended to ``notes`` (once each) rather
    than printed. Readers run on the main thread, so swapping the warning filters here races with nothing."""
    handler = _NoteHandler(notes)
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    propagating = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False  # so Python's last-resort handler does not print it as well
    try:
        with warnings.catch_warnings(record=True) as caught:  # the filters in force still apply (deprecations stay out)
            yield
        for warning in caught:
            _add_note(notes, str(warning.message))
    finally:
        for logger, propagate in zip(loggers, propagating):
            logger.removeHandler(handler)
            logger.propagate = propagate
