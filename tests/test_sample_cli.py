"""`inr sample`: several checkpoints with failures among them, and decoder draws with FID (its progress and cost)."""

import shutil
import typing

import numpy as np
import pytest
import torch
from helpers import in_process, run_here, save_png, untrained_decoder_checkpoint


def _inr(args, capsys) -> tuple[int, str, str]:
    return in_process(args, capsys)


def test_each_failing_checkpoint_is_one_line_and_no_count_line_follows(tmp_path, capsys):
    """A failure among several checkpoints printed its line and then "inr: 1 of 3 checkpoints failed": two lines
    where one per failure was promised (and `inr fit` over several inputs prints no count line)."""
    decoder = untrained_decoder_checkpoint(tmp_path / "decoder.pt")
    missing = tmp_path / "nope.pt"
    code, out, err = _inr(["sample", decoder, missing, decoder, "-n", "2", "--out", tmp_path / "draws", "--device",
                           "cpu"], capsys)
    assert code == 1
    assert err.splitlines() == [f"inr: error: {missing}: no such file"]
    assert len(out.split()) == 2  # the other two were drawn


def test_the_grid_of_draws_says_what_it_shows(tmp_path, capsys):
    from inr_cli.figures.layout import png_caption

    (tmp_path / "run").mkdir()
    decoder = untrained_decoder_checkpoint(tmp_path / "run" / "decoder.pt")
    code, _, err = _inr(["sample", decoder, "-n", "3", "--seed", "7", "--device", "cpu"], capsys)
    assert code == 0, err
    assert png_caption(tmp_path / "run" / "samples-3.png") == (
        "inr sample run/decoder.pt · 3 draws from the decoder's latent mixture (all shown) · seed 7")


