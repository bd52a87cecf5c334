"""Our Adam (training.adam) is torch.optim.Adam to the bit, and a CPU fit does not load the compiler."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

from helpers import cli_env
from models.siren import Siren
from training.adam import Adam


def _network_and_data(seed: int = 0):
    torch.manual_seed(seed)
    network = Siren(2, 3, hidden=16, layers=2)
    unused = nn.Parameter(torch.randn(4))  # never gets a gradient: both optimizers must leave it alone
    points, targets = torch.rand(64, 2) * 2 - 1, torch.rand(64, 3)
    return network, unused, points, targets


def _train(optimizer_class, steps: int, state: dict | None = None, **settings):
    network, unused, points, targets = _network_and_data()
    optimizer = optimizer_class([*network.parameters(), unused], lr=1e-3, **settings)
    if state is not None:  # a copy: a loaded optimizer state shares the tensors it was given, and steps them
        state = copy.deepcopy(state)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
    for step in range(steps):
        if step == steps // 2:  # as a learning-rate rollback or schedule does, mid-run
            optimizer.param_groups[0]["lr"] = 4e-4
        optimizer.zero_grad(set_to_none=True)
        nn.functional.mse_loss(network(points), targets).backward()
        optimizer.step()
    return network, unused, optimizer


def _assert_same(ours, theirs) -> None:
    (network_a, unused_a, optimizer_a), (network_b, unused_b, optimizer_b) = ours, theirs
    for a, b in zip(network_a.parameters(), network_b.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(unused_a, unused_b)
    state_a, state_b = optimizer_a.state_dict(), optimizer_b.state_dict()
    assert state_a["param_groups"] == state_b["param_groups"]
    assert state_a["state"].keys() == state_b["state"].keys()
    for index, entry in state_a["state"].items():
        for key, value in entry.items():
            assert torch.equal(value, state_b["state"][index][key]), (index, key)
            assert value.dtype == state_b["state"][index][key].dtype


def test_the_written_out_step_is_torch_adams_bit_for_bit():
    ours, theirs = _train(Adam, 30), _train(torch.optim.Adam, 30)
    assert len(ours[2].state) == len(list(ours[0].parameters()))  # the unused parameter has no state
    _assert_same(ours, theirs)
    # ... and the weights really moved (a step that did nothing would match itself too)
    untouched = _network_and_data()[0]
    assert not torch.equal(next(ours[0].parameters()), next(untouched.parameters()))


def test_saved_states_go_both_ways_between_the_two_optimizers():
    network, _, optimizer = _train(torch.optim.Adam, 10)
    saved = {"network": network.state_dict(), "optimizer": optimizer.state_dict()}
    _assert_same(_train(Adam, 10, state=saved), _train(torch.optim.Adam, 10, state=saved))
    network, _, optimizer = _train(Adam, 10)
    saved = {"network": network.state_dict(), "optimizer": optimizer.state_dict()}
    _assert_same(_train(Adam, 10, state=saved), _train(torch.optim.Adam, 10, state=saved))


@pytest.mark.parametrize("settings", [{"weight_decay": 0.01}, {"amsgrad": True}, {"foreach": True}],
                         ids=["weight-decay", "amsgrad", "foreach"])
def test_other_settings_take_torchs_own_step(settings):
    optimizer = Adam([nn.Parameter(torch.zeros(2))], **settings)
    assert not optimizer._plain_step_applies(optimizer.param_groups[0])
    _assert_same(_train(Adam, 6, **settings), _train(torch.optim.Adam, 6, **settings))


def test_a_cpu_fit_does_not_load_the_compiler(tmp_path, camera_u8):
    from PIL import Image

    Image.fromarray(camera_u8[:16, :16]).save(tmp_path / "tiny.png")
    script = ("import sys\nfrom inr_cli.app import main\n"
              "sys.argv = ['inr', 'fit', 'image', 'tiny.png', 'tiny.png', '--steps', '3', '--hidden', '8', "
              "'--device', 'cpu', '--quiet', '--json']\n"
              "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
              "print('dynamo loaded:', 'torch._dynamo' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=cli_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *reports, last = done.stdout.strip().splitlines()
    assert len(reports) == 2 and all('"psnr"' in report for report in reports)  # both inputs fitted, as a group
    assert last == "dynamo loaded: False"
