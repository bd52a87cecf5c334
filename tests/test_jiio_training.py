"""Training the small MDEQ decoder with JIIO lowers the reconstruction cost of the images it trains on, and the
latent codes it keeps describe those images."""

import torch
from skimage import data

from models.mdeq import MDEQDecoder
from training.jiio.decoder_config import DecoderConfig
from training.schedule import COSINE_FLOOR
from training.jiio.decoder_training import reconstruction_cost, train_decoder, train_epoch


def test_a_few_epochs_lower_the_reconstruction_cost():
    torch.manual_seed(0)
    camera = torch.from_numpy(data.camera()).float() / 255 * 2 - 1
    images = torch.stack([camera[30 * i:30 * i + 16, 60 + 25 * i:76 + 25 * i] for i in range(16)])[:, None]
    config = DecoderConfig(image_size=16, channels=[8, 16], latent_dim=8, batch_size=8, jiio_iterations=8,
                           jiio_step_size=0.05, anderson_memory=4, lr=1e-2, lr_schedule="constant")
    decoder = MDEQDecoder(config.decoder_preset(), out_channels=1)
    latents = torch.zeros(len(images), config.latent_dim)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    costs = [train_epoch(decoder, images, latents, optimizer, config, torch.Generator().manual_seed(e))
             ["cost_per_image"] for e in range(30)]
    # Measured: 79.8 -> 5.7 summed squared error per 16x16 image (values in [-1, 1]) over 30 epochs.
    assert costs[-1] < 0.3 * costs[0], costs
    # The kept codes decode (at their solved equilibria) about as well as the last epoch's JIIO found, and far
    # closer to their own images than the zero code. Measured: 5.9 and 137 against 5.7 in the last epoch.
    cost = reconstruction_cost(decoder, images)
    with torch.no_grad():
        kept = float(cost(decoder.solve(latents)[0]).mean())
        zero = float(cost(decoder.solve(torch.zeros_like(latents))[0]).mean())
    assert kept < 1.5 * costs[-1] and kept < 0.1 * zero, (kept, zero, costs[-1])


def test_the_cosine_schedule_falls_from_the_rate_to_its_floor_batch_by_batch():
    config = DecoderConfig(lr=4e-3, epochs=4)
    rates = [config.learning_rate(p / 8) for p in range(9)]
    assert rates[0] == 4e-3 and abs(rates[4] - 4e-3 * (1 + COSINE_FLOOR) / 2) < 1e-12
    assert abs(rates[-1] - COSINE_FLOOR * 4e-3) < 1e-12
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert DecoderConfig(lr=4e-3, lr_schedule="constant").learning_rate(0.9) == 4e-3
    # A run sets the rate of every step: the last steps of its 2 epochs (2 batches each) sit at 1/4 and 3/4.
    images = torch.linspace(-1, 1, 4 * 64).reshape(4, 1, 8, 8)
    short = DecoderConfig(image_size=8, channels=[4], latent_dim=4, batch_size=2, epochs=2, jiio_iterations=2, lr=4e-3)
    state = train_decoder(short, images)
    assert [round(r["lr"], 12) for r in state.history] == [round(config.learning_rate(p), 12) for p in (0.25, 0.75)]
    # Stopped after one epoch and continued, a run stays on its schedule and ends where the straight run ends.
    halfway = train_decoder(short, images, stop_after=1)
    assert halfway.epoch == 1
    resumed = train_decoder(short, images, halfway)
    assert torch.equal(resumed.latents, state.latents)
