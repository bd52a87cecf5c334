"""`inr compare image`: the model x size grid, implicit beside explicit, written as Markdown and JSON."""

import json

import pytest
import torch

from helpers import run_cli, run_here
from inr_cli.compare import _fmt, _mean_std, parse_models, parse_sizes, variants
from inr_core.errors import UserError


def test_sizes_parse_as_the_papers_name_them():
    assert parse_sizes("1L256D, 4l512d") == [(1, 256), (4, 512)]
    assert parse_sizes("4L64D,1L64D,4l64d") == [(4, 64), (1, 64)]  # named twice: one row, where first named
    assert parse_models("siren, gabor-imfn,siren") == ["siren", "gabor-imfn"]
    for bad in ("", "256D", "1L", "0L256D", "1L256"):
        with pytest.raises(UserError):
            parse_sizes(bad)



def test_sizes_past_what_a_fit_takes_are_refused_before_fitting():
    """`--sizes 1L99999999D` started fitting, then ran out of memory; `inr fit --hidden` bounds the width."""
    from inr_cli.compare import CompareConfig
    from inr_cli.modalities.image import ImageOptions
    from inr_core.errors import InvalidSetting
    from training.fitting.config import FitConfig

    config = CompareConfig(FitConfig(steps=3), ImageOptions(), ("siren",), ((1, 99_999_999),))
    with pytest.raises(InvalidSetting, match="widths from 1 to 16,777,216 .* got 1L99999999D"):
        config.validate()
    CompareConfig(FitConfig(steps=3), ImageOptions(), ("siren",), ((1, 256),)).validate()


@pytest.mark.parametrize("model", ["siren", "fourier-imfn"])
def test_step_memory_of_a_large_image_is_carried_over_from_two_small_steps(model, monkeypatch):
    """"step MB" took a whole-image step to count it (a 3 MP photo with SIREN 1L-256D passed 6 GB). Two steps of
    a few points, carried over linearly, give what the whole step holds: measured here both ways on 24 x 24."""
    import inr_cli.compare as compare
    from training.fitting.config import FitConfig
    from training.fitting.fit import fit
    from training.fitting.signal import image_signal

    signal = image_signal(torch.rand(24, 24, 3, generator=torch.Generator().manual_seed(0)))
    config = FitConfig(model=model, hidden=16, layers=2, steps=2, device="cpu", eval_every=0, seed=0)
    result = fit(signal, config, compare.IMAGE.recipe)
    whole = compare.step_megabytes(result, signal, torch.device("cpu"))  # 576 points: measured as they are
    monkeypatch.setattr(compare, "MEASURED_POINTS", 100, raising=False)
    measured, counted = [], compare.training_step_bytes

    def spy(model, coords, target, cache=None):
        measured.append(len(coords))
        return counted(model, coords, target, cache)

    monkeypatch.setattr(compare, "training_step_bytes", spy)
    assert compare.step_megabytes(result, signal, torch.device("cpu")) == pytest.approx(whole, rel=1e-12)
    assert measured == [100, 200]


def test_one_image_has_no_spread_to_show():
    assert _mean_std([21.25]) == (21.25, None) and _fmt(21.25, None) == "21.25"
    assert _mean_std([20.0, 22.0]) == (21.0, 1.0) and _fmt(21.0, 1.0) == "21.00 ± 1.00"
    assert _mean_std([None]) == (None, None) and _fmt(None, None) == "–"


def test_implicit_models_also_run_explicitly():
    assert variants(["gabor-imfn", "siren"]) == [("gabor-imfn", False), ("gabor-imfn", True), ("siren", False)]


