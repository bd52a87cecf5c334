"""The `inr` command line: assembles the commands (one module each under inr_cli/commands) and runs them.

A command's module is imported only when that command runs (or shows its own help): the modules bring in
torch, which takes 1-2 s to import, and `inr --help` or a mistyped command should answer at once. The table
below names each command's module and the line `inr --help` shows for it.
"""

from __future__ import annotations

import importlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
import typer.core

from inr_cli.errors import (LeftToRankZero, another_rank, let_rank_zero_speak, out_of_memory_message, phrase,
                            print_notes)
from inr_cli.interrupts import CtrlC, CtrlCReported
from inr_core.errors import InvalidSetting, RefusedOnEveryRank, UserError, out_of_memory
from inr_core.host_memory import keep_freed_host_memory, relaunch_with_huge_pages

# Typer's usage-error class lives in click (older Typer) or in Typer's own copy of click (0.29+): find it from
# the public BadParameter so the entry point works with either.
UsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")
USAGE_EXIT_CODE = 2  # a setting no run can use is a usage error, like an unknown flag
BROKEN_PIPE_EXIT_CODE = 141  # what a shell reports for a writer stopped by SIGPIPE (128 + 13), as `head` leaves it

TOP_EXAMPLES = """
[bold]Examples[/bold]

  inr fit image --resize 128 --steps 300     [dim]# bundled camera photo[/dim]
  inr fit image photo.png --model gabor-mfn --hidden 512
  inr sample runs/photo/checkpoint.pt --scale 2
  inr jiio-invert --task inpaint --data train-images-idx3-ubyte.gz --epochs 20
  inr sample runs/jiio/decoder.pt -n 64      [dim]# draws from a JIIO decoder[/dim]
  inr jiio-robust --data train-images-idx3-ubyte.gz --adversary jiio
"""

@dataclass(frozen=True)
class CommandEntry:
    module: str  # under inr_cli.commands
    attribute: str  # a Typer app (a command group), or a command function
    summary: str  # its line in `inr --help`
    epilog: str | None = None  # a command function's examples: the name of a string in the same module
    memory_hint: str = "lower the sizes asked for"  # why a run of it ran out of memory, and what to lower


COMMANDS = {
    "fit": CommandEntry("fit", "fit_app", "Fit a network to an image, a sound, a video or a 3D shape.",
                        memory_hint="the network or its training step does not fit; lower --hidden, --layers "
                                    "or --batch-size"),
    "compare": CommandEntry("compare", "compare_app", "Run the papers' model-size grid, implicit beside explicit.",
                            memory_hint="a network of --sizes or its training step does not fit; use fewer "
                                        "layers or narrower ones"),
    "sample": CommandEntry("sample", "sample", "Re-render a fitted network at any resolution, or draw images "
                           "from a JIIO-trained decoder.", "SAMPLE_EXAMPLES",
                           memory_hint="the output does not fit; lower --scale, --width, --height, --resolution "
                                       "or -n"),
    "jiio-invert": CommandEntry("jiio_invert", "jiio_invert", "Inpaint, denoise or reconstruct images with JIIO on an "
                                "MDEQ decoder (training one first with --data).", "JIIO_EXAMPLES",
                                memory_hint="a batch does not fit; lower --batch-size or --train-batch-size"),
    "jiio-robust": CommandEntry("jiio_robust", "jiio_robust", "Train an MDEQ classifier against JIIO or PGD attacks, "
                                "and measure it under both.", "ROBUST_EXAMPLES",
                                memory_hint="a batch does not fit; lower --batch-size or --eval-batch-size"),
}


def load_command(name: str) -> typer.core.click.Command:
    """The command ``name`` of :data:`COMMANDS`, its module imported now."""
    entry = COMMANDS[name]
    module = importlib.import_module(f"inr_cli.commands.{entry.module}")
    target = getattr(module, entry.attribute)
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich")
        single.command(name, epilog=getattr(module, entry.epilog) if entry.epilog else None)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyCommands(typer.core.TyperGroup):
    """The top-level group: lists :data:`COMMANDS` from the table and loads a command only when it is run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, entry in COMMANDS.items():  # placeholders: enough for listing, typo suggestions and help
            self.add_command(typer.core.TyperCommand(name, help=entry.summary, short_help=entry.summary))

    def resolve_command(self, ctx, args):
        name, placeholder, rest = super().resolve_command(ctx, args)
        return name, (load_command(name) if placeholder is not None else None), rest


app = typer.Typer(
    name="inr",
    cls=LazyCommands,
    epilog=TOP_EXAMPLES,
    help="Fit implicit neural representations (SIREN, MFN and their implicit-layer versions) to images, audio, "
         "video and 3D shapes; solve inverse problems with JIIO on an MDEQ decoder.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def version_text() -> str:
    """``inr X (torch Y, Python Z)``, from the installed packages' metadata: no import of torch, so it answers at
    once; the versions a bug report needs."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"inr {installed('inr')} (torch {installed('torch')}, Python {python})"


