"""The top-level `inr` group: every command listed, loaded only when run, help with examples on each, and typos
answered with a suggestion, all without importing torch until a command needs it."""

import subprocess
import sys

import pytest
from helpers import cli_env

from inr_cli.app import COMMANDS, main


def _help_without_torch(argv: list[str], ask: str = "--help") -> str:
    """The help ``inr ARGV --help`` (or what ``ask`` shows) prints, asserting it exits 0 without importing torch."""
    probe = (f"import sys\nfrom inr_cli.app import main\ntry:\n    main({[*argv, ask]!r})\n"
             "except SystemExit as done:\n    print('exit', done.code)\n"
             "print('torch imported:', 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # the panel wraps long lines
    assert "exit 0" in text and "torch imported: False" in text, (argv, text[-300:])
    return text


def test_top_level_help_lists_every_command_without_importing_torch():
    text = _help_without_torch([])
    for name, entry in COMMANDS.items():
        assert f"{name} {' '.join(entry.summary.split()[:4])}" in text.replace("│", " ").replace("  ", " ")


def test_version_names_inr_torch_and_python_without_importing_torch():
    from importlib.metadata import version

    text = _help_without_torch([], ask="--version")
    python = ".".join(str(part) for part in sys.version_info[:3])
    assert text.startswith(f"inr {version('inr')} (torch {version('torch')}, Python {python})"), text


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_loads_and_shows_its_own_help_with_examples(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # wide enough that no example line is wrapped
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert f"Usage: inr {name}" in out and "Example" in out
    for line in out[out.index("Example"):].splitlines():
        command = line.split(" # ")[0].strip()  # without an inline comment, which may be aligned with spaces
        # An example broken over lines keeps its breaks: a lost continuation would join them around the indent.
        assert not command.startswith("inr ") or "   " not in command, line


def test_a_mistyped_command_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as done:
        main(["fitt", "image"])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip() == "inr: error: No such command 'fitt'. Did you mean 'fit'?"


@pytest.mark.parametrize("argv", [[], ["fit"], ["compare"]])
def test_a_group_without_its_command_shows_help_and_no_empty_error(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2  # a usage error, as click has it
    captured = capsys.readouterr()
    assert "Usage: inr" in captured.out and "error" not in captured.err


@pytest.mark.parametrize("argv, shown", [
    (["fit", "image"], "gabor-imfn"), (["fit", "audio"], "gabor-imfn"), (["fit", "video"], "gabor-imfn"),
    (["fit", "sdf"], "gabor-imfn"), (["compare", "image"], "gabor-imfn"), (["sample"], "--individual"),
    (["jiio-invert"], "--mask"), (["jiio-robust"], "--adversary")])
def test_command_help_comes_without_importing_torch(argv, shown):
    # Options and defaults live in torch-free config modules; the machinery of a run loads when it runs.
    text = _help_without_torch(argv)
    assert f"Usage: inr {' '.join(argv)}" in text and shown in text


def test_the_fit_commands_are_listed_with_their_summaries_as_running_sentences(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # each summary fits on one line unless a break was kept from its docstring
    with pytest.raises(SystemExit) as done:
        main(["fit", "--help"])
    assert done.value.code == 0
    listed = {line.split("│")[1].split()[0]: line for line in capsys.readouterr().out.splitlines()
              if line.startswith("│ ") and line.split("│")[1].split()}
    assert {"image", "audio", "video", "sdf"} <= set(listed)
    assert "a waveform and spectrogram comparison, a PSNR plot" in listed["audio"]


def test_an_image_fit_needs_none_of_the_other_media_libraries(tmp_path):
    """The GPU image this project is measured on lacks pypng, PyAV, soundfile, trimesh and libigl: an image fit
    (8-bit, as every GPU check fits) imports none of them, so nothing needs carrying there."""
    probe = ("import sys\n"
             "for name in ('png', 'av', 'soundfile', 'trimesh', 'igl'):\n"
             "    sys.modules[name] = None  # importing it fails\n"
             "from inr_cli.app import main\n"
             "try:\n"
             "    main(['fit', 'image', '--resize', '32', '--steps', '2', '--hidden', '8', '--layers', '1',\n"
             "          '--device', 'cpu', '--quiet', '--out', 'run'])\n"
             "except SystemExit as done:\n"
             "    print('exit', done.code)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=cli_env(),
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and "exit" not in proc.stdout.replace("exit 0", ""), proc.stdout + proc.stderr
    assert (tmp_path / "run" / "report.json").is_file()