def test_cli_compare_writes_one_row_per_model_size_and_variant(tmp_path):
    proc = run_here(["compare", "image", "skimage:camera", "skimage:moon", "--resize", "24", "--steps", "20",
                    "--models", "fourier-imfn,fourier-mfn", "--sizes", "1L16D,2L16D", "--holdout", "grid",
                    "--out", "cmp", "--json", "--precision", "bf16"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["precision"], summary["compile"]) == ("bf16", False)  # as asked; CPU default: not compiled
    rows = summary["rows"]
    assert [(r["model"], r["size"], r["variant"]) for r in rows] == [
        ("fourier-imfn", "1L-16D", "implicit"), ("fourier-imfn", "1L-16D", "explicit"),
        ("fourier-mfn", "1L-16D", "explicit"),
        ("fourier-imfn", "2L-16D", "implicit"), ("fourier-imfn", "2L-16D", "explicit"),
        ("fourier-mfn", "2L-16D", "explicit"),
    ]
    for row in rows:
        psnrs = [image["psnr"] for image in row["per_image"]]
        assert len(psnrs) == 2
        assert row["psnr_mean"] == pytest.approx(sum(psnrs) / 2)
        assert row["psnr_std"] == pytest.approx(abs(psnrs[0] - psnrs[1]) / 2)  # population, as fit's summary
        assert row["psnr_holdout_mean"] is not None and 0 < row["ms_per_step"] < 60_000
        # A step keeps at least each linear map's input for backward: (layers + 1) x N x hidden floats, where N
        # is the 12 x 12 training points that --holdout grid leaves of a 24 x 24 image.
        floor_mb = (row["layers"] + 1) * 144 * row["hidden"] * 4 / 2**20
        assert row["step_mb"] >= floor_mb, (row, floor_mb)
    # The implicit and explicit variants of one size share their parameter count, and the implicit step keeps no
    # more memory than the explicit one beyond its fixpoint cache (one hidden-wide state per training point).
    assert rows[0]["params"] == rows[1]["params"] == rows[2]["params"]
    for implicit, explicit in ((rows[0], rows[1]), (rows[3], rows[4])):
        cache_mb = 144 * implicit["hidden"] * 4 / 2**20
        assert implicit["step_mb"] <= explicit["step_mb"] + cache_mb + 1e-9, (implicit, explicit)
    assert rows[0]["eval_iterations"] > 1 and rows[1]["eval_iterations"] is None
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert table.count("\n| fourier") == 6 and "holdout PSNR" in table
    assert "# inr compare: 2 images, 20 steps" in table and "mean ± std (population) over the images" in table
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"] == rows


def test_cli_compare_rejects_bad_sizes_in_one_line(tmp_path):
    proc = run_here(["compare", "image", "--sizes", "big", "--out", "cmp"], cwd=tmp_path)
    assert proc.returncode == 2  # a bad option value: usage
    assert proc.stderr.count("\n") == 1 and "nLcD" in proc.stderr
    assert not (tmp_path / "cmp").exists()


def test_cli_compare_writes_into_no_folder_of_other_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "index.html").write_text("<p>my page</p>")
    args = ["compare", "image", "skimage:moon", "--resize", "8", "--steps", "2", "--models", "siren", "--sizes",
            "1L4D"]
    proc = run_here([*args, "--out", "mine"], cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "holds files that are not an inr run's (index.html)" in proc.stderr
    assert (tmp_path / "mine" / "index.html").read_text() == "<p>my page</p>"
    proc = run_here([*args, "--out", "cmp", "--sizes", "1L4D,1L2D"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr.count("\n") == 2
    assert (tmp_path / "cmp" / "pictures" / "siren-1L-2D-explicit-0.png").is_file()
    again = run_here([*args, "--out", "cmp", "--quiet"], cwd=tmp_path)  # a comparison is not replaced unasked
    assert again.returncode == 1 and again.stderr == \
        "inr: error: cmp already holds a comparison; add --overwrite to replace it, or choose another --out\n"
    from inr_cli.run_folder import RunFolder

    holder = RunFolder(tmp_path / "cmp").lock()  # another comparison writing there now, as it were
    try:
        busy = run_cli([*args, "--out", "cmp", "--quiet", "--overwrite"], cwd=tmp_path)
    finally:
        holder.release()
    assert busy.returncode == 1 and busy.stderr.startswith("inr: error: cmp is being written by another inr run")
    assert busy.stderr.count("\n") == 1 and (tmp_path / "cmp" / "pictures" / "siren-1L-2D-explicit-0.png").is_file()
    replaced = run_here([*args, "--out", "cmp", "--quiet", "--overwrite"], cwd=tmp_path)
    assert replaced.returncode == 0 and replaced.stderr == ""
    assert not (tmp_path / "cmp" / ".inr.lock").exists()
    # Only the new comparison's pictures are left: the old one's 2-wide network is gone with it.
    assert sorted(p.name for p in (tmp_path / "cmp" / "pictures").iterdir()) == [
        "siren-1L-4D-explicit-0.png", "target-0.png"]


def test_the_page_of_one_image_shows_each_psnr_alone(tmp_path):
    from inr_cli.pages.overview import write_compare_page

    row = {"model": "siren", "size": "1L-16D", "layers": 1, "hidden": 16, "variant": "explicit", "psnr_mean": 21.25,
           "psnr_std": None, "ms_per_step": 1.0, "params": 321, "step_mb": 0.1, "peak_mb": None,
           "eval_iterations": None}
    summary = {"images": ["photo.png"], "steps": 5, "holdout": "none", "device": "cpu", "precision": "fp32",
               "compile": False, "rows": [row]}
    picture = torch.zeros(4, 4, 3)
    write_compare_page(tmp_path, summary, [picture], [[picture]], {})
    page = (tmp_path / "index.html").read_text()
    assert "1 image · 5 steps" in page and ">21.25 dB</td>" in page and "±" not in page


def test_ctrl_c_during_a_comparison_says_so_in_one_line(tmp_path):
    import signal
    import subprocess
    import sys

    from helpers import cli_env

    # Typer turns KeyboardInterrupt into a silent exit 130; inr says what happened, as it does for a fit. (A shell
    # that starts a job in the background has it ignore SIGINT, which inr respects: the test gives it the default.)
    process = subprocess.Popen([sys.executable, "-m", "inr_cli", "compare", "image", "skimage:moon", "--resize", "16",
                                "--steps", "1000000", "--models", "siren", "--sizes", "1L4D", "--out", "cmp"],
                               cwd=tmp_path, env=cli_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert process.stderr.readline() == "[1/1] siren 1L-4D explicit: skimage:moon\n"  # fitting now
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()  # a million steps: never left running, whatever went wrong
    assert process.returncode == 130 and stderr == "inr: interrupted\n"


def test_in_a_terminal_each_fit_of_a_comparison_shows_its_bar(tmp_path, monkeypatch):
    """A grid of sizes fits for many minutes on a CPU; in a terminal each fit's bar moves under its line (where
    stderr is a file or a pipe, the lines alone, as the other tests here hold)."""
    import io

    from rich.console import Console

    import inr_cli.compare as compare
    import inr_cli.progress as progress

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120, emoji=False, highlight=False)
    monkeypatch.setattr(compare, "stderr_console", terminal)
    monkeypatch.setattr(progress, "stderr_console", terminal)
    proc = run_here(["compare", "image", "skimage:moon", "--resize", "16", "--steps", "20", "--models", "siren",
                     "--sizes", "1L4D", "--out", "cmp"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = screen.getvalue()
    assert "[1/1] siren 1L-4D explicit: skimage:moon" in shown and "20/20" in shown and "steps/s" in shown
    quiet = run_here(["compare", "image", "skimage:moon", "--resize", "16", "--steps", "20", "--models", "siren",
                      "--sizes", "1L4D", "--out", "cmp-quiet", "--quiet"], cwd=tmp_path)
    assert quiet.returncode == 0 and screen.getvalue() == shown  # --quiet: neither line nor bar
