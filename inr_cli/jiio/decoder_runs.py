"""Getting a JIIO-MDEQ decoder for `inr jiio-invert`: load a checkpoint, or train one on a collection (writing
OUT/decoder.pt atomically after every epoch, resumable with --resume), and picking the test images and the
masks that say which of their pixels an inpainting fills.

Without --images the test images are the last --count images of the training collection, which training leaves
out: a decoder is never scored on the images it was trained on.

Images holding NaN are refused as they are read (:mod:`inr_cli.media.datasets`), before any training or
restoring. A fresh training run that fails takes its decoder.pt with it, so a file there is always a decoder that
trained without error (or, after Ctrl-C, the last finished epoch, for --resume).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from inr_cli.media.datasets import _square, image_sizes, load_images, pixel_size
from inr_cli.media.images import IMAGE_SUFFIXES, read_image
from inr_cli.files import atomic_write_bytes
from inr_cli.progress import counter_progress
from inr_cli.run_folder import refuse_changed_settings, refuse_replacing_another_run
from inr_cli.sample import read_checkpoint, saved_epoch
from models.mdeq import MDEQDecoder
from training.fitting.checkpoint import serialize
from training.jiio.channels import matched_with_note
from training.jiio.decoder_checkpoint import decoder_from_payload, decoder_payload, training_state_from_payload
from inr_core.errors import InvalidSetting, RefusedOnEveryRank, UserError
from training.jiio.decoder_training import (UNBOUNDED_EPOCHS, DecoderConfig, DecoderTrainingState, Ranks,
                                           TrainingDiverged, epochs_within, train_decoder)
from training.jiio.invert_config import DecoderSource
from training.jiio.latent_density import fit_gaussian_mixture
from training.jiio.run_record import data_digest, other_data, recorded_path, unchecked_data_note

DECODER_FILE = "decoder.pt"


@dataclass
class DecoderRun:
    decoder: MDEQDecoder
    config: DecoderConfig
    checkpoint: Path
    payload: dict
    trained_here: bool
    epochs_trained_now: int = 0
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        config = self.config
        return {
            "checkpoint": str(self.checkpoint), "trained_here": self.trained_here,
            "epochs": self.payload.get("epoch"), "epochs_trained_now": self.epochs_trained_now,
            "preset": config.preset, "image_size": config.image_size, "channels": config.channels,
            "latent_dim": config.latent_dim, "params": sum(p.numel() for p in self.decoder.parameters()),
            "data": self.payload.get("data"), "history": self.payload.get("history"),
        }


def _training_split(images: torch.Tensor, train_count: int | None, held_out: int, data: str) -> torch.Tensor:
    available = len(images) - held_out
    if available < 2:  # the latent density drawn from by `inr sample` needs two codes at least
        left = "none" if available < 1 else "only 1"
        raise UserError(f"{data}: {len(images)} images leave {left} for training after holding out {held_out} for "
                        "testing (training needs 2); lower --count or pass test images with --images")
    if train_count is not None:
        if train_count < 2:
            raise UserError(f"{data}: --train-count {train_count} is too few; training needs 2 images at least")
        if train_count > available:
            raise UserError(f"{data}: --train-count {train_count} exceeds the {available} images left after "
                            f"holding out {held_out} for testing")
        return images[:train_count]
    return images[:available]


def obtain_decoder(source: DecoderSource, held_out: int, out: Path, device: torch.device, *,
                   show_progress: bool, ranks: Ranks = Ranks()) -> DecoderRun:
    """Load ``source.checkpoint``, or train on ``source.data`` leaving its last ``held_out`` images for testing.
    ``source`` is validated (:meth:`training.jiio.invert_config.InvertConfig.validate`). Under torchrun every
    rank trains its share of each batch (``ranks``); rank 0 alone writes the checkpoint."""
    if source.data is None:
        payload = read_checkpoint(source.checkpoint)
        decoder, config = decoder_from_payload(payload, str(source.checkpoint), device)
        return DecoderRun(decoder, config, source.checkpoint, payload, trained_here=False)
    return _train(source, held_out, out, device, show_progress, ranks)


def _train(source: DecoderSource, held_out: int, out: Path, device: torch.device, show_progress: bool,
           ranks: Ranks) -> DecoderRun:
    config = source.training
    target = out / DECODER_FILE
    state, notes, trained_on = None, [], None
    try:  # every rank reads the same files here, before they connect: a refusal is every rank's, said once
        if source.resume:
            resume_from = source.checkpoint or target
            refuse_replacing_another_run(target, resume_from)
            payload = read_checkpoint(resume_from)
            state, saved = training_state_from_payload(payload, str(resume_from), device)
            trained_on = payload.get("data") or {}
            # --train-batch-size is per process: another number of them would continue with another global batch.
            trained_in = trained_on.get("world_size", ranks.world_size)
            if trained_in != ranks.world_size:
                how = "without torchrun" if trained_in == 1 else f"with torchrun --nproc_per_node={trained_in}"
                raise UserError(f"{resume_from}: the run being resumed trained in {trained_in} process"
                                f"{'' if trained_in == 1 else 'es'}, this one runs {ranks.world_size}, which would "
                                f"change its global batch (--train-batch-size is per process); resume it {how}")
            # The architecture and the optimisation recipe come from the run being resumed; only the goal moves.
            refuse_changed_settings(config, saved, source.given, resume_from)
            config = replace(saved, epochs=config.epochs)
            notes.append(f"resumed from {resume_from} after epoch {state.epoch}")
        elif target.exists():  # every rank looks (before any of them can have written it), so every rank stops
            raise UserError(f"{target} exists: add --resume to continue that run, --overwrite to replace it, or "
                            "choose another --out")
    except (RefusedOnEveryRank, InvalidSetting):
        raise
    except UserError as error:
        raise RefusedOnEveryRank(str(error)) from None
    start_epoch = state.epoch if state is not None else 0
    try:
        return _train_into(target, source, config, state, trained_on, notes, held_out, device, show_progress, ranks)
    except TrainingDiverged:
        # The recipe failed: --resume, which keeps it, would diverge again, and a fresh run with a smaller --lr
        # needs the folder free. A fresh run's epochs go with it.
        if state is None and ranks.rank == 0:
            target.unlink(missing_ok=True)
        raise
    except Exception as error:
        # Anything else (a full disk, say) leaves what the run saved: each epoch's checkpoint is complete (written
        # atomically), and --resume continues it once the cause is dealt with. (--overwrite's caller removes it,
        # to put the run it replaced back.)
        saved = saved_epoch(target) if ranks.rank == 0 else 0
        if saved > start_epoch:
            error.add_note(f"{target} holds epoch {saved} of this run, saved before the failure; add --resume to "
                           "continue from it")
        raise


def _train_into(target: Path, source: DecoderSource, config: DecoderConfig, state: DecoderTrainingState | None,
                trained_on: dict | None, notes: list[str], held_out: int, device: torch.device, show_progress: bool,
                ranks: Ranks) -> DecoderRun:
    """Train (``state``: continue, with ``trained_on`` the resumed checkpoint's description of its data)."""
    images = load_images(source.data, config.image_size)
    train = _training_split(images, source.train_count, held_out, source.data)  # stays in host memory
    digest = data_digest(train)  # hashed once, as held: what a resume and a later --decoder run compare
    if state is not None and len(state.latents) != len(train):
        raise UserError(f"{source.data}: the run being resumed trained on {len(state.latents)} images, this data "
                        f"gives {len(train)}; use the same --data and --train-count")
    # Its latents belong to the images it trained on: other images of the same count would go on from them.
    # (A checkpoint from before digests were recorded cannot be checked.)
    if state is not None and other_data(trained_on, digest):
        raise UserError(f"{source.data}: these are not the images the run being resumed trained on "
                        f"({trained_on.get('source')}); use the same --data and --train-count")
    data_info = {"source": recorded_path(source.data), "digest": digest, "train_count": len(train),
                 "total": len(images), "channels": int(images.shape[1]), "size": config.image_size,
                 "world_size": ranks.world_size, "images_per_rank": ranks.image_counts(len(train), config.batch_size)}
    start_epoch = state.epoch if state is not None else 0

    def save(current, density=None):
        if ranks.rank == 0:  # every rank holds the same state; one writes it
            atomic_write_bytes(target, serialize(decoder_payload(current, config, data_info, density)))

    batches = -(-len(train) // config.batch_size)
    total = max(0, config.epochs - start_epoch) * len(train)
    with counter_progress(f"train decoder ({len(train)} images)", total, show_progress) as update:
        def on_batch(epoch, done):
            if update:
                update((epoch - start_epoch) * len(train) + done, f"epoch {epoch + 1}/{config.epochs}")

        def on_epoch(current):
            save(current)
            if update:
                last = current.history[-1]
                update((current.epoch - start_epoch) * len(train),
                       f"epoch {current.epoch}/{config.epochs} cost {last['cost_per_image']:.3g}")

        each_batch = on_batch if batches > 1 else None
        if source.train_minutes is not None and start_epoch < config.epochs:
            # Time one epoch, then train as many more as the budget holds (the same number on every rank).
            state = train_decoder(replace(config, epochs=UNBOUNDED_EPOCHS), train, state, on_epoch=on_epoch,
                                  on_batch=each_batch, device=device, ranks=ranks, stop_after=start_epoch + 1)
            seconds = ranks.mean(state.history[-1]["seconds"], device)
            budget = source.train_minutes * 60
            asked = config.epochs - start_epoch
            config = replace(config, epochs=epochs_within(budget, seconds, start_epoch, config.epochs))
            notes.append(f"--train-minutes {source.train_minutes:g}: the first epoch took {seconds:.1f} s, so "
                         f"{config.epochs - start_epoch} of the {asked} epochs asked for were trained")
            if update:
                update(len(train), total=(config.epochs - start_epoch) * len(train))
        state = train_decoder(config, train, state, on_epoch=on_epoch, on_batch=each_batch, device=device,
                              ranks=ranks)
    density = fit_gaussian_mixture(state.latents.detach().cpu(), seed=config.seed, notes=notes)
    save(state, density)  # the final checkpoint also carries the latent density that `inr sample` draws from
    payload = decoder_payload(state, config, data_info, density)
    return DecoderRun(state.decoder.eval(), config, target, payload, trained_here=True,
                      epochs_trained_now=state.epoch - start_epoch, notes=notes)


def test_images(sources: list[str] | None, run: DecoderRun, count: int, channels: int
                ) -> tuple[torch.Tensor, dict, list[str]]:
    """(images (N, C, S, S) on the CPU, a description, notes): from --images, else the held-out end of the
    decoder's training collection."""
    size, notes = run.config.image_size, []
    if sources:
        parts = [load_images(s, size, limit=count) for s in sources]  # only what --count keeps
        images = torch.cat([matched_with_note(p, channels, "decoder", notes) for p in parts])[:count]
        return images, {"source": list(sources), "held_out_from_training": False}, notes
    data = (run.payload.get("data") or {}).get("source")
    if not data or not (data.startswith("skimage:") or Path(data).exists()):
        raise UserError("give test images with --images (the decoder's training data "
                        f"{'is not recorded' if not data else data + ' is gone'})")
    images = load_images(data, size)
    trained = int(run.payload["data"].get("train_count", 0))
    if trained + count > len(images):
        raise UserError(f"{data}: only {len(images) - trained} images follow the {trained} the decoder was trained "
                        f"on; lower --count or pass --images")
    # Only the data trained on has held-out images: another file now at that path (or the same one changed)
    # would be scored as if the decoder had never seen it.
    if other_data(run.payload["data"], data_digest(images[:trained])):
        raise UserError(f"{data}: not the images the decoder was trained on (the file has changed since); give "
                        "test images with --images")
    notes += unchecked_data_note(run.payload["data"], "held-out test images")
    first = len(images) - count
    images = matched_with_note(images[first:], channels, "decoder", notes)
    return images, {"source": [data], "held_out_from_training": True, "first_index": first}, notes


def check_inputs(sources: list[str]) -> None:
    """Refuse, in one line, a test image or mask path that does not exist or cannot be read: checked before a
    decoder trains (minutes), where it would otherwise be found only after training."""
    for source in sources:
        path = Path(source)
        if source.startswith("skimage:"):
            continue
        if not path.exists():
            raise UserError(f"{source}: no such file or folder")
        if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            raise UserError(f"{source}: cannot be read (permission denied)")


def observed_mask(path: str, size: int) -> torch.Tensor:
    """One --mask file as (1, 1, S, S): 1 where a pixel is observed, 0 where it is to be filled."""
    if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{path}: a mask is an image file (white marks the pixels to fill)")
    pixels = read_image(path, alpha="keep").pixels.numpy()  # (H, W, C) in [0, 1]
    # Brighter than mid-gray over the colour channels; a transparent pixel (alpha below half) marks nothing,
    # whatever its colour (editors store transparency as white or black alike).
    value = pixels[..., :-1].mean(-1) * (pixels[..., -1] >= 0.5) if pixels.shape[2] in (2, 4) else pixels.mean(-1)
    missing = torch.from_numpy(_square(value[..., None].astype(np.float32), size)[..., 0] > 0.5)[None, None]
    if not bool(missing.any()):
        raise UserError(f"{path}: the mask marks no pixel to fill at the decoder's {size} px (white marks "
                        "what is missing)")
    if bool(missing.all()):
        raise UserError(f"{path}: the mask marks every pixel to fill at the decoder's {size} px, leaving nothing "
                        "observed to restore from (white marks only what is missing)")
    return (~missing).float()


def sizes_of_test_images(sources: list[str], count: int, first: int = 0) -> list[tuple[str, tuple[int, int] | None]]:
    """(name, (width, height)) of the test images :func:`test_images` reads from ``sources``: their first
    ``count`` in order, or with ``first`` (one source, the held-out end of a training collection) the ``count``
    from that index. Read from headers and array shapes, so masks can be checked before a decoder trains."""
    if first:
        return image_sizes(sources[0])[first:first + count]
    return [size for source in sources for size in image_sizes(source, limit=count)][:count]


def check_masks(paths: list[str], count: int, sizes: list[tuple[str, tuple[int, int] | None]] | None = None) -> None:
    """Refuse --masks that do not pair with the ``count`` test images (one for all, or one each), or, where the
    test images' ``sizes`` are known (:func:`sizes_of_test_images`), a mask of another size than its image."""
    if len(paths) not in (1, count):
        raise UserError(f"--mask: give one mask for all {count} test images or one for each, not {len(paths)}")
    for mask, (image, image_size) in zip(paths * count if len(paths) == 1 else paths, sizes or []):
        mask_size = pixel_size(mask)
        if mask_size and image_size and mask_size != image_size:
            raise UserError(f"{mask}: the mask is {mask_size[0]}x{mask_size[1]} but its image {image} is "
                            f"{image_size[0]}x{image_size[1]}; a mask must have its image's size")


def observed_masks(paths: list[str], size: int, count: int,
                   sizes: list[tuple[str, tuple[int, int] | None]] | None = None) -> torch.Tensor:
    """--mask files as (N or 1, 1, S, S), 1 where a test image's pixel is observed, 0 where it is to be filled.

    A mask is an image whose white pixels (brighter than mid-gray once averaged over its colour channels) mark
    what is missing, the convention of scikit-image's and OpenCV's inpainting. It goes through the same resize and
    centre crop to the decoder's square as its image, so a mask of its image's size covers the same pixels; where
    the test images' ``sizes`` are known (files, folders, arrays), a mask of another size is refused. One mask
    serves every test image; several pair with the test images in order."""
    check_masks(paths, count, sizes)
    return torch.cat([observed_mask(path, size) for path in paths])
