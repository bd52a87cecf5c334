"""Minibatch order: the same batches drawn ahead or in turn, a state of a few kilobytes that restores them exactly."""

from __future__ import annotations

import threading

import pytest
import torch

from training.fitting import batches as batches_module
from training.fitting.batches import BatchSampler

CPU = torch.device("cpu")
POINTS, BATCH = 1003, 100  # ten batches an epoch; the last three points of each epoch's order are left out


def sampler(prefetch: bool, seed: int = 5, points: int = POINTS) -> BatchSampler:
    return BatchSampler(points, BATCH, CPU, torch.Generator().manual_seed(seed), prefetch=prefetch)


def expected_batches(epochs: int, seed: int = 5) -> list[torch.Tensor]:
    """Each epoch's order drawn in turn from one generator, cut into whole batches."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(epochs):
        order = torch.randperm(POINTS, generator=generator)
        out += [order[start:start + BATCH] for start in range(0, POINTS - BATCH + 1, BATCH)]
    return out


def draw(batch_sampler: BatchSampler, count: int) -> list[torch.Tensor]:
    return [batch_sampler.next() for _ in range(count)]


@pytest.mark.parametrize("prefetch", [False, True])
def test_batches_are_each_epoch_s_order_drawn_in_turn(prefetch):
    got = draw(sampler(prefetch), 30)
    assert all(batch.dtype == torch.int64 for batch in got)
    assert all(torch.equal(a, b) for a, b in zip(got, expected_batches(3), strict=True))


@pytest.mark.parametrize("prefetch", [False, True])
@pytest.mark.parametrize("taken", [0, 1, 9, 10, 11, 25])
def test_a_restored_state_goes_on_with_the_same_batches(prefetch, taken):
    original = sampler(prefetch)
    draw(original, taken)
    state = original.state()
    rest = draw(original, 30 - taken)
    # A fresh sampler, another seed: everything it needs is in the state.
    restored = sampler(prefetch, seed=99)
    restored.restore(state)
    assert all(torch.equal(a, b) for a, b in zip(draw(restored, 30 - taken), rest, strict=True))
    # Restored in place too (a rollback), with the next epoch being drawn ahead at the time.
    original.restore(state)
    assert all(torch.equal(a, b) for a, b in zip(draw(original, 30 - taken), rest, strict=True))


def test_the_state_holds_kilobytes_not_the_order():
    big = sampler(prefetch=True, points=300_001)
    big.next()
    state = big.state()
    held = sum(value.numel() * value.element_size() for value in state.values() if isinstance(value, torch.Tensor))
    assert held < 8 * 1024  # the CPU generator's state (5,056 bytes); the order would be 1.2 MB
    big.release()


def test_a_state_saved_with_the_order_itself_still_restores():
    """Resume checkpoints of earlier versions hold the order and the generator's state after it was drawn."""
    generator = torch.Generator().manual_seed(5)
    order = torch.randperm(POINTS, generator=generator, dtype=torch.int32)
    old_state = {"order": order, "pos": 4 * BATCH, "generator": generator.get_state()}
    restored = sampler(prefetch=True, seed=99)
    restored.restore(old_state)
    assert all(torch.equal(a, b) for a, b in zip(draw(restored, 3), expected_batches(1)[4:7], strict=True))
    # Within that epoch its states keep the old form, and restore to the same batches.
    mid_epoch = restored.state()
    assert torch.equal(mid_epoch["order"], order)
    rest = draw(restored, 13)
    restored.restore(mid_epoch)
    assert all(torch.equal(a, b) for a, b in zip(draw(restored, 13), rest, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(rest, expected_batches(2)[7:20], strict=True))
    assert "epoch_generator" in restored.state()  # the next epoch was drawn here: the small form again


def test_release_waits_for_the_order_drawn_ahead_and_lets_go_as_if_it_was_never_drawn():
    ahead, in_turn = sampler(prefetch=True), sampler(prefetch=False)
    for released in (ahead, in_turn):
        draw(released, 3)
        released.release()
    assert ahead._order.numel() == 0 and ahead._ahead is None
    # A batch asked for afterwards starts a fresh epoch, the same whether the next order had been drawn ahead.
    assert torch.equal(ahead.next(), in_turn.next())


def test_a_failure_while_drawing_ahead_reaches_the_training_thread(monkeypatch):
    real_randperm = torch.randperm

    def failing_ahead(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("out of host memory")
        return real_randperm(*args, **kwargs)

    monkeypatch.setattr(batches_module.torch, "randperm", failing_ahead)
    ahead = sampler(prefetch=True)
    draw(ahead, 10)  # the first epoch is drawn in turn; the second one's draw fails in the thread
    with pytest.raises(RuntimeError, match="out of host memory"):
        ahead.next()
