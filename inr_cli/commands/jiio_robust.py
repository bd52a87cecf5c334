"""`inr jiio-robust`: train an MDEQ classifier on labelled images, clean or adversarially (PGD, or JIIO's
augmented fixpoint), and measure it on held-out images clean and under both attacks.

The options become one :class:`inr_cli.jiio.robust_options.RobustRun` holding a
:class:`training.jiio.robust.config.RobustConfig`, validated once before anything is read (setting errors phrased
as the flags that set them); :mod:`inr_cli.jiio.robust_runs` runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from inr_cli.errors import flag_for, given_options
from inr_cli.jiio.robust_options import RobustRun
from inr_core.errors import InvalidSetting, check
from training.jiio.robust.config import ATTACKS, AttackSettings, RobustConfig

# Config fields whose flag is not simply their last name with dashes.
FLAGS = {"attack.jiio_iterations": "--jiio-iters", "eval_batch_size": "--eval-batch-size"}

ROBUST_EXAMPLES = """
[bold]Examples[/bold]

  [dim]# JIIO adversarial training on 5,000 Fashion-MNIST images (Debian: dataset-fashion-mnist), L2 eps 1[/dim]
  inr jiio-robust --data /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz --train-count 5000 \\
      --adversary jiio --epsilon 1 --epochs 5 --out runs/robust-jiio
  [dim]# the PGD-trained and clean-trained baselines, tested on the official test images[/dim]
  FASHION=/usr/share/datasets/fashion-mnist
  inr jiio-robust --data $FASHION/train-images-idx3-ubyte.gz --train-count 5000 --adversary pgd \\
      --test-data $FASHION/t10k-images-idx3-ubyte.gz --out runs/robust-pgd
  inr jiio-robust --data $FASHION/train-images-idx3-ubyte.gz --train-count 5000 --adversary none --out runs/clean
  [dim]# attack a trained classifier again, harder (more PGD steps), on a folder of class sub-folders[/dim]
  inr jiio-robust --classifier runs/robust-jiio/classifier.pt --test-data photos/ --pgd-steps 100 --out runs/eval
  [dim]# continue an interrupted (or finished) run up to 10 epochs[/dim]
  inr jiio-robust --data $FASHION/train-images-idx3-ubyte.gz --train-count 5000 --epochs 10 --resume \\
      --out runs/robust-jiio