class _TinyInception(torch.nn.Module):
    """Inception's contract, (N, 3, 299, 299) to (N, features), at a fraction of its cost."""

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_fid_shows_its_progress_unless_quiet_and_help_gives_its_cost(tmp_path):
    """FID against the default 10,000 real images ran over ten minutes on a CPU with nothing on screen."""
    (tmp_path / "run").mkdir()
    decoder = untrained_decoder_checkpoint(tmp_path / "run" / "decoder.pt")
    model = tmp_path / "inception.pt"
    torch.jit.script(_TinyInception()).save(str(model))
    real = tmp_path / "real.npz"
    np.savez(real, images=np.random.default_rng(0).integers(0, 255, (8, 16, 16), dtype=np.uint8))
    args = ["sample", decoder, "-n", "5", "--fid", real, "--fid-model", model, "--fid-count", "6", "--device", "cpu"]
    shown = run_here(args, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "FID: Inception features" in shown.stderr and "11/11" in shown.stderr  # 6 real and 5 drawn images
    quiet = run_here([*args, "--quiet"], tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "Inception" not in quiet.stderr and quiet.stderr.startswith("FID ")  # the result's line alone
    from inr_cli.commands.sample import sample

    usage = typing.get_type_hints(sample, include_extras=True)["fid_count"].__metadata__[0].help
    assert "default 10,000" in usage and "about 20 minutes on 2 CPU cores" in usage and "--fid-count 1000" in usage


def test_a_draw_without_individual_pngs_removes_an_earlier_draws(tmp_path, capsys):
    """The earlier draw's samples/NNNN.png stayed beside a grid and report that did not list them."""
    decoder = untrained_decoder_checkpoint(tmp_path / "decoder.pt")
    out = tmp_path / "draws"
    code, _, err = _inr(["sample", decoder, "-n", "3", "--out", out, "--individual", "--seed", "5", "--quiet",
                         "--device", "cpu"], capsys)
    assert code == 0 and len(list((out / "samples").glob("*.png"))) == 3, err
    code, _, err = _inr(["sample", decoder, "-n", "3", "--out", out, "--seed", "6", "--quiet", "--device", "cpu"],
                        capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "report.json"]


def test_many_draws_show_their_progress_unless_quiet(tmp_path, capsys, monkeypatch):
    """-n 100000 ran for minutes with nothing on screen: the bar covered FID only."""
    import contextlib

    from inr_cli.jiio import decoder_sample

    bars = []

    @contextlib.contextmanager
    def recorded(label, total, enabled=True, detail=""):
        updates = []
        bars.append((label, total, enabled, updates))
        yield updates.append if enabled else None

    monkeypatch.setattr(decoder_sample, "counter_progress", recorded)
    monkeypatch.setattr(decoder_sample, "DRAW_CHUNK", 2)  # 5 draws: three chunks
    decoder = untrained_decoder_checkpoint(tmp_path / "decoder.pt")
    common = ["sample", decoder, "-n", "5", "--device", "cpu", "--out"]
    assert _inr([*common, tmp_path / "shown"], capsys)[0] == 0
    assert _inr([*common, tmp_path / "quiet", "--quiet"], capsys)[0] == 0
    assert bars == [("decoding 5 draws", 5, True, [2, 4, 5]), ("decoding 5 draws", 5, False, [])]


# ------------------------------------------------------------------ where samples go, and what they never replace


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A finished `inr fit` run of an 8x8 picture (2 steps): its folder holds checkpoint.pt, target.png, ..."""
    from inr_cli.app import main

    folder = tmp_path_factory.mktemp("fitted")
    save_png(folder / "a.png", np.arange(64, dtype=np.uint8).reshape(8, 8))
    with pytest.raises(SystemExit) as stopped:
        main(["fit", "image", str(folder / "a.png"), "--steps", "2", "--out", str(folder / "run"), "--quiet",
              "--device", "cpu"])
    assert stopped.value.code == 0
    return folder / "run"


def test_a_sample_never_silently_replaces_an_existing_file(fitted, tmp_path, capsys):
    """`inr sample CKPT --out mine.png` replaced the user's picture, exit 0 and no word."""
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"the user's picture")
    args = ["sample", fitted / "checkpoint.pt", "--out", mine, "--device", "cpu"]
    assert _inr(args, capsys) == (1, "", f"inr: error: {mine}: already exists; add --overwrite to replace it, or "
                                         "choose another --out\n")
    assert mine.read_bytes() == b"the user's picture"
    code, out, err = _inr([*args, "--overwrite"], capsys)
    assert (code, out) == (0, f"{mine}\n"), err
    assert mine.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("name", ["target.png", "reconstruction.png"])
def test_a_sample_never_replaces_a_file_of_a_run_even_with_overwrite(fitted, tmp_path, capsys, name):
    """`inr sample run/checkpoint.pt --out run/target.png` replaced the run's target: its report's PSNR then
    described pictures it no longer held."""
    run = tmp_path / "run"
    shutil.copytree(fitted, run)
    before = (run / name).read_bytes()
    for extra in ([], ["--overwrite"]):
        assert _inr(["sample", run / "checkpoint.pt", "--out", run / name, "--device", "cpu", *extra], capsys) == (
            1, "", f"inr: error: {run / name}: belongs to the run in {run} (report.json lists it as one of its "
                   "files), which this sample would replace; choose another --out\n")
    assert (run / name).read_bytes() == before


def test_a_sample_through_a_symbolic_link_writes_where_it_points(fitted, tmp_path, capsys):
    """The atomic rename replaced the link itself with a plain file."""
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "nowhere" / "x.png")
    assert _inr(["sample", fitted / "checkpoint.pt", "--out", dangling, "--device", "cpu"], capsys) == (
        1, "", f"inr: error: --out {dangling} is a symbolic link to {tmp_path / 'nowhere' / 'x.png'}, which does not "
               "exist; choose another --out\n")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()
    real, link = tmp_path / "real.png", tmp_path / "link.png"
    real.write_bytes(b"old")
    link.symlink_to(real)
    code, _, err = _inr(["sample", fitted / "checkpoint.pt", "--out", link, "--overwrite", "--device", "cpu"], capsys)
    assert code == 0, err
    assert link.is_symlink() and real.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("slash", ["/", ""])
