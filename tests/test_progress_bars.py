"""The fit's progress bar: steps along the run, then how far the renders after the last step have come."""

from __future__ import annotations

import torch
from rich.progress import Progress

from inr_cli.progress import fit_progress
from models import build_model
from training.fitting.fit import FitProgress
from training.fitting.render import render_grid


def test_after_the_last_step_the_bar_shows_the_evaluation_rows_then_the_speed_again(monkeypatch):
    tails = []
    real_update = Progress.update

    def recorded(self, task, **fields):
        if "tail" in fields:
            tails.append(fields["tail"])
        return real_update(self, task, **fields)

    monkeypatch.setattr(Progress, "update", recorded)
    model = build_model("siren", 2, 1, hidden=8, layers=1, frequency=8.0)

    def render() -> None:  # 4 bands of 2 rows
        render_grid(model, (8, 5), 1, torch.device("cpu"), chunk_points=10)

    with fit_progress("photo", total_steps=2) as update:
        update(FitProgress(1, 2, 0.1, 10.0, 0.5))
        render()  # a progress measurement along the run: the bar keeps its speed
        update(FitProgress(2, 2, 0.05, 13.0, 1.0))
        render()  # the final evaluation
    assert tails == ["    2.0 steps/s", "    2.0 steps/s", "evaluating 2/8", "evaluating 4/8", "evaluating 6/8",
                     "    2.0 steps/s"]
    render()  # outside the bar: nobody hears
    assert len(tails) == 6


def test_a_spinner_says_an_input_is_read_and_its_outputs_written_unless_quiet(tmp_path, monkeypatch, camera_u8):
    """After a fit's bar had finished, its outputs (a shape's extraction and preview, a long video's encoding)
    took a minute or more with nothing on screen; before it started, reading an hour of audio took seconds."""
    from contextlib import contextmanager

    import inr_cli.fitting as fitting
    from helpers import run_here, save_png

    shown = []

    @contextmanager
    def recorded(text, enabled=True):
        shown.append((text, enabled))
        yield

    save_png(tmp_path / "tile.png", camera_u8[:16, :16])
    args = ["fit", "image", "tile.png", "--steps", "2", "--hidden", "8", "--layers", "1", "--device", "cpu"]
    real = run_here([*args, "--out", "real"], tmp_path)
    assert real.returncode == 0 and "writing" not in real.stderr  # not a terminal here: the spinner draws nothing
    monkeypatch.setattr(fitting, "status_line", recorded)
    loud = run_here([*args, "--out", "loud"], tmp_path)
    quiet = run_here([*args, "--out", "quiet", "--quiet"], tmp_path)
    assert loud.returncode == 0 and quiet.returncode == 0, loud.stderr + quiet.stderr
    assert shown == [("reading tile.png", True), ("writing the outputs of tile.png", True),
                     ("reading tile.png", False), ("writing the outputs of tile.png", False)]


def test_labels_are_shown_as_they_are_not_read_as_markup(monkeypatch):
    """A file named photo[red].png was shown as "photo" (in red) on its bar: rich read the brackets as markup."""
    import io

    from rich.console import Console

    import inr_cli.progress as progress

    screen = io.StringIO()
    monkeypatch.setattr(progress, "stderr_console", Console(file=screen, force_terminal=True, width=150))
    with progress.fit_progress("photo[red]", total_steps=1) as update:
        update(FitProgress(1, 1, 0.1, 10.0, 0.5))
    with progress.counter_progress("draws[bold]", 1, detail="[i]") as update:
        update(1)
    with progress.status_line("reading photo[red].png"):
        pass
    shown = screen.getvalue()
    assert "photo[red]" in shown and "draws[bold]" in shown and "[i]" in shown and "reading photo[red].png" in shown