"""


# The options a resumed run takes from its checkpoint (RobustConfig field: parameter name): the classifier, its
# training recipe and its adversary's attack, which the measurement after training uses too. (An evaluation-only
# run uses the --seed and --batch-size given, and the classifier's where they are not.)
RESUMED_FROM_CHECKPOINT = {"preset": "preset", "image_size": "image_size", "adversary": "adversary",
                           "batch_size": "batch_size", "lr": "lr", "seed": "seed", "attack.epsilon": "epsilon",
                           "attack.pgd_steps": "pgd_steps", "attack.pgd_step_factor": "pgd_step_factor",
                           "attack.jiio_iterations": "jiio_iters", "attack.jiio_step_factor": "jiio_step_factor"}


def jiio_robust(
    ctx: typer.Context,
    data: Annotated[Optional[str], typer.Option(help="Labelled training images: an IDX image file (labels found "
                                                "beside it, or --labels), a folder of class sub-folders, or an .npz "
                                                "with 'images' and 'labels'.", show_default=False)] = None,
    labels: Annotated[Optional[str], typer.Option(help="IDX label file for an IDX --data, when not beside it.",
                                                  show_default=False)] = None,
    classifier: Annotated[Optional[Path], typer.Option(help="A classifier.pt from an earlier run: attack it (no "
                                                       "training), or with --resume continue training it.",
                                                       show_default=False)] = None,
    adversary: Annotated[str, typer.Option(help="Train on: none (clean images), pgd (PGD's adversarial examples) or "
                                           "jiio (the JIIO attack's, with the gradient from its fixpoint).")]
        = RobustConfig.adversary,
    epsilon: Annotated[float, typer.Option(help="L2 radius of the attacks, pixels in [0, 1].")]
        = AttackSettings.epsilon,
    pgd_steps: Annotated[int, typer.Option(help="PGD steps (each a full equilibrium solve and exact backward).")]
        = AttackSettings.pgd_steps,
    pgd_step_factor: Annotated[float, typer.Option(help="PGD step = this x epsilon / --pgd-steps.")]
        = AttackSettings.pgd_step_factor,
    jiio_iters: Annotated[int, typer.Option(help="Iterations of the JIIO attack's augmented fixpoint.")]
        = AttackSettings.jiio_iterations,
    jiio_step_factor: Annotated[float, typer.Option(help="JIIO step = this x epsilon / --jiio-iters (a tenth of "
                                                    "it for the last quarter).")] = AttackSettings.jiio_step_factor,
    attacks: Annotated[str, typer.Option(help="Attacks to measure on the test images: pgd, jiio or pgd,jiio.")]
        = ",".join(ATTACKS),
    epochs: Annotated[int, typer.Option(help="Training epochs (with --resume: the total to reach).")]
        = RobustConfig.epochs,
    resume: Annotated[bool, typer.Option(help="Continue training the run in --classifier, or OUT/classifier.pt.")]
        = False,
    preset: Annotated[str, typer.Option(help="Classifier size: tiny (tests), small (28 px, CPU) or large (32 px, "
                                        "GPU).")] = RobustConfig.preset,
    image_size: Annotated[Optional[int], typer.Option(help="Override the preset's image side (images are resized).",
                                                      show_default=False)] = None,
    train_count: Annotated[Optional[int], typer.Option(help="Images to train on (the first ones). Default: all but "
                                                       "the --test-count held out after them.",
                                                       show_default=False)] = None,
    test_data: Annotated[Optional[str], typer.Option(help="Labelled test images (same forms as --data). Default: the "
                                                     "--test-count images after the training ones.",
                                                     show_default=False)] = None,
    test_labels: Annotated[Optional[str], typer.Option(help="IDX label file for an IDX --test-data.",
                                                       show_default=False)] = None,
    test_count: Annotated[int, typer.Option(help="Test images to measure.")] = RobustRun.test_count,
    batch_size: Annotated[int, typer.Option(help="Images per training batch (with --classifier alone: attacked "
                                            "together; default there the classifier's).")] = RobustConfig.batch_size,
    eval_batch_size: Annotated[Optional[int], typer.Option(help="Images attacked together (the time per batch is "
                                                           "reported). Default: --batch-size.",
                                                           show_default=False)] = None,
    lr: Annotated[float, typer.Option(help="Learning rate (Adam).")] = RobustConfig.lr,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = RobustRun.device,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, order and the attacks' random starts (with "
                                      "--classifier alone: the random starts; default there the classifier's).")]
        = RobustConfig.seed,
    out: Annotated[Optional[Path], typer.Option(help="Run folder. Default: runs/jiio-robust-ADVERSARY-TIME.",
                                                show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the run already in --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON line on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
):
    """Adversarial training of an MDEQ classifier with JIIO (the attack solved by the same augmented fixpoint as
    `inr jiio-invert`, ascending the loss) or PGD, and a measurement under both attacks: writes classifier.pt,
    report.json (accuracies clean / PGD / JIIO, time per attacked batch, residuals, perturbation norms) and
    adversarial.png (adversarial examples and their perturbations)."""
    attack = AttackSettings(epsilon=epsilon, pgd_steps=pgd_steps, pgd_step_factor=pgd_step_factor,
                            jiio_iterations=jiio_iters, jiio_step_factor=jiio_step_factor)
    config = RobustConfig(preset=preset, image_size=image_size, adversary=adversary, attack=attack, epochs=epochs,
                          batch_size=batch_size, lr=lr, seed=seed)
    chosen = tuple(name.strip() for name in attacks.split(",") if name.strip())
    run = RobustRun(config=config, data=data, labels=labels, classifier=classifier, resume=resume,
                    train_count=train_count, test_data=test_data, test_labels=test_labels, test_count=test_count,
                    attacks=chosen, eval_batch_size=eval_batch_size, device=device, overwrite=overwrite,
                    given=given_options(ctx, RESUMED_FROM_CHECKPOINT))
    try:
        validate(run, out)
    except InvalidSetting as error:
        raise InvalidSetting(flag_for(error.setting, FLAGS), error.problem) from None
    from inr_cli.jiio.robust_runs import run_jiio_robust  # the run's machinery, torch with it, loads only now

    raise typer.Exit(run_jiio_robust(run, out=out, show_progress=not quiet, as_json=as_json))


def validate(run: RobustRun, out: Path | None) -> None:
    """Every setting no run can use, before anything is read."""
    run.config.validate()
    check(bool(run.attacks) and all(a in ATTACKS for a in run.attacks) and len(set(run.attacks)) == len(run.attacks),
          "attacks", f"must name each of {', '.join(ATTACKS)} at most once, comma-separated")
    check(run.data is not None or run.classifier is not None or run.resume, "data",
          "is needed: the labelled images to train on (or --classifier to attack a trained one)")
    check(not (run.data is not None and run.classifier is not None and not run.resume), "classifier",
          "and --data exclude each other (add --resume to continue training that classifier)")
    check(not (run.resume and run.overwrite), "resume", "and --overwrite exclude each other: choose one")
    check(not run.resume or out is not None or run.classifier is not None, "resume",
          "needs --out (the run folder to continue) or --classifier")
    check(run.labels is None or run.data is not None, "labels", "goes with --data")
    check(run.test_labels is None or run.test_data is not None, "test_labels", "goes with --test-data")
    check(run.test_count >= 1, "test_count", f"must be at least 1, got {run.test_count}")
    check(run.train_count is None or run.train_count >= 1, "train_count", f"must be at least 1, got {run.train_count}")
    check(run.eval_batch_size is None or run.eval_batch_size >= 1, "eval_batch_size",
          f"must be at least 1, got {run.eval_batch_size}")
