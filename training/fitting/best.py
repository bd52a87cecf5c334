"""Keeping the best network measured along a fit, rather than whatever the last step left.

Adam, fitting a signal to 50-70 dB, spikes now and then: the loss jumps by 10-30 dB and takes tens of steps to
recover. A fit whose last steps fall into such a spike ends far below the quality it had reached: of 32 crops of
32 px fitted by SIREN 3x64 for 300 steps, 3 ended 7-15 dB below their best measured PSNR. Which fits end in a
spike depends on rounding, too, so two runs that differ only in the order of a sum (a signal fitted alone or
inside a group, whose batched products add in another order) ended up to 1.5 dB apart.

So a fit keeps the network of its best progress evaluation (``--keep best``, the default), as the compression
studies do (COIN keeps its best iterate), and the report says which step that was. The measure is the PSNR on the
training points: never the held-out points, which would leak them into the choice. Fits that measure no PSNR along
the run (``--eval-every 0``; shapes, measured by held-out IoU only) keep their last network.

The selection stays on the device: a better measurement overwrites the snapshot through ``torch.where``, so a
progress evaluation never waits for the host. A group of stacked networks selects per signal.
"""

from __future__ import annotations

from typing import Callable

import torch


class BestNetwork:
    """The best-measured values of a network's tensors (parameters and buffers), chosen on the device.

    ``tensors()`` returns the live tensors by name; with ``signals`` they are stacked (first axis: the signal)
    and every signal keeps its own best. Measurements are PSNRs, 0-d (or ``(signals,)``) tensors; a NaN never wins.
    """

    def __init__(self, tensors: Callable[[], dict[str, torch.Tensor]], signals: int | None = None):
        self.tensors = tensors
        live = tensors()
        self.snapshot = {name: value.detach().clone() for name, value in live.items()}
        device = next(iter(live.values())).device
        shape = () if signals is None else (signals,)
        self.psnr = torch.full(shape, -torch.inf, dtype=torch.float64, device=device)
        self.step = torch.zeros(shape, dtype=torch.int64, device=device)

    @torch.no_grad()
    def offer(self, psnr: torch.Tensor, step: int) -> None:
        """The live network, measured at ``step``: keep it (per signal) where it beats the best so far."""
        better = psnr.to(self.psnr.dtype) > self.psnr
        for name, live in self.tensors().items():
            mask = better.view(better.shape + (1,) * (live.dim() - better.dim()))
            self.snapshot[name].copy_(torch.where(mask, live, self.snapshot[name]))
        self.psnr = torch.where(better, psnr.to(self.psnr.dtype), self.psnr)
        self.step = torch.where(better, torch.full_like(self.step, step), self.step)

    def beats(self, last_psnr: torch.Tensor) -> torch.Tensor:
        """Where the best so far is strictly better than the last network's ``last_psnr`` (also where that is NaN
        and a finite best exists): there the best is kept. Equal measurements keep the last network."""
        last = last_psnr.to(self.psnr.dtype)
        return (self.psnr > last) | (torch.isnan(last) & torch.isfinite(self.psnr))

    def values(self, index: int | None = None) -> dict[str, torch.Tensor]:
        """The best network's tensors (signal ``index``'s slice of them, for stacked networks)."""
        return dict(self.snapshot) if index is None else {name: value[index] for name, value in self.snapshot.items()}

    def state(self) -> dict:
        return {"snapshot": self.snapshot, "psnr": self.psnr, "step": self.step}

    def restore(self, state: dict) -> None:
        device = self.psnr.device
        for name, value in state["snapshot"].items():
            self.snapshot[name].copy_(value.to(device))
        self.psnr, self.step = state["psnr"].to(device), state["step"].to(device)


def kept_note(kept_step: int, kept_psnr: float, last_step: int, last_psnr: float) -> str:
    """The report's note when the kept network is not the last one."""
    return (f"kept the network of step {kept_step} ({kept_psnr:.2f} dB on the training points), the best measured "
            f"along the run; the last step's measured {last_psnr:.2f} dB (--keep last keeps that one)")
