"""A rich progress bar on stderr, fed by the fit loop's progress callback."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from training.fitting.fit import FitProgress
from training.fitting.render import reporting_render_progress

stderr_console = Console(stderr=True, emoji=False, highlight=False)
# Labels are file names and such, shown as they are: escaped, since rich would read "photo[red].png" as markup
# (and show "photo.png" in red).


@contextmanager
def fit_progress(label: str, total_steps: int, enabled: bool = True):
    """Yield a callback for :func:`training.fitting.fit.fit` that draws step, loss, PSNR, steps/s and ETA."""
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3e}  PSNR {task.fields[psnr]:6.2f} dB  {task.fields[tail]}"),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=False,
    )
    trained, speed = False, ""

    def update(state: FitProgress) -> None:
        nonlocal trained, speed
        trained = state.step >= state.steps
        speed = f"{state.step / state.seconds if state.seconds > 0 else 0.0:7.1f} steps/s"
        progress.update(task, completed=state.step, loss=state.loss, psnr=state.psnr, tail=speed)

    def evaluating(done: int, total: int) -> None:
        # The renders after the last step (the final evaluation, its fp16-weights twin, a shape's extraction)
        # take minutes for a large signal on a CPU: the bar says how far they have come, where the speed was.
        # (Along the run, progress measurements are quick, and the steps move on.)
        if trained:
            progress.update(task, tail=f"evaluating {done}/{total}" if done < total else speed)

    with progress, reporting_render_progress(evaluating):
        task = progress.add_task(escape(label), total=total_steps, loss=float("nan"), psnr=0.0,
                                 tail=f"{0.0:7.1f} steps/s")
        yield update


@contextmanager
def counter_progress(label: str, total: int, enabled: bool = True, detail: str = ""):
    """A plain progress bar on stderr: yields ``update(completed, text=None, total=None)`` (or None when
    disabled); ``total`` changes the bar's length when the amount of work becomes known only along the way."""
    if not enabled:
        yield None
        return
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[text]}"), TimeRemainingColumn(), console=stderr_console,
                        transient=False)
    with progress:
        task = progress.add_task(escape(label), total=total, text=escape(detail))

        def update(completed: int, text: str | None = None, total: int | None = None) -> None:
            progress.update(task, completed=completed, **({} if text is None else {"text": text}),
                            **({} if total is None else {"total": total}))

        yield update


@contextmanager
def status_line(text: str, enabled: bool = True):
    """A spinner with ``text`` on stderr while a step with no count of its own runs (a run's outputs being made and
    written after its bar has finished: a shape's surface extraction and preview, a long video's encoding). Gone
    when the step ends; nothing at all where stderr is not a terminal."""
    if not enabled:
        yield
        return
    with stderr_console.status(escape(text), spinner="dots"):
        yield
