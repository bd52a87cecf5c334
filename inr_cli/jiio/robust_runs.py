"""The `inr jiio-robust` run: get a classifier (train one on a labelled collection, saving OUT/classifier.pt
atomically after every epoch and resumable with --resume, or load one), measure it on held-out images clean and
under PGD and JIIO attacks, and write report.json and adversarial.png. The options and their validation are in
:mod:`inr_cli.commands.jiio_robust`.

Held-out images are the --test-count images that follow the training ones in --data (the classifier never saw
them), or the first --test-count of --test-data. The run folder belongs to this process while it runs
(:class:`inr_cli.run_folder.RunFolder`); Ctrl-C stops between batches (of training or of the attacks), keeping the
last finished epoch: a measurement that was stopped writes no report.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from inr_cli.figures import write_image_grid
from inr_cli.files import atomic_write_bytes, atomic_write_text
from inr_cli.interrupts import StopRequest
from inr_cli.jiio.robust_options import RobustRun
from inr_cli.media.labelled import LabelledImages, load_labelled
from inr_cli.progress import counter_progress, stderr_console
from inr_cli.reports import REPORT_VERSION, to_json, versions
from inr_cli.run_folder import (SET_ASIDE, RunFolder, refuse_changed_settings, refuse_replacing_another_run,
                                refuse_setting_aside_an_input)
from inr_cli.sample import read_checkpoint, saved_epoch
from inr_core.errors import UserError
from training.fitting.checkpoint import serialize
from training.fitting.devices import resolve_device
from training.jiio.channels import matched_with_note
from training.jiio.robust.checkpoint import classifier_from_payload, classifier_payload, training_state_from_payload
from training.jiio.robust.classifier_training import (Evaluation, EvaluationInterrupted, TrainingInterrupted,
                                                      evaluate, new_state, train_classifier)
from training.jiio.robust.config import RobustConfig
from training.jiio.run_record import data_digest, other_data, recorded_path, unchecked_data_note

CLASSIFIER_FILE = "classifier.pt"
REPORT = "report.json"
PICTURE = "adversarial.png"
PICTURE_COUNT = 16


def run_jiio_robust(run: RobustRun, *, out: Path | None, show_progress: bool, as_json: bool) -> int:
    device = resolve_device(run.device)
    out = out or Path("runs") / f"jiio-robust-{run.config.adversary}-{time.strftime('%Y%m%d-%H%M%S')}"
    refuse_setting_aside_an_input(run.classifier, out, run.overwrite, "the --classifier this run attacks")
    folder = RunFolder(out, own_files=(CLASSIFIER_FILE,)).claim(overwrite=run.overwrite, resume=run.resume)
    try:
        with StopRequest() as stop:
            try:
                return _run(run, out, device, show_progress, as_json, stop)
            except TrainingInterrupted as stopped:
                stderr_console.print(_interrupted_training(run, out, stopped.epoch), markup=False, soft_wrap=True)
                return stop.exit_code
            except EvaluationInterrupted:
                stderr_console.print(_interrupted_attacking(run, out), markup=False, soft_wrap=True)
                return stop.exit_code
            except Exception as error:
                if run.overwrite:
                    # A replacement that failed takes what it wrote with it (the classifier it trained, its
                    # picture), so the run it replaced comes back whole rather than beside a folder that is
                    # neither run. One stopped by Ctrl-C keeps its last epoch for --resume.
                    for name in (CLASSIFIER_FILE, PICTURE):
                        (out / name).unlink(missing_ok=True)
                    error.__notes__ = [f"the run that was in {out} is back as it was"]  # not this run's classifier
                raise
    finally:
        folder.release()


def _resume_flags(run: RobustRun, target: Path) -> str:
    """How the command is given again to continue the run saved in ``target``: --resume excludes --overwrite, and a
    --classifier elsewhere would be refused for replacing ``target``, the run's checkpoint now."""
    if run.overwrite:
        return "--resume in place of --overwrite"
    if run.classifier is not None and Path(run.classifier).resolve() != target.resolve():
        return "--resume and without --classifier"
    return "--resume"


