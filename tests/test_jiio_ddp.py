"""Decoder training across processes: K ranks with per-rank batch b train the decoder one rank with batch K b
trains (gloo, two CPU processes under torchrun), and the rank-0 checkpoint is the single run's."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from helpers import cli_env

CONFIG = dict(image_size=16, channels=[8, 16], latent_dim=8, jiio_iterations=6, jiio_step_size=0.05,
              anderson_memory=3, epochs=1, lr=1e-2)

SCRIPT = """
import sys, torch
from inr_cli.cluster import Cluster
from training.jiio.decoder_training import DecoderConfig, Ranks, train_decoder
sys.path.insert(0, {tests!r})
from test_jiio_ddp import CONFIG, images
cluster = Cluster.from_environment()
state = train_decoder(DecoderConfig(batch_size=4, **CONFIG), images(), ranks=Ranks(cluster.rank, cluster.world_size))
if cluster.rank == 0:
    torch.save({{"decoder": state.decoder.state_dict(), "latents": state.latents, "history": state.history}},
               {out!r})
cluster.close()
"""


def images() -> torch.Tensor:
    from skimage import data

    camera = torch.from_numpy(data.camera()).float() / 255 * 2 - 1
    return torch.stack([camera[30 * i:30 * i + 16, 60 + 25 * i:76 + 25 * i] for i in range(14)])[:, None]


def test_two_ranks_train_the_decoder_one_rank_with_twice_the_batch_trains(tmp_path):
    from pathlib import Path

    from training.jiio.decoder_training import DecoderConfig, Ranks, train_decoder

    out = tmp_path / "two_ranks.pt"
    script = tmp_path / "train_two.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], capture_output=True, text=True, timeout=300, env=cli_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = torch.load(out, weights_only=True)
    # 14 images in global batches of 8: rank 0 infers 4 + 4, rank 1 infers 4 + 2.
    assert Ranks(0, 2).image_counts(14, 4) == [8, 6]

    one = train_decoder(DecoderConfig(batch_size=8, **CONFIG), images())
    for name, weight in one.decoder.state_dict().items():
        torch.testing.assert_close(two["decoder"][name], weight, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(two["latents"], one.latents, rtol=1e-4, atol=1e-5)
    assert two["history"][0]["cost_per_image"] == pytest.approx(one.history[0]["cost_per_image"], rel=1e-4)
    # And the decoder did learn something in that epoch: its weights moved from the seed's initialisation.
    from training.jiio.decoder_training import new_training_state

    fresh = new_training_state(DecoderConfig(batch_size=8, **CONFIG), images()).decoder.state_dict()
    assert any(not torch.equal(fresh[name], weight) for name, weight in one.decoder.state_dict().items())


def test_jiio_invert_under_torchrun_trains_on_every_rank_and_reports_once(tmp_path):
    import json

    import numpy as np
    from skimage import data

    camera = data.camera()
    crops = np.stack([camera[12 * i:12 * i + 16, 40 + 9 * i:56 + 9 * i] for i in range(24)])
    np.savez(tmp_path / "crops.npz", images=crops)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "inr_cli",
         # --train-minutes: the ranks agree on the epochs that fit (one, as the first overruns 0.012 s)
         "jiio-invert", "--data", "crops.npz", "--epochs", "3", "--train-minutes", "0.0002", "--image-size", "16",
         "--latent-dim", "8",
         "--train-batch-size", "4", "--count", "4", "--iters", "3", "--no-fid", "--quiet", "--json", "--out", "run",
         "--device", "cpu"], capture_output=True, text=True, timeout=300, env=cli_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1  # rank 0 reports; rank 1 only trained
    report = json.loads(lines[0])
    assert report["decoder"]["epochs"] == 1 and any("1 of the 3 epochs asked for" in n for n in report["notes"])
    trained = report["decoder"]["data"]
    # 20 training images, global batches of 2 x 4: rank 0 infers 4 + 4 + 4, rank 1 4 + 4.
    assert trained["world_size"] == 2 and trained["images_per_rank"] == [12, 8] and trained["train_count"] == 20
    saved = torch.load(tmp_path / "run" / "decoder.pt", weights_only=True)
    assert saved["data"]["world_size"] == 2