def test_one_fitted_networks_sample_into_a_folder(fitted, tmp_path, capsys, slash):
    """`--out ro/` asked for a .png file name: a folder (a name ending in /, or one that exists) takes the sample
    as RUN-sample-..., as it does each of several checkpoints'."""
    folder = tmp_path / "big"
    if not slash:
        folder.mkdir()
    code, out, err = _inr(["sample", fitted / "checkpoint.pt", "--scale", "2", "--out", f"{folder}{slash}",
                           "--device", "cpu"], capsys)
    assert (code, out) == (0, f"{folder / 'run-sample-16x16.png'}\n"), err
    assert sorted(p.name for p in folder.iterdir()) == ["run-sample-16x16.png"]
    assert _inr(["sample", fitted / "checkpoint.pt", "--out", tmp_path / "noname", "--device", "cpu"], capsys) == (
        1, "", f"inr: error: {tmp_path / 'noname'}: image samples are written as .png; give such a file name, or a "
               "folder to write it into (ending in /)\n")


def test_a_checkpoint_whose_sample_cannot_be_written_fails_alone(fitted, tmp_path, capsys, monkeypatch):
    """A write error (a full disk) on one of several checkpoints ended every later one with a traceback."""
    from inr_cli.modalities.image import ImageModality

    write_sample = ImageModality.write_sample

    def full_for_the_first(self, network, target, path):
        if not failed:
            failed.append(path)
            raise OSError(28, "No space left on device", str(path))
        write_sample(self, network, target, path)

    failed = []
    monkeypatch.setattr(ImageModality, "write_sample", full_for_the_first)
    (tmp_path / "other").mkdir()
    shutil.copy(fitted / "checkpoint.pt", tmp_path / "other" / "checkpoint.pt")
    out = tmp_path / "big"
    code, stdout, err = _inr(["sample", fitted / "checkpoint.pt", tmp_path / "other" / "checkpoint.pt", "--out", out,
                              "--device", "cpu"], capsys)
    assert (code, stdout) == (1, f"{out / 'other-sample-8x8.png'}\n")
    assert err == f"inr: error: {out / 'run-sample-8x8.png'}: No space left on device\n"
    assert sorted(p.name for p in out.iterdir()) == ["other-sample-8x8.png"]


def test_draws_into_a_folder_another_run_holds_are_refused(tmp_path, capsys):
    """`inr sample DECODER --out X` took no lock: while a fit wrote X it drew, and its report.json replaced the
    fit's."""
    from test_run_folders import hold_lock

    decoder = untrained_decoder_checkpoint(tmp_path / "decoder.pt")
    holder = hold_lock(tmp_path / "X")
    try:
        result = _inr(["sample", decoder, "-n", "2", "--out", tmp_path / "X", "--quiet", "--device", "cpu"], capsys)
    finally:
        holder.close()
    assert result == (1, "", f"inr: error: {tmp_path / 'X'} is being written by another inr run (pid 4242 on "
                             "elsewhere); wait for it to finish or choose another --out\n")
    assert sorted(p.name for p in (tmp_path / "X").iterdir()) == [".inr.lock"]


def test_draws_check_their_folder_again_before_writing(tmp_path, capsys, monkeypatch):
    """The check for another run's report was made once, before the draws; a report that appeared meanwhile was
    replaced."""
    import inr_cli.jiio.decoder_sample as decoder_sample

    decoder = untrained_decoder_checkpoint(tmp_path / "decoder.pt")
    out = tmp_path / "X"
    out.mkdir()
    fit_report = b'{"command": "fit", "psnr": 30.0}'
    mixture = decoder_sample.sample_gaussian_mixture

    def meanwhile(*args, **kwargs):  # a writer that ignores the lock, while the draws are made
        (out / "report.json").write_bytes(fit_report)
        return mixture(*args, **kwargs)

    monkeypatch.setattr(decoder_sample, "sample_gaussian_mixture", meanwhile)
    assert _inr(["sample", decoder, "-n", "2", "--out", out, "--quiet", "--device", "cpu"], capsys) == (
        1, "", f"inr: error: {out}: holds another run (report.json is not an `inr sample` report), which these draws "
               "would replace; choose another --out\n")
    assert (out / "report.json").read_bytes() == fit_report and not (out / "grid.png").exists()