def _interrupted_training(run: RobustRun, out: Path, epoch: int) -> str:
    """The line for Ctrl-C during training (``epoch`` epochs finished): what is saved, and what can be done."""
    target = out / CLASSIFIER_FILE
    if target.is_file():
        return f"inr: interrupted in epoch {epoch + 1} ({target} holds epoch {epoch}); resume with " + \
            _resume_flags(run, target)
    # Nothing saved in OUT: no run to --resume there. The command given again starts over (or, from a --classifier
    # elsewhere, continues it again); a run that --overwrite set aside is put back as it was when the folder is
    # released.
    kept = [f"{run.classifier} still holds epoch {epoch}"] if run.classifier is not None else []
    if run.overwrite and (out / SET_ASIDE).is_dir():
        kept.append(f"the run that was in {out} is back as it was")
    where = f" in {out}" if run.classifier is not None else ""
    return (f"inr: interrupted in epoch {epoch + 1} (nothing saved{where} yet"
            f"{''.join('; ' + line for line in kept)}); run the command again")


def _interrupted_attacking(run: RobustRun, out: Path) -> str:
    """The line for Ctrl-C during the attacks: no report is written; what is kept, and how to measure it."""
    if not run.trains():
        return (f"inr: interrupted while attacking, before the report (nothing written); run the command again to "
                f"measure {run.classifier}")
    target = out / CLASSIFIER_FILE
    saved = saved_epoch(target)
    epoch = f", epoch {saved}" if saved else ""
    return (f"inr: interrupted while attacking, before the report ({target} holds the trained classifier{epoch}); "
            f"run the command again with {_resume_flags(run, target)} to measure it")


def _load_split(run: RobustRun, size: int, trained_on: dict | None) -> tuple[LabelledImages | None, LabelledImages]:
    """(training images or None, test images) from --data / --test-data, or the classifier's recorded data."""
    source = run.data or (trained_on or {}).get("source")
    labels = run.labels if run.data else (trained_on or {}).get("labels")
    # The classifier's recorded data, where it is needed (to continue training on, or to hold test images out of);
    # a --data that is missing is the loader's to report.
    if run.data is None and (run.trains() or run.test_data is None) and (source is None or not Path(source).exists()):
        wanted = "the training data with --data" if run.trains() else "test images with --test-data"
        raise UserError(f"give {wanted} (the classifier's training data "
                        f"{'is not recorded' if source is None else source + ' is gone'})")
    if run.test_data is not None:
        test = load_labelled(run.test_data, size, run.test_labels, limit=run.test_count)
        if not run.trains():
            return None, test
        collection = load_labelled(source, size, labels, limit=run.train_count)
        return collection, test
    if run.trains():
        wanted = None if run.train_count is None else run.train_count + run.test_count
        collection = load_labelled(source, size, labels, limit=wanted)
        train_count = run.train_count if run.train_count is not None else len(collection.labels) - run.test_count
    else:
        train_count = int(trained_on.get("train_count", 0))
        collection = load_labelled(source, size, labels, limit=train_count + run.test_count)
        # Only the data trained on has held-out images: another file now at that path (or the same one changed)
        # would be measured as if the classifier had never seen it.
        trained = slice(0, max(train_count, 0))
        if other_data(trained_on, data_digest(collection.images[trained], collection.labels[trained])):
            raise UserError(f"{source}: not the images the classifier was trained on (the file has changed since); "
                            "give test images with --test-data")
    if train_count < 1 or train_count + run.test_count > len(collection.labels):
        raise UserError(f"{source}: {len(collection.labels)} labelled images cannot give {run.test_count} test "
                        f"images after {max(train_count, 0)} training ones; lower --test-count or --train-count, or "
                        "pass --test-data")
    test = _part(collection, slice(train_count, train_count + run.test_count), "held out")
    return (_part(collection, slice(0, train_count), "training") if run.trains() else None), test


def _part(collection: LabelledImages, part: slice, what: str) -> LabelledImages:
    return LabelledImages(collection.images[part], collection.labels[part], collection.classes,
                          f"{collection.source} ({what})")


