"""Ctrl-C and SIGTERM end a run cleanly: the fit in progress saves its state, and the run stops with one line.

Inside :class:`StopRequest` the first SIGINT or SIGTERM only sets a flag, which the fit loop polls once per step
(:class:`training.fitting.control.FitControl`); the fit then saves its whole state and stops, and the command
prints ``inr: interrupted at step N of INPUT; resume with --resume`` and exits with 130 (SIGINT) or 143 (SIGTERM), the
codes a shell gives a process killed by those signals. A second signal is not intercepted: it stops the process
at once, as the user then means.
"""

from __future__ import annotations

import signal
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequest:
    def __init__(self):
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set from there
            for number in EXIT_CODES:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> bool:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
        return False

    def _handle(self, number: int, frame) -> None:
        self.signal_number = number
        for each, handler in self._previous.items():
            signal.signal(each, handler)  # a second signal acts as it would without us

    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal_number, 130)


class CtrlC(BaseException):
    """Ctrl-C outside a :class:`StopRequest`. Raised instead of KeyboardInterrupt, which Typer turns into a
    silent exit 130 before `inr` could print its one line (``inr: interrupted``)."""


def _raise_ctrl_c(number: int, frame) -> None:
    raise CtrlC()


class CtrlCReported:
    """While entered (in the main thread, where Python's own SIGINT handler is in place), Ctrl-C raises
    :class:`CtrlC`, for the entry point to report; the handler before is put back on leaving."""

    def __enter__(self) -> CtrlCReported:
        self._previous = None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, _raise_ctrl_c)
        return self

    def __exit__(self, *exc_info) -> bool:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
