"""Training an MDEQ decoder with JIIO (Gurumurthy et al. 2021, section 3).

For each batch: JIIO finds the latent codes x* (warm-started from the codes the images had last epoch), the
equilibrium z* and the adjoint mu*. Then, with x* held fixed, one application of f at (z*, x*) is recorded and
the decoder's gradient is the implicit one, (df/dtheta)^T mu* + d cost/d theta: mu* already solves the adjoint
equation, so the backward needs no solve of its own. A Hutchinson estimate of ||J_z||_F^2 at z* is added to keep
the map contractive.

:func:`train_decoder` runs whole epochs, resumable from the state it hands to its per-epoch callback: every
epoch reseeds the random number generators from (seed, epoch), so a run resumed after epoch k continues exactly
as the uninterrupted run would have.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from inr_core.errors import UserError
from models.mdeq import MDEQDecoder
from training.adam import Adam
from training.jiio.decoder_config import DecoderConfig
from training.jiio.inference import jiio


@dataclass
class DecoderTrainingState:
    """What a run needs to continue: the decoder, its optimizer, every image's latent code, the epochs done."""
    decoder: MDEQDecoder
    optimizer: torch.optim.Optimizer
    latents: torch.Tensor  # (N, latent_dim): the JIIO codes of the training images
    epoch: int = 0
    history: list[dict] = field(default_factory=list)  # one record per finished epoch


def reconstruction_cost(decoder: MDEQDecoder, targets: torch.Tensor, mask: torch.Tensor | None = None
                        ) -> Callable[[torch.Tensor], torch.Tensor]:
    """z -> squared error of the decoded image against ``targets`` where ``mask`` is 1 (everywhere without one),
    summed per sample, so step sizes do not depend on the batch."""
    if mask is None:
        return lambda z: (decoder.decode(z) - targets).pow(2).flatten(1).sum(1)
    return lambda z: ((decoder.decode(z) - targets) * mask).pow(2).flatten(1).sum(1)


def jacobian_penalty(f_out: torch.Tensor, z_in: torch.Tensor, probes: torch.Tensor) -> torch.Tensor:
    """Hutchinson estimates of ||J||_F^2 per sample, ||J^T eps||^2 / dim with ``probes`` eps ~ N(0, I)."""
    vjp = torch.autograd.grad(f_out, z_in, probes, create_graph=True)[0]
    return vjp.pow(2).flatten(1).sum(1) / probes[0].numel()


@dataclass(frozen=True)
class Ranks:
    """This process's place in a decoder training shared by several processes (``torch.distributed``, launched by
    torchrun); one process is rank 0 of 1.

    Data parallel, as DistributedDataParallel does it, by hand: DDP's wrapper reduces gradients from hooks on the
    module's forward, and a JIIO step differentiates one application of f, not a forward. Every rank holds the
    whole decoder, optimizer and latent table; each global batch of ``world_size x batch_size`` images (one order
    for all ranks) is cut into per-rank slices; every rank infers its slice's latents by JIIO, the gradients are
    summed over the ranks before the (identical) Adam step, and the updated latents are summed into every rank's
    table at the end of the epoch (each image belongs to one rank per epoch). The Hutchinson probes are drawn for
    the whole global batch and sliced, so K ranks with batch b train the decoder one rank with batch K b would.
    """

    rank: int = 0
    world_size: int = 1

    def my_slice(self, batch_size: int) -> slice:
        """This rank's part of a global batch."""
        return slice(self.rank * batch_size, (self.rank + 1) * batch_size)

    def mean(self, value: float, device: torch.device | str | None = None) -> float:
        """``value`` averaged over the ranks: one number every rank agrees on (an epoch's time, say). ``device``
        is where the ranks' tensors live (NCCL reduces CUDA tensors only)."""
        return float(self.sum_(torch.tensor([value], dtype=torch.float64, device=device))[0]) / self.world_size

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place (on every rank)."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def image_counts(self, images: int, batch_size: int) -> list[int]:
        """How many images each rank infers per epoch."""
        counts = [0] * self.world_size
        for start in range(0, images, batch_size * self.world_size):
            global_count = min(batch_size * self.world_size, images - start)
            for rank in range(self.world_size):
                counts[rank] += max(0, min(batch_size, global_count - rank * batch_size))
        return counts


