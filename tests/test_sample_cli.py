"""`inr sample`: several checkpoints with failures among them, and decoder draws with FID (its progress and cost)."""

import pytest
from helpers import untrained_decoder_checkpoint

from inr_cli.app import main


def _inr(args, capsys) -> tuple[int, str, str]:
    """Run the command line in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as stopped:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return stopped.value.code, captured.out, captured.err


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
