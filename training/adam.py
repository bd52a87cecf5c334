"""The project's Adam (fits, JIIO decoders and classifiers, the Adam baseline): ``torch.optim.Adam`` itself, stepped
on the CPU without loading the compiler.

Every ``torch.optim`` optimizer imports ``torch._dynamo`` (``torch.compile``'s front end) the first time it is
built, stepped, zeroed or saved: those methods are wrapped so that a compiler tracing them would skip them.
The import takes about a second on a 2-core CPU, a third of a small ``inr fit``'s whole run (2.8-3.1 s for a
5-step fit of a 32-px image, 1.8-2.0 s without it), and nothing on a CPU compiles by default, so it has no use
for it.

:class:`Adam` is ``torch.optim.Adam`` with those four methods calling the functions the wrappers wrap
(``__wrapped__``), and with the step written out: the same operations, in the same order, as the update
``torch.optim.Adam`` applies to CPU tensors by default (its single-tensor form; the multi-tensor and fused forms
are for accelerators). ``tests/test_adam.py`` checks that parameters, moments and saved state match
``torch.optim.Adam``'s bit for bit, and that a CPU fit leaves ``torch._dynamo`` unloaded. Any other setting (a
fused or multi-tensor step, weight decay, AMSGrad, ...) goes to ``torch.optim.Adam.step`` unchanged, as does
everything when a future torch no longer exposes the wrapped functions: slower to start, never different.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer


def _unwrapped(method):
    """The function a torch wrapper that defers to ``torch._dynamo`` wraps, or the method itself."""
    return getattr(method, "__wrapped__", method)


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` (same arguments, state and ``state_dict``) that loads no compiler for a CPU step."""

    def add_param_group(self, param_group: dict) -> None:
        _unwrapped(Optimizer.add_param_group)(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _unwrapped(Optimizer.zero_grad)(self, set_to_none)

    def state_dict(self) -> dict:
        return _unwrapped(Optimizer.state_dict)(self)

    def load_state_dict(self, state_dict: dict) -> None:
        _unwrapped(Optimizer.load_state_dict)(self, state_dict)

    def _plain_step_applies(self, group: dict) -> bool:
        """Whether ``group`` takes the default CPU update written out in :meth:`step`."""
        if (group["fused"] or group["foreach"] or group["capturable"] or group["differentiable"]
                or group["amsgrad"] or group["maximize"] or group["weight_decay"] != 0
                or any(torch.is_tensor(group[key]) for key in ("lr", "eps"))
                or any(torch.is_tensor(beta) for beta in group["betas"])):
            return False
        return all(p.device.type == "cpu" and not torch.is_complex(p) and (p.grad is None or not p.grad.is_sparse)
                   for p in group["params"])

    def step(self, closure=None):
        if not all(self._plain_step_applies(group) for group in self.param_groups):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                self._plain_step(group)
        return loss

    def _plain_step(self, group: dict) -> None:
        # torch.optim.Adam's single-tensor update for CPU tensors, term by term (torch/optim/adam.py,
        # _single_tensor_adam, its branch without capturable or differentiable).
        beta1, beta2 = group["betas"]
        lr, eps = group["lr"], group["eps"]
        for param in group["params"]:
            if param.grad is None:
                continue
            grad = param.grad
            state = self.state[param]
            if len(state) == 0:
                # As torch.optim.Adam starts: the step count a float tensor on the CPU, both moments zero.
                scalar_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
                state["step"] = torch.tensor(0.0, dtype=scalar_dtype, device="cpu")
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
            step_t += 1
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = step_t.item()
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            bias_correction2_sqrt = bias_correction2**0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