def _sum_gradients(parameters: list[torch.Tensor], ranks: Ranks) -> None:
    """Every rank's gradients summed, as one flat buffer (one collective per step, not one per tensor)."""
    if ranks.world_size == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = ranks.sum_(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for parameter in parameters:
        parameter.grad = flat[offset:offset + parameter.numel()].view_as(parameter).clone()
        offset += parameter.numel()


def train_epoch(decoder: MDEQDecoder, images: torch.Tensor, latents: torch.Tensor,
                optimizer: torch.optim.Optimizer, config: DecoderConfig,
                generator: torch.Generator | None = None,
                on_batch: Callable[[int], None] | None = None, ranks: Ranks = Ranks(),
                probes: torch.Generator | None = None, epoch: int = 0) -> dict:
    """One pass over ``images`` (N, C, S, S) in [-1, 1]; ``latents`` (N, latent_dim) are updated in place.
    The images may stay in host memory while the decoder and latents sit on a GPU: each batch is moved on its own.
    ``on_batch`` hears the number of images done so far (for progress bars). With several ``ranks`` each infers
    its slice of every global batch (see :class:`Ranks`); ``probes`` draws the Hutchinson vectors. ``epoch``
    (epochs done before this one) places the pass on the learning-rate schedule."""
    device = latents.device
    settings = config.jiio_settings()
    order = torch.randperm(len(images), generator=generator)
    probes = probes or torch.Generator().manual_seed(config.seed)
    parameters = [p for p in decoder.parameters() if p.requires_grad]
    global_batch = config.batch_size * ranks.world_size
    inferred = torch.zeros(len(images), dtype=torch.bool, device=device)
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # cost and penalty, summed over images
    for start in range(0, len(images), global_batch):
        batch = order[start:start + global_batch]
        mine = ranks.my_slice(config.batch_size)
        eps = torch.randn(len(batch), *decoder.zeros(1).shape[1:], generator=probes)[mine].to(device)
        host_index = batch[mine]  # images are indexed where they live: no round trip through the device
        index = host_index.to(device)
        optimizer.zero_grad(set_to_none=True)
        if len(index):
            targets = images[host_index.to(images.device)].to(device, non_blocking=True)
            cost = reconstruction_cost(decoder, targets)
            z0 = decoder.zeros(len(index), device=device, dtype=targets.dtype)
            with decoder.fixed_weights():  # the weights change only at the optimizer step below
                result = jiio(decoder.f_from_latent, cost, z0, latents[index], settings)
            latents[index] = result.x.detach()
            inferred[index] = True

            z_star = result.last_z.detach().requires_grad_()
            x_star = result.last_x.detach()
            f_out = decoder.f_from_latent(z_star, x_star)
            costs = cost(z_star)
            penalty = jacobian_penalty(f_out, z_star, eps.to(f_out.dtype))
            # (df/dtheta)^T mu* through f_out, plus the cost's own dependence on theta (the output head); the
            # penalty is the global batch's mean, whichever rank holds which samples.
            surrogate = (f_out * result.last_mu.detach()).sum() + costs.sum() + \
                config.jacobian_weight * penalty.sum() / len(batch)
            surrogate.backward(inputs=parameters)
            totals += torch.stack([result.cost.detach().sum(), penalty.detach().sum()]).to(totals)
        _sum_gradients(parameters, ranks)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate((epoch + start / len(images)) / config.epochs)
        optimizer.step()
        if on_batch is not None:
            on_batch(min(start + global_batch, len(images)))
    if ranks.world_size > 1:  # every image was inferred by one rank: sum the fresh codes into every table
        latents.copy_(ranks.sum_(torch.where(inferred[:, None], latents, torch.zeros_like(latents))))
        ranks.sum_(totals)
    cost, penalty = totals.tolist()
    return {"cost_per_image": cost / len(images), "jacobian_penalty": penalty / len(images),
            "lr": optimizer.param_groups[0]["lr"]}


def new_training_state(config: DecoderConfig, images: torch.Tensor,
                       device: torch.device | str | None = None) -> DecoderTrainingState:
    torch.manual_seed(config.seed)
    device = device if device is not None else images.device
    decoder = MDEQDecoder(config.decoder_preset(), out_channels=images.shape[1]).to(device)
    optimizer = Adam(decoder.parameters(), lr=config.lr)
    latents = torch.zeros(len(images), config.latent_dim, device=device, dtype=images.dtype)
    return DecoderTrainingState(decoder, optimizer, latents)


def train_decoder(config: DecoderConfig, images: torch.Tensor, state: DecoderTrainingState | None = None,
                  on_epoch: Callable[[DecoderTrainingState], None] | None = None,
                  on_batch: Callable[[int, int], None] | None = None,
                  device: torch.device | str | None = None, ranks: Ranks = Ranks(),
                  stop_after: int | None = None) -> DecoderTrainingState:
    """Train (or continue training) until ``config.epochs`` epochs are done, on ``device`` (default: where the
    images are; they may stay on the host). ``on_epoch`` gets the state after every epoch (to write a
    checkpoint); ``on_batch`` gets (epoch index, images done in it). Several ``ranks`` share each epoch
    (:class:`Ranks`); every rank must call this with the same images, config and state. ``stop_after`` ends
    the call once that many epochs are done, on the learning-rate schedule of ``config.epochs``."""
    state = state or new_training_state(config, images, device)
    if len(state.latents) != len(images):
        raise ValueError(f"the run holds latents for {len(state.latents)} images, the data has {len(images)}")
    state.decoder.train()
    while state.epoch < min(config.epochs, stop_after or config.epochs):
        epoch = state.epoch
        # Batch order and Hutchinson probes from (seed, epoch): the same on resume as straight through.
        order = torch.Generator().manual_seed(config.seed * 100_003 + epoch + 1)
        probes = torch.Generator().manual_seed(config.seed * 100_003 + epoch + 500_009)
        started = time.perf_counter()
        record = train_epoch(state.decoder, images, state.latents, state.optimizer, config, order,
                             on_batch=None if on_batch is None else (lambda done, e=epoch: on_batch(e, done)),
                             ranks=ranks, probes=probes, epoch=epoch)
        record.update(epoch=epoch + 1, seconds=time.perf_counter() - started)
        _check_finite(state, record)
        state.history.append(record)
        state.epoch = epoch + 1
        if on_epoch is not None:
            on_epoch(state)
    state.decoder.eval()
    return state


# The epoch total a timed first epoch is run under: its learning rate stays within 1% of lr on the cosine, as the
# first epoch of any long run's does, until the budget fixes how many epochs there will be.
UNBOUNDED_EPOCHS = 1_000_000


def epochs_within(budget_seconds: float, first_epoch_seconds: float, done_before: int, cap: int) -> int:
    """The epoch total to train to when a run that had ``done_before`` epochs has just spent
    ``first_epoch_seconds`` on one more and may spend ``budget_seconds`` in all: as many equal epochs as fit
    (the timed one included, so at least done_before + 1), never more than ``cap``."""
    fit = max(1, int(budget_seconds / max(first_epoch_seconds, 1e-9)))
    return max(done_before + 1, min(cap, done_before + fit))


class TrainingDiverged(UserError):
    """An epoch left a NaN or infinite cost, weight or latent: the recipe failed, not the machine."""


def _check_finite(state: DecoderTrainingState, record: dict) -> None:
    """Stop at the first epoch that leaves a NaN or infinite cost, weight or latent: it is never handed on (so
    never saved), and a decoder trained further from it would only restore black images."""
    finite = math.isfinite(record["cost_per_image"]) and bool(torch.isfinite(state.latents).all()) and \
        all(bool(torch.isfinite(p).all()) for p in state.decoder.parameters())
    if not finite:
        raise TrainingDiverged(f"decoder training diverged in epoch {record['epoch']} (cost per image "
                        f"{record['cost_per_image']:.3g}); try a smaller --lr")
