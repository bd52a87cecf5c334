"""Minibatches of training points: every point once per epoch, in a fresh random order each epoch.

An epoch's order is one ``torch.randperm`` of every training point from the fit's own generator (seeded by
``--seed``), in int32 where that holds every position (4 bytes a point). Two things keep large signals cheap:

- **The state is small.** What a rollback snapshot or a resume checkpoint keeps is the generator's state from
  before the epoch's order was drawn and the position in that order: a few kilobytes. Restoring draws the same
  order again. Holding the order itself cost 4 bytes a point in every snapshot (the run-away guard takes one
  every 25 steps) and in every resume checkpoint: 398 MB each for 48 frames of 1080p, copied from the GPU (a
  synchronisation) and then in host memory each time.
- **On CUDA the next epoch's order is drawn while this one trains.** ``randperm`` runs on the host, 3.5 s for
  99.5 million points on this project's 2-core CI machine, during which the GPU would sit idle; a background
  thread draws it as soon as the current one is taken, from the same generator state, so the orders are the
  ones drawn in turn. Not on a CPU, where that thread would take a core from training.
"""

from __future__ import annotations

import threading

import torch

# Orders at least this long are drawn ahead on CUDA (about 0.15 s of randperm on a CPU core); shorter ones in
# turn, where a thread would cost more than it hides.
PREFETCH_POINTS = 1 << 22


class _Draw:
    """One order being drawn in a daemon thread (a run stopped mid-draw does not wait for it to finish)."""

    def __init__(self, draw):
        self._result: torch.Tensor | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(draw,), name="inr-epoch-order", daemon=True)
        self._thread.start()

    def _run(self, draw) -> None:
        try:
            self._result = draw()
        except BaseException as error:  # noqa: BLE001 - handed to the training thread, which raises it
            self._error = error

    def result(self) -> torch.Tensor:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


class BatchSampler:
    """Index batches into ``n`` training points, ``batch_size`` at a time (see the module's notes). The tail of an
    epoch too short for a whole batch is left out; the next batch starts a fresh epoch."""

    def __init__(self, n: int, batch_size: int, device: torch.device, generator: torch.Generator,
                 prefetch: bool | None = None):
        self.n, self.batch_size, self.device, self.generator = n, batch_size, device, generator
        self.prefetch = device.type == "cuda" and n >= PREFETCH_POINTS if prefetch is None else prefetch
        # int32 where it can hold every position: the same permutation as int64 from the same generator.
        self._dtype = torch.int32 if n <= torch.iinfo(torch.int32).max else torch.int64
        self._order = torch.empty(0, dtype=torch.int64)
        self._pos = n
        self._drawn = False  # whether an epoch's order has been drawn (and _epoch_start holds where from)
        self._epoch_start = generator.get_state()  # the generator before the current epoch's order was drawn
        self._next_start: torch.Tensor | None = None  # ... and before the next one's, once it is known
        self._ahead: _Draw | None = None  # the next epoch's order, being drawn
        # An order restored from a state saved by an earlier version, which kept the order itself and not the
        # generator's state before it: until that epoch ends, states are saved that way too.
        self._order_only = False

    def state(self) -> dict:
        if self._order_only:
            return {"order": self._order.cpu(), "pos": self._pos, "generator": self.generator.get_state()}
        return {"epoch_generator": self._epoch_start.clone(), "pos": self._pos, "drawn": self._drawn}

    def restore(self, state: dict) -> None:
        self._drop_ahead()
        if "order" in state:  # saved by an earlier version
            self._order, self._pos = state["order"].to(self.device), state["pos"]
            self.generator.set_state(state["generator"])
            self._order_only = True
            return
        self.generator.set_state(state["epoch_generator"])
        self._order, self._pos, self._drawn = torch.empty(0, dtype=torch.int64), state["pos"], False
        self._order_only = False
        if state["drawn"]:
            self._start_epoch(self._draw())
            self._pos = state["pos"]

    def release(self) -> None:
        """Let go of the epoch's order (4 bytes a point) once training is over: the final evaluation renders the
        whole signal beside it (an hour of stereo: 635 MB; 48 frames of 1080p: 398 MB). Only a further
        :meth:`next` would need it, and would draw a fresh epoch."""
        self._drop_ahead()
        self._order, self._pos = torch.empty(0, dtype=torch.int64), self.n

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > self.n:
            self._start_epoch(self._ahead.result() if self._ahead is not None else self._draw())
        batch = self._order[self._pos:self._pos + self.batch_size].long()  # each batch widened, as indices are
        self._pos += self.batch_size
        return batch

    def _draw(self) -> torch.Tensor:
        self._next_start = self.generator.get_state()
        return torch.randperm(self.n, generator=self.generator, dtype=self._dtype)

    def _start_epoch(self, order: torch.Tensor) -> None:
        self._epoch_start, self._drawn, self._order_only = self._next_start, True, False
        self._order, self._pos, self._ahead = order.to(self.device), 0, None
        if self.prefetch:
            self._ahead = _Draw(self._draw)  # _draw notes the generator's state first, in this thread's order

    def _drop_ahead(self) -> None:
        """Discard the order being drawn ahead, and the generator's draw of it: as if it had never been drawn."""
        if self._ahead is not None:
            self._ahead.result()  # the thread holds the generator until it is done
            self._ahead = None
            self.generator.set_state(self._next_start)