def _obtain(run: RobustRun, out: Path, device: torch.device, show_progress: bool, stop: StopRequest):
    """(classifier, its config, checkpoint payload, test images, notes): loaded, or trained here."""
    config, state, notes, payload = run.config, None, [], None
    target = out / CLASSIFIER_FILE
    if run.classifier is not None or run.resume:
        source = run.classifier or target
        if run.resume:
            refuse_replacing_another_run(target, source)
        payload = read_checkpoint(source)
        if run.resume:
            state, saved = training_state_from_payload(payload, str(source), device)
            refuse_changed_settings(run.config, saved, run.given, source)
            config = replace(saved, epochs=run.config.epochs)  # the recipe is the run's; only the goal moves
            notes.append(f"resumed from {source} after epoch {state.epoch}")
        else:
            model, config = classifier_from_payload(payload, str(source), device)
            config = replace(config, attack=run.config.attack)  # attack it as asked, not as it was trained
    elif target.exists() and not run.overwrite:
        raise UserError(f"{target} exists: add --resume to continue that run, --overwrite to replace it, or choose "
                        "another --out")
    trained_on = (payload or {}).get("data")
    train, test = _load_split(run, config.image_size, trained_on)
    if train is None:
        if run.test_data is None:
            notes += unchecked_data_note(trained_on, "held-out test images")
        return model, config, payload, test, notes
    digest = data_digest(train.images, train.labels)  # hashed once, as held
    if state is not None and trained_on and trained_on.get("train_count") != len(train.labels):
        raise UserError(f"{run.data or trained_on.get('source')}: the run being resumed trained on "
                        f"{trained_on.get('train_count')} images, this gives {len(train.labels)}; use the same --data "
                        "and --train-count")
    # Other images of the same count would continue its training on data it never started on. (A checkpoint from
    # before digests were recorded cannot be checked.)
    if state is not None and other_data(trained_on, digest):
        raise UserError(f"{run.data or trained_on.get('source')}: these are not the images the run being resumed "
                        f"trained on ({trained_on.get('source')}); use the same --data and --train-count")
    config = replace(config, classes=max(config.classes, len(train.classes)), in_channels=int(train.images.shape[1]))
    data_info = {**train.describe(), "source": recorded_path(run.data) if run.data else trained_on["source"],
                 "digest": digest, "train_count": len(train.labels),
                 "labels": (run.labels and recorded_path(run.labels)) if run.data else trained_on.get("labels")}
    if int(train.labels.max()) >= config.classes:
        raise UserError(f"{data_info['source']}: label {int(train.labels.max())} does not fit the resumed "
                        f"classifier's {config.classes} classes")
    state = state or new_state(config, device)
    start = state.epoch
    try:
        payload = _train(config, state, train, data_info, target, device, show_progress, stop)
    except TrainingInterrupted:
        raise
    except Exception as error:
        # What the run saved is kept: each epoch's checkpoint is complete (written atomically), and it is what
        # --resume continues once the cause (a full disk, say) is dealt with. (With --overwrite the caller removes
        # it, to put the run it replaced back.)
        saved = saved_epoch(target)
        if saved > start:
            error.add_note(f"{target} holds epoch {saved} of this run, saved before the failure; run the command "
                           f"again with {_resume_flags(run, target)} to continue from it")
        raise
    return state.model, config, payload, test, notes


def _train(config: RobustConfig, state, train: LabelledImages, data_info: dict, target: Path, device: torch.device,
           show_progress: bool, stop: StopRequest) -> dict:
    count = len(train.labels)
    start = state.epoch
    total = max(0, config.epochs - start) * count

    def save(current) -> None:
        atomic_write_bytes(target, serialize(classifier_payload(current, config, data_info)))

    label = f"train ({config.adversary}, {count} images)"
    with counter_progress(label, total, show_progress) as update:
        def on_batch(epoch: int, done: int) -> None:
            if update:
                update((epoch - start) * count + done, f"epoch {epoch + 1}/{config.epochs}")

        def on_epoch(current) -> None:
            save(current)
            if update:
                last = current.history[-1]
                update((current.epoch - start) * count, f"epoch {current.epoch}/{config.epochs} loss "
                       f"{last['loss']:.3g} accuracy {last['train_accuracy']:.1%}")

        train_classifier(config, train.images, train.labels, state, on_epoch=on_epoch, on_batch=on_batch,
                         should_stop=stop.requested, device=device)
    if state.epoch == start:  # nothing left to train: the checkpoint is rewritten as it was
        save(state)
    return classifier_payload(state, config, data_info)


def _numbered(classes: list[str]) -> bool:
    """Whether ``classes`` are only the label values (a collection that names none of its classes)."""
    return classes == [str(k) for k in range(len(classes))]


