"""Labelled image collections for classifiers, read without downloads, three ways:

- an IDX image file with its IDX label file (MNIST, Fashion-MNIST; Debian's ``dataset-fashion-mnist``): the labels
  are found beside the images (``train-images-idx3-ubyte.gz`` -> ``train-labels-idx1-ubyte.gz``) unless given;
- a folder of class sub-folders (``shirts/``, ``boots/``...), each holding that class's images; classes are the
  sub-folders' names in sorted order;
- an ``.npz`` holding ``images`` and ``labels`` (and optionally ``classes``, their names).

Images come out as :func:`inr_cli.media.datasets.load_images` gives them, then in [0, 1] (the scale of an attack's
epsilon); labels as int64 in 0..classes-1. A count mismatch, a label out of range or a missing array is one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inr_cli.media.datasets import array_batch, load_images, read_arrays, read_idx
from inr_cli.media.images import IMAGE_SUFFIXES
from inr_core.errors import UserError
from training.jiio.robust.config import MAX_CLASSES

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


@dataclass
class LabelledImages:
    images: torch.Tensor  # (N, C, S, S) in [0, 1]
    labels: torch.Tensor  # (N,) int64
    classes: list[str]  # names, one per label value
    source: str

    def describe(self) -> dict:
        return {"source": self.source, "count": len(self.labels), "classes": self.classes,
                "channels": int(self.images.shape[1]), "size": int(self.images.shape[-1])}


def _is_idx(path: Path) -> bool:
    return path.name.endswith("-ubyte") or path.name.endswith("-ubyte.gz") or ".idx" in path.name


def idx_labels_beside(images: Path) -> Path:
    """The label file that ships beside an IDX image file (MNIST's naming)."""
    name = images.name.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1")
    return images.with_name(name)


def _labels_array(labels: np.ndarray, source: str) -> np.ndarray:
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise UserError(f"{source}: labels must be one whole number per image, got {labels.dtype} shaped "
                        f"{labels.shape}")
    if labels.size and labels.min() < 0:
        raise UserError(f"{source}: labels must be 0 or more, found {int(labels.min())}")
    if labels.size and labels.max() >= MAX_CLASSES:  # before anything is sized by the class count
        raise UserError(f"{source}: label {int(labels.max())} is beyond the {MAX_CLASSES:,} classes a classifier can "
                        "have; labels number the classes from 0")
    return labels.astype(np.int64)


def _idx(images: Path, labels: Path | None, size: int, limit: int | None) -> tuple[torch.Tensor, np.ndarray, list]:
    label_path = labels or idx_labels_beside(images)
    if not label_path.exists():
        raise UserError(f"{images}: no labels beside it (looked for {label_path.name}); give them with --labels")
    values = _labels_array(read_idx(label_path, dims_expected=1), str(label_path))
    array = read_idx(images)  # read once: counted here, then squared (60,000 images gzipped: about a second)
    _same_count(len(array), len(values), str(images), str(label_path))
    loaded = array_batch(array, size, str(images), limit)
    classes = list(FASHION_MNIST_CLASSES) if "fashion" in str(images).lower() and values.max() < 10 else []
    return loaded, values[:limit], classes


def _same_count(images: int, labels: int, image_source: str, label_source: str) -> None:
    if images != labels:
        raise UserError(f"{image_source}: {images} images but {label_source} holds {labels} labels; they must match "
                        "one to one")


def _npz(path: Path, size: int, limit: int | None) -> tuple[torch.Tensor, np.ndarray, list]:
    arrays = read_arrays(path)
    if "labels" not in arrays or "images" not in arrays:
        raise UserError(f"{path}: a labelled .npz holds 'images' and 'labels'; this one holds {list(arrays)}")
    values = _labels_array(arrays["labels"], f"{path} labels")
    names = arrays.get("classes")
    if names is not None and (names.ndim != 1 or len(names) > MAX_CLASSES):
        raise UserError(f"{path}: 'classes' must list one name per class (at most {MAX_CLASSES:,}), got an array "
                        f"shaped {names.shape}")
    _same_count(len(arrays["images"]), len(values), str(path), "its 'labels'")
    classes = [] if names is None else [str(name) for name in names]
    return array_batch(arrays["images"], size, str(path), limit), values[:limit], classes


def _folders(path: Path, size: int, limit: int | None) -> tuple[torch.Tensor, np.ndarray, list]:
    classes = sorted(child.name for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))
    if len(classes) < 2:
        raise UserError(f"{path}: a labelled folder holds one sub-folder of images per class (at least 2); "
                        f"found {len(classes)}")
    parts, values = [], []
    for label, name in enumerate(classes):
        folder = path / name
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            raise UserError(f"{folder}: class folder holds no images")
        parts.append(load_images(str(folder), size))
        values += [label] * len(parts[-1])
    channels = max(p.shape[1] for p in parts)
    images = torch.cat([p.expand(-1, channels, -1, -1) for p in parts])  # gray classes among colour ones: RGB
    # Interleave the classes by a fixed shuffle so that the first images (training) and the next (testing) both
    # hold every class.
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[order][:limit], np.asarray(values)[order.numpy()][:limit], classes


def load_labelled(source: str, size: int, labels: str | None = None, limit: int | None = None) -> LabelledImages:
    """A labelled collection (see the module's doc) as images (N, C, size, size) in [0, 1] and labels."""
    path = Path(source)
    if not path.exists():
        raise UserError(f"{source}: no such file or folder")
    if labels is not None and not Path(labels).exists():
        raise UserError(f"{labels}: no such file")
    if path.is_dir():
        images, values, classes = _folders(path, size, limit)
    elif path.suffix.lower() == ".npz":
        images, values, classes = _npz(path, size, limit)
    elif _is_idx(path):
        images, values, classes = _idx(path, Path(labels) if labels else None, size, limit)
    else:
        raise UserError(f"{source}: give a labelled collection: an IDX image file (labels beside it or --labels), "
                        "a folder of class sub-folders, or an .npz with 'images' and 'labels'")
    if labels is not None and not _is_idx(path):
        raise UserError(f"{labels}: --labels goes with IDX image files; {source} carries its own labels")
    count = int(values.max()) + 1 if len(values) else 0
    classes = classes if len(classes) >= count else [str(k) for k in range(count)]
    return LabelledImages((images + 1) / 2, torch.from_numpy(values), classes, source)
