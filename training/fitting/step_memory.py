"""Memory a training step holds for its backward pass, counted from the tensors autograd saves.

An allocator-independent measure (on a CPU, the process's resident size hides reuse of freed blocks): every
distinct storage saved for backward during one step is counted once, plus any state the method keeps between
steps (the amortized fixpoint cache). This is the quantity behind the implicit-layer paper's O(1)-memory claim.
"""

from __future__ import annotations

import torch
from torch import nn

from training.fitting.amortized import FixpointCache


def _saved_bytes(run) -> tuple[int, set[int]]:
    seen: set[int] = set()
    total = 0

    def pack(tensor: torch.Tensor):
        nonlocal total
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return total, seen


def training_step_bytes(model: nn.Module, coords: torch.Tensor, target: torch.Tensor,
                        cache: FixpointCache | None = None) -> dict:
    """Saved-for-backward bytes of one step on (coords, target), and the bytes of the persistent cache."""
    def step():
        prediction = model(coords) if cache is None else cache.predict(model, coords, None)
        loss = torch.mean((prediction - target) ** 2)
        loss.backward(inputs=[p for p in model.parameters() if p.requires_grad])

    if cache is not None and not cache.all_valid:
        step()  # the first step solves; measure a steady-state amortized step
    graph, saved = _saved_bytes(step)
    model.zero_grad(set_to_none=True)
    # The cache costs extra only where it is not itself one of the saved tensors (full batch: it is f's output).
    persistent = 0
    if cache is not None and cache.z.untyped_storage().data_ptr() not in saved:
        persistent = cache.z.numel() * cache.z.element_size()
    return {"graph_bytes": graph, "persistent_bytes": persistent, "total_bytes": graph + persistent}