def _by_class_name(test: LabelledImages, trained: list | None, notes: list[str]) -> LabelledImages:
    """The test images labelled with the classifier's numbering of their classes. Classes named by the test data
    (class folders, Fashion-MNIST, an .npz's 'classes') are looked up by name among the ``trained`` ones (a subset,
    in any order, is fine); a name the classifier does not have is refused. A folder's classes are numbered in
    sorted order, so taking its numbers as they are would score images against another class. A classifier whose
    training data named no classes has only numbers to match: the test classes are taken in their order, noted."""
    if not trained or test.classes == list(trained):
        return test
    if _numbered(test.classes):
        if not _numbered(list(trained)):
            shown = ", ".join(map(str, trained[:12])) + (", ..." if len(trained) > 12 else "")
            notes.append(f"the test labels name no classes: they are taken as the classifier's classes 0, 1, ... "
                         f"({shown})")
        return test
    if _numbered(list(trained)):
        notes.append(f"the classifier's classes have no names: the test classes ({', '.join(test.classes[:12])}"
                     f"{', ...' if len(test.classes) > 12 else ''}) are taken in that order as its classes 0, 1, ...")
        return test
    unknown = [name for name in test.classes if name not in trained]
    if unknown:
        shown = ", ".join(map(str, trained[:12])) + (", ..." if len(trained) > 12 else "")
        raise UserError(f"{test.source}: class{'es' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                        f"{'are' if len(unknown) > 1 else 'is'} not among the classifier's {len(trained)} classes "
                        f"({shown}); name the test classes as its training data did")
    numbers = torch.tensor([list(trained).index(name) for name in test.classes])
    notes.append(f"test classes matched to the classifier's by name ({len(test.classes)} of its {len(trained)})")
    return replace(test, labels=numbers[test.labels], classes=list(trained))


def trained_as(adversary: str) -> str:
    """How a classifier is named by what it trained on: "clean-trained", "PGD-trained", "JIIO-trained"."""
    return f"{'clean' if adversary == 'none' else adversary.upper()}-trained"


def attack_budget(name: str, settings: dict, eps: str = "ε") -> tuple[str, str]:
    """An attack's name with its budget ("PGD-20", "JIIO-40") and its step ("2.5ε/20"), from the report's
    ``attack_settings`` (a "pgd 20" and a "pgd 100" result read alike without them)."""
    steps, factor = (settings["pgd_steps"], settings["pgd_step_factor"]) if name == "pgd" else \
        (settings["jiio_iterations"], settings["jiio_step_factor"])
    return f"{name.upper()}-{steps}", f"{factor:g}{eps}/{steps}"


def _picture(out: Path, test: LabelledImages, evaluation: Evaluation, config: RobustConfig, results: dict
             ) -> list[str]:
    """Originals, and per attack the adversarial images and their perturbations (mid-gray is 0, full black and
    white the largest |delta| shown in that row: each perturbation row has its own scale), for the first few test
    images; captioned with the classifier, the attack's radius, each attack's budget and the accuracies the report
    gives."""
    shown = slice(0, PICTURE_COUNT)
    originals = test.images[shown]
    rows, labels = [originals * 2 - 1], ["original"]
    for name in evaluation.attacks:
        delta = evaluation.deltas(name)[shown]
        rows.append(((originals + delta) * 2 - 1).clamp(-1, 1))
        rows.append(delta / delta.abs().amax().clamp_min(1e-12))
        labels += [f"{name} adversarial", f"{name} perturbation"]
    count = len(test.labels)
    settings = config.attack.to_dict()
    budgets = {name: attack_budget(name, settings) for name in evaluation.attacks}
    caption = [f"jiio-robust: {trained_as(config.adversary)} {config.preset} MDEQ classifier",
               f"L2 attacks of radius ε = {config.attack.epsilon:g}",
               f"the first {len(originals)} of {count} test images" if len(originals) < count else
               f"{count} test images", "rows: " + " / ".join(labels),
               f"accuracy clean {results['clean']['accuracy']:.2%}",
               *(f"{budgets[name][0]} (step {budgets[name][1]}) {results[name]['accuracy']:.2%}"
                 for name in evaluation.attacks),
               "perturbation rows: mid-gray 0, black and white the largest |delta| in that row (each row on its own "
               "scale)"]
    write_image_grid(out / PICTURE, rows, labels=labels, caption=caption)
    return labels


def _attack_seed_and_batch(run: RobustRun, config: RobustConfig) -> tuple[int, int]:
    """The seed of the attacks' random starts and the images attacked together. A run that trained measures with its
    own (a resume's are its checkpoint's; --eval-batch-size may set the batch). An evaluation-only run takes the
    --seed and --eval-batch-size (or --batch-size) given, so that the same classifier can be attacked from other
    random starts; left out, the classifier's own, as the run that trained it measured it."""
    if run.trains():
        return config.seed, run.eval_batch_size or config.batch_size
    seed = run.config.seed if "seed" in run.given else config.seed
    batch = run.eval_batch_size or (run.config.batch_size if "batch_size" in run.given else config.batch_size)
    return seed, batch