def test_individual_draws_never_remove_pngs_they_did_not_write(tmp_path, capsys):
    """--individual deleted every all-digit PNG in DIR/samples: a user's 0002.png or 20240101.png."""
    decoder = untrained_decoder_checkpoint(tmp_path / "decoder.pt")
    out = tmp_path / "ds"
    (out / "samples").mkdir(parents=True)
    for name in ("0001.png", "20240101.png"):
        (out / "samples" / name).write_bytes(name.encode())
    args = ["sample", decoder, "--individual", "--out", out, "--quiet", "--device", "cpu"]
    for extra in ([], ["--overwrite"]):
        assert _inr([*args, "-n", "2", *extra], capsys) == (
            1, "", f"inr: error: {out / 'samples'}: holds PNGs that no earlier draw there wrote (0001.png, "
                   "20240101.png), which the draws' numbered PNGs would replace or remove; choose another --out\n")
    assert {p.name: p.read_bytes() for p in (out / "samples").iterdir()} == {"0001.png": b"0001.png",
                                                                            "20240101.png": b"20240101.png"}
    assert sorted(p.name for p in out.iterdir()) == ["samples"]
    # An earlier draw's own PNGs, as its report lists them, are replaced; a file that is no PNG stays.
    shutil.rmtree(out)
    assert _inr([*args, "-n", "3"], capsys)[0] == 0
    (out / "samples" / "notes.txt").write_text("mine")
    assert _inr([*args, "-n", "2"], capsys)[0] == 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["0000.png", "0001.png", "notes.txt"]


def test_draws_never_silently_replace_a_picture_named_as_their_grid(tmp_path, capsys):
    decoder = untrained_decoder_checkpoint(tmp_path / "decoder.pt")
    mine = tmp_path / "pic.png"
    mine.write_bytes(b"the user's picture")
    args = ["sample", decoder, "-n", "2", "--out", mine, "--quiet", "--device", "cpu"]
    assert _inr(args, capsys) == (1, "", f"inr: error: {mine}: already exists; add --overwrite to replace it, or "
                                         "choose another --out\n")
    assert mine.read_bytes() == b"the user's picture"
    assert _inr([*args, "--overwrite"], capsys)[0] == 0 and mine.read_bytes().startswith(b"\x89PNG")
    assert _inr(args, capsys)[0] == 0  # now the grid of an earlier draw: replaced as draws are


def test_a_large_render_shows_its_progress_unless_quiet_and_a_small_one_none(tmp_path, camera_u8):
    """A 10-megapixel sample of a SIREN 3x256 took 39 s on two CPU cores with nothing on screen."""
    from inr_cli.sample import RENDER_PASSES_WITHOUT_A_BAR
    from training.fitting.devices import render_chunk_size

    save_png(tmp_path / "tile.png", camera_u8[:16, :16])
    fitted = run_here(["fit", "image", "tile.png", "--steps", "1", "--hidden", "32", "--layers", "1", "--device",
                       "cpu", "--quiet", "--out", "run"], tmp_path)
    assert fitted.returncode == 0, fitted.stderr
    # Square samples just past and just within the passes that show no bar.
    chunk = render_chunk_size(32, 1, torch.device("cpu"), 0)
    large = int(np.ceil(np.sqrt((RENDER_PASSES_WITHOUT_A_BAR + 1) * chunk)))
    small = int(np.sqrt(RENDER_PASSES_WITHOUT_A_BAR * chunk))
    shown = run_here(["sample", "run", "--width", str(large), "--out", "large.png", "--device", "cpu"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "rendering large.png" in shown.stderr and f"{large}/{large}" in shown.stderr  # every row, to the end
    for extra, name in ((["--quiet"], "quiet.png"), ([], "small.png")):
        width = small if name == "small.png" else large
        silent = run_here(["sample", "run", "--width", str(width), "--out", name, "--device", "cpu", *extra],
                          tmp_path)
        assert silent.returncode == 0 and silent.stderr == "", silent.stderr