def _print_version(asked: bool) -> None:
    if asked:
        print(version_text())
        raise typer.Exit()


@app.callback()
def _top_level(show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                                 help="Show the versions of inr, torch and Python, and exit.")
               ) -> None:
    """The group's own callback (Typer makes a group, not a single command, of an app that has one): --version."""


def escape_unencodable_output() -> None:
    """Print what stdout's encoding cannot hold as escapes, as Python does on stderr: a file name's bytes that are
    not UTF-8 (surrogates to Python) would otherwise fail a finished run at its summary line in a locale whose
    stdout is strict. A locale that already writes them back as the bytes they were is left as it is."""
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors == "strict":
        sys.stdout.reconfigure(errors="backslashreplace")


def stdout_was_closed() -> bool:
    """Whether the command stopped because its reader closed stdout (``inr ... --json | head -1``). Click answers
    a broken pipe by wrapping stdout and stderr so that nothing more fails while Python exits, then exits 1, the
    code of a failed run; the wrapper tells the two apart. (By name: Typer ships its own copy of click.)"""
    return type(sys.stdout).__name__ == "PacifyFlushWrapper"


def started_as_inr(program: str) -> bool:
    """Whether ``program`` (``sys.argv[0]``) is the `inr` command or ``python -m inr_cli``: only then is this
    process's whole command line ours to start again (not a script or a test that calls :func:`main`)."""
    path = Path(program)
    return path.stem == "inr" or (path.name == "__main__.py" and path.parent.name == "inr_cli")


def does_work(args: list[str]) -> bool:
    """Whether a command line runs a command rather than asking for help (``--help``: the commands have no
    ``-h``) or the version."""
    return bool(args) and "--help" not in args and args != ["--version"]


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit code, never a traceback."""
    if argv is None and started_as_inr(sys.argv[0]) and does_work(sys.argv[1:]):
        relaunch_with_huge_pages()  # large CPU steps fault their fresh memory in 2 MiB at a time (host_memory)
    command = typer.main.get_command(app)
    escape_unencodable_output()
    keep_freed_host_memory()  # CPU steps reuse their memory instead of faulting it in afresh (measured: 20% faster)
    args = sys.argv[1:] if argv is None else argv
    try:
        with CtrlCReported():
            code = command.main(args=args, prog_name="inr", standalone_mode=False)
    except UsageError as error:
        # A group run without a command has printed its help already (click's NoArgsIsHelpError, which has no
        # message): exit as a usage error, without an empty error line under the help.
        if error.format_message() and not another_rank():
            where = error.ctx.command_path if error.ctx is not None else "inr"
            print(f"{where}: error: {error.format_message()}", file=sys.stderr)
        if error.format_message():
            let_rank_zero_speak()
        sys.exit(error.exit_code)
    except UserError as error:
        if not (isinstance(error, (InvalidSetting, RefusedOnEveryRank)) and another_rank()):
            print(f"inr: error: {phrase(error)}", file=sys.stderr)
            print_notes(error)
        else:
            let_rank_zero_speak()
        sys.exit(USAGE_EXIT_CODE if isinstance(error, InvalidSetting) else 1)
    except (typer.Abort, KeyboardInterrupt, CtrlC) as interrupt:
        print("inr: interrupted", file=sys.stderr)
        print_notes(interrupt)
        sys.exit(130)
    except LeftToRankZero as left:
        let_rank_zero_speak()
        sys.exit(left.code)
    except SystemExit as stopped:
        if stopped.code == 1 and stdout_was_closed():
            sys.exit(BROKEN_PIPE_EXIT_CODE)
        raise
    except BrokenPipeError:
        sys.exit(BROKEN_PIPE_EXIT_CODE)
    except (MemoryError, RuntimeError) as error:  # torch's allocation failures are RuntimeErrors
        if not out_of_memory(error):
            raise
        entry = COMMANDS.get(args[0]) if args else None  # the group takes no options: the first names the command
        hint = entry.memory_hint if entry else CommandEntry.memory_hint
        print(f"inr: error: {out_of_memory_message(error, hint)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