def _run(run: RobustRun, out: Path, device: torch.device, show_progress: bool, as_json: bool, stop: StopRequest
         ) -> int:
    model, config, payload, test, notes = _obtain(run, out, device, show_progress, stop)
    test = replace(test, images=matched_with_note(test.images, config.in_channels, "classifier", notes))
    test = _by_class_name(test, (payload.get("data") or {}).get("classes"), notes)
    # The classifier has at least 10 outputs (RobustConfig.classes), but learned only the classes it trained on.
    learned = len((payload.get("data") or {}).get("classes") or []) or config.classes
    if int(test.labels.max()) >= learned:
        raise UserError(f"{test.source}: label {int(test.labels.max())} is not one of the {learned} classes the "
                        f"classifier was trained on (labels 0 to {learned - 1}); test it on those classes only")
    seed, batch = _attack_seed_and_batch(run, config)
    total = len(test.labels) * len(run.attacks)
    with counter_progress(f"attack ({', '.join(run.attacks)}, eps {config.attack.epsilon:g})", total,
                          show_progress) as update:
        def on_batch(name: str, done: int) -> None:
            if update:
                update(run.attacks.index(name) * len(test.labels) + done, name)

        evaluation = evaluate(model, test.images, test.labels, config, run.attacks, batch, seed=seed,
                              on_batch=on_batch, device=device, should_stop=stop.requested)
    results = evaluation.summary()
    rows = _picture(out, test, evaluation, config, results)
    report = {
        "report_version": REPORT_VERSION, "command": "jiio-robust", "output_dir": str(out), "device": str(device),
        "epsilon": config.attack.epsilon, "norm": "L2", "value_range": [0.0, 1.0],
        # The file the measured classifier is in: a run that trained (a resume from --classifier included) saved
        # it in OUT, whatever it started from (that source is in the notes).
        "classifier": {"checkpoint": str(out / CLASSIFIER_FILE if run.trains() else run.classifier),
                       "trained_here": run.trains(), "adversary": config.adversary, "epochs": payload.get("epoch"),
                       "preset": config.preset, "image_size": config.image_size, "classes": config.classes,
                       "seed": config.seed, "batch_size": config.batch_size,
                       "params": sum(p.numel() for p in model.parameters()), "data": payload.get("data"),
                       "history": payload.get("history")},
        "test": {**test.describe(), "count": len(test.labels)},
        "accuracy": {name: results[name]["accuracy"] for name in results},
        "attacks": {name: results[name] for name in run.attacks},
        "clean": results["clean"],
        "attack_settings": {**config.attack.to_dict(), "seed": seed, "batch_size": batch},
        "picture_rows": rows,
        "notes": notes,
        "files": {"classifier": CLASSIFIER_FILE, "picture": PICTURE, "report": REPORT} if run.trains() else
                 {"picture": PICTURE, "report": REPORT},
        "versions": versions(),
    }
    atomic_write_text(out / REPORT, to_json(report) + "\n")  # last: its presence means the run is complete
    sys.stdout.write(to_json(report, indent=None) + "\n" if as_json else summary_text(report) + "\n")
    sys.stdout.flush()
    return 0


def summary_text(report: dict) -> str:
    classifier = report["classifier"]
    budgets = {name: attack_budget(name, report["attack_settings"], " eps") for name in report["attacks"]}
    width = max(len("clean"), *(len(title) for title, _ in budgets.values()))
    lines = [f"jiio-robust: {trained_as(classifier['adversary'])} {classifier['preset']} MDEQ classifier, "
             f"{report['test']['count']} test images, L2 eps {report['epsilon']:g}",
             f"  {'clean':{width}s} accuracy {report['accuracy']['clean']:.2%}"]
    for name, s in report["attacks"].items():
        title, step = budgets[name]
        lines.append(f"  {title:{width}s} accuracy {s['accuracy']:.2%}, loss {s['loss_mean']:.3g}, "
                     f"{s['ms_per_batch']:.0f} ms/batch, |delta| max {s['delta_norm_max']:.4g}, "
                     f"re-solve residual max {s['final_residual_max']:.1e}, step {step}")
    lines.append(f"  wrote {report['output_dir']}")
    return "\n".join(lines)
