"""Ctrl-C and SIGTERM end a run cleanly: the fit in progress saves its state, and the run stops with one line.

Inside :class:`StopRequest` a SIGINT or SIGTERM that arrives while training code runs (the ``training`` package,
whose loops poll the request once per step or batch, and the callbacks they call: progress, saves) only sets a
flag (:class:`training.fitting.control.FitControl`); the fit then saves its whole state and stops, and the command
prints ``inr: interrupted at step N of INPUT; resume with --resume`` and exits with 130 (SIGINT) or 143 (SIGTERM), the
codes a shell gives a process killed by those signals. A signal that arrives anywhere else (reading an input, which
may block for good on a FIFO; writing outputs) stops the process at once, with ``inr: interrupted`` and the same
codes: no loop would see the flag there. Nor is a flag that no loop saw before the work ended swallowed: leaving the
:class:`StopRequest` ends the process the same way. A second signal is not intercepted: it stops the process at
once, as the user then means.
"""

from __future__ import annotations

import signal
import sys
import threading

from inr_cli.errors import print_notes

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
# Modules whose code polls the request at its step boundaries (or runs below code that does).
POLLING_PACKAGES = ("training.",)


class _StopNow(BaseException):
    """A signal that arrived outside training code: unwinds to :meth:`StopRequest.__exit__` (a BaseException, so
    that no ``except Exception`` on the way takes it for a failure)."""


def _in_polling_code(frame) -> bool:
    """Whether the main thread, at ``frame``, runs training code or code it called (see the module's doc)."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(POLLING_PACKAGES):
            return True
        frame = frame.f_back
    return False


class StopRequest:
    def __init__(self):
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}
        self._seen = False  # a poll has answered "stop": the loop that polled stops and says so

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set from there
            for number in EXIT_CODES:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        self._restore()
        stopped_now = exc_type is not None and issubclass(exc_type, _StopNow)
        swallowed = exc_type is None and self.signal_number is not None and not self._seen  # no loop saw it
        if stopped_now or swallowed:
            print("inr: interrupted", file=sys.stderr, flush=True)
            if exc is not None:
                print_notes(exc)  # what the interrupted work kept (a shape fit's checkpoint)
            raise SystemExit(self.exit_code) from None
        return False

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame) -> None:
        self.signal_number = number
        self._restore()  # a second signal acts as it would without us
        if not _in_polling_code(frame):
            raise _StopNow()

    def requested(self) -> bool:
        if self.signal_number is None:
            return False
        self._seen = True
        return True

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
